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


def test_static_pdl_only_where_the_lists_are_not_fresh(monkeypatch):
    """Decode config flag 'd': paged launches become PDL dependents except right after a selection (whose top-k just
    wrote the page lists: as its dependent the launch lost in run 12), and the benchmark's LServe step passes which
    steps those are."""
    monkeypatch.setattr(bench_steps, "PAGED_OPTS", {"static_pdl": True, "num_warps": 4})
    assert bench_steps._paged_opts() == {"num_warps": 4, "pdl": True}
    assert bench_steps._paged_opts(fresh_lists=True) == {"num_warps": 4}
    monkeypatch.setattr(bench_steps, "PAGED_OPTS", {"static_pdl": False, "short": True})
    assert bench_steps._paged_opts(short_rows=(2, 3)) == {"short_rows": (2, 3)}
    seen = []
    monkeypatch.setattr(bench_steps, "paged_attention", lambda *a, **kw: seen.append(kw.get("pdl", False)))
    monkeypatch.setattr(bench_steps, "select_pages", lambda *a, **kw: None)
    monkeypatch.setattr(bench_steps, "PAGED_OPTS", {"static_pdl": True})
    step, steps, _ = bench_steps.build_decode_step("lserve", "triton", 1, 1280, 8, 4, 64, torch.float16, device="cpu")
    for i in range(2 * steps):
        step(i)
    assert steps == 4 and seen == [False, True, True, True] * 2
