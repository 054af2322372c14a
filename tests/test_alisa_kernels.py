"""The token top-k and ALISA's decode kernels against plain torch on the CPU (Triton interpreter, small sizes);
the same checks run on the GPU at the benchmark's sizes in test_gpu_kernels.py."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from alisa_kernel_checks import check_alisa_steps, check_top_tokens  # noqa: E402


@pytest.fixture(autouse=True)
def _cpu_only():
    if torch.cuda.is_available():
        pytest.skip("the GPU runs these checks at larger sizes (test_gpu_kernels.py)")


@pytest.mark.parametrize("case", ["uniform", "ties", "signed_nan", "sparse_zeros", "k_is_n", "k_is_1"])
@pytest.mark.parametrize("digit", [8, 4])
def test_top_tokens_matches_sorted_reference(case, digit):
    g = torch.Generator().manual_seed(1)
    rows, n, k = 3, 5000, 700
    if case == "uniform":
        S = torch.rand(rows, n, generator=g)
    elif case == "ties":  # five values: the threshold value is shared by ~1000 columns, ties from the lowest
        S = torch.randint(0, 5, (rows, n), generator=g).float()
    elif case == "signed_nan":
        S = torch.randn(rows, n, generator=g)
        S[0, 10], S[1, :50] = float("nan"), float("-inf")
    elif case == "sparse_zeros":  # most scores exactly 0 (tokens never attended): ties at 0 fill the set
        S = torch.zeros(rows, n)
        S[:, ::23] = torch.rand(rows, len(range(0, n, 23)), generator=g)
    elif case == "k_is_n":
        S, k = torch.rand(rows, 1500, generator=g), 1500
    else:
        S, k = torch.randn(rows, n, generator=g), 1
    wide = torch.zeros(rows, S.shape[1] + 33)  # a view with a row stride wider than its columns
    wide[:, : S.shape[1]] = S
    check_top_tokens(wide[:, : S.shape[1]], k, block=1024, digit=digit)


def test_top_tokens_refuses_bad_shapes():
    from sparsebench.kernels.token_topk import top_tokens

    with pytest.raises(ValueError, match="k=0"):
        top_tokens(torch.rand(2, 100), 0, torch.empty(2, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="fp32"):
        top_tokens(torch.rand(2, 100).double(), 3, torch.empty(2, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="digit=5"):
        top_tokens(torch.rand(2, 100), 3, torch.empty(2, 4, dtype=torch.int32), digit=5)
    with pytest.raises(ValueError, match="out must be"):
        top_tokens(torch.rand(2, 100), 5, torch.empty(2, 4, dtype=torch.int32))


def test_alisa_decode_steps_match_torch():
    """Five steps with a window of 3 (the ring wraps, rows leave S): sets, outputs, S and the slot; tiles of 16
    tokens, so a split loops over several."""
    check_alisa_steps(B=2, Hkv=2, G=2, D=64, N=700, k=70, W=3, steps=5, dtype=torch.float32, device="cpu",
                      tol=1e-4, block_t=16)
