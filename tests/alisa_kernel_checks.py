"""Checks of the token top-k and ALISA's decode kernels against plain torch, shared by the CPU tests (Triton
interpreter, small sizes: tests/test_alisa_kernels.py) and the GPU tests (bf16, benchmark sizes: test_gpu_kernels)."""

from __future__ import annotations

import torch


def ref_top(S: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest of each row, ascending columns, ties from the lowest column, NaN below every number."""
    v = torch.where(torch.isnan(S), torch.full_like(S, float("-inf")), S)
    # a stable sort keeps tied values in column order
    return torch.sort(v, dim=1, descending=True, stable=True).indices[:, :k].sort(1).values


def check_top_tokens(S: torch.Tensor, k: int, block=None, calls: int = 2, digit=None):
    """top_tokens(S, k) equals ref_top, called `calls` times on the same buffers (the histograms are left zeroed),
    writing only columns [0, k) of a wider output."""
    from sparsebench.kernels import token_topk

    want = ref_top(S, k)
    for _ in range(calls):
        out = torch.full((S.shape[0], k + 5), -7, dtype=torch.int32, device=S.device)
        token_topk.top_tokens(S, k, out, block=block, digit=digit)
        assert torch.equal(out[:, :k].long(), want), "top_tokens differs from the sorted reference"
        assert (out[:, k:] == -7).all(), "top_tokens wrote past column k"
    for H, _, _ in token_topk._SCRATCH.values():
        assert not H.any(), "the histograms were not left zeroed"


def check_alisa_steps(B, Hkv, G, D, N, k, W, steps, dtype, device, tol, **opts):
    """`steps` ALISA decode steps (select + attention) on a paged pool against torch: each step's output against
    softmax attention over the set, S against a float64 running sum of the window's head-summed weights (the
    leaving row out), the ring's slot. opts: alisa_attention's launch options."""
    from sparsebench.kernels.alisa_decode import AlisaState, alisa_attention
    from sparsebench.kernels.token_topk import top_tokens

    g = torch.Generator(device=device).manual_seed(5)
    page = 64
    pps = -(-N // page)
    kp = torch.randn(B * Hkv * pps * page, D, device=device, generator=g).to(dtype)
    vp = torch.randn(B * Hkv * pps * page, D, device=device, generator=g).to(dtype)
    base = (torch.arange(B * Hkv, device=device) * pps * page).view(B, Hkv)
    T = 2 * k
    state = AlisaState.empty(B, N, T, W, device)
    state.S.copy_(torch.rand(B, N, device=device, generator=g))
    S_ref = state.S.double().clone()
    ring = []  # the window's (positions, weights) rows, oldest first
    sets = torch.empty(B, T, dtype=torch.int32, device=device)
    sets[:, k:] = torch.arange(N - k, N, device=device, dtype=torch.int32)
    out = torch.full((B, Hkv, G, D), float("nan"), device=device, dtype=dtype)
    scale = D ** -0.5
    for step in range(steps):
        q = torch.randn(B, Hkv, G, D, device=device, generator=g).to(dtype)
        want_set = ref_top(state.S[:, : N - k], k)  # (S itself is checked against S_ref below)
        top_tokens(state.S[:, : N - k], k, sets)
        assert torch.equal(sets[:, :k].long(), want_set), f"step {step}: the global set differs"
        alisa_attention(q, kp, vp, sets, base, scale, state, out=out, **opts)
        w_ref = torch.zeros(B, T, dtype=torch.float64, device=device)
        for b in range(B):
            for h in range(Hkv):
                rows = base[b, h] + sets[b].long()
                p = torch.softmax(q[b, h].double() @ kp[rows].double().T * scale, -1)
                o = p @ vp[rows].double()
                err = ((out[b, h].double() - o).norm() / o.norm()).item()
                assert err < tol, f"step {step}, row {b}, KV head {h}: relative error {err:.1e}"
                w_ref[b] += p.sum(0)
        if len(ring) == W:  # the oldest row leaves S
            old_idx, old_w = ring.pop(0)
            S_ref.scatter_add_(1, old_idx, -old_w)
        S_ref.scatter_add_(1, sets.long(), w_ref)
        ring.append((sets.long().clone(), w_ref))
        err = (state.S.double() - S_ref).abs().max().item()
        assert err < 1e-4, f"step {step}: S differs by {err:.1e}"
        assert int(state.slot) == (step + 1) % W and int(state.count) == 0
    assert not torch.isnan(out).any()
