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
