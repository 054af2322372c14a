"""The benchmark's static decode steps compute the right thing (CPU, Triton interpreter, small sizes)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from sparsebench.kernels import bench_steps  # noqa: E402


@pytest.mark.parametrize("policy,backend", [("full", "triton"), ("streaming_llm", "triton"), ("streaming_heads", "triton"),
                                            ("quest", "triton"), ("lserve", "triton"), ("alisa_swa", "triton")])
def test_decode_step_matches_dense_math(policy, backend):
    if torch.cuda.is_available():
        pytest.skip("covered by the GPU benchmark's own check")
    # small geometry: 8 query / 4 KV heads, dim 64, 1280 tokens, fp16
    step, steps, info = bench_steps.build_decode_step(policy, backend, 2, 1280, 8, 4, 64, torch.float16, device="cpu")
    note = info["check"]()
    assert note.startswith("rel err")
    for i in range(steps):
        step(i)
    assert info["bytes"] > 0


@pytest.mark.parametrize("opts", [{"strided": True, "short": True, "pages_per_split": 4},
                                  {"strided": False, "short": True, "pages_per_split": 2, "split_first": True}])
def test_lserve_step_with_short_streaming_rows(opts, monkeypatch):
    """The launch settings the benchmark sweeps for LServe ('i' interleaved pages, 'r' short streaming rows) give the
    same dense-math result; the flags are dropped for steps without short rows."""
    if torch.cuda.is_available():
        pytest.skip("covered by the GPU benchmark's own check")
    monkeypatch.setattr(bench_steps, "PAGED_OPTS", opts)
    for policy in ("lserve", "streaming_llm"):
        step, steps, info = bench_steps.build_decode_step(policy, "triton", 2, 2560, 8, 4, 64, torch.float16,
                                                          device="cpu")
        assert info["check"]().startswith("rel err")
