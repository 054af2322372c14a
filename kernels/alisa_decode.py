"""ALISA's decode step on the GPU, in the form an engine holds per layer (`bench_steps` times it).

Per layer and step (one token set per batch row, shared by its KV heads: POLICIES.md's default):
- select: `token_topk.top_tokens` over the scores S of the positions before the local set -> the global set,
  ascending, in set[:, :k]; set[:, k:] holds the local set (the k newest positions; the caller keeps it current).
- `alisa_attention`, three launches:
  1. the row of weights that leaves the score window (the step `score_window` back) taken out of S;
  2. attention over the set, split over its tokens (`triton_decode`'s gathered split kernel, each KV head's
     stream offset added to the shared positions), logits and split partials stored;
  3. per batch row and block of the set: the first R programs combine the splits into O; every program sums its
     tokens' attention weights over all query heads, adds them into S at their positions and records them in the
     window's history ring; the last program to finish advances the ring's slot.
  A set holds each position once, so no two programs of a launch write one S entry; the leaving row and the new
  one, which may share positions, are applied by different launches: S's bits do not depend on scheduling.

Shapes: q_rows [B, R, GQ, D]; k_flat / v_flat [P, D] (a paged pool's rows); sets [B, T] int32 positions
(-1 = none); base [B, R] int64 flat pool row of position 0 of each (batch row, KV head) stream; state: `AlisaState`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from sparsebench.kernels.triton_decode import (_combine_meta, _combine_row, _last_of_row, _pow2, _split_probs,
                                                  gather_split)


@dataclass
class AlisaState:
    """A layer's scores and score window on the GPU: S [B, N] fp32 (the sum of the window's weights per position),
    the window's rows hist_idx [W, B, T] int32 (positions, -1 = empty) and hist_w [W, B, T] fp32, the ring slot
    [1] int32 the next row goes to (the oldest), and a completion counter [1] int32 (left at 0)."""
    S: torch.Tensor
    hist_idx: torch.Tensor
    hist_w: torch.Tensor
    slot: torch.Tensor
    count: torch.Tensor

    @classmethod
    def empty(cls, B: int, N: int, T: int, W: int, device) -> "AlisaState":
        z = torch.zeros(1, dtype=torch.int32, device=device)
        return cls(torch.zeros(B, N, device=device), torch.full((W, B, T), -1, dtype=torch.int32, device=device),
                   torch.zeros(W, B, T, device=device), z, z.clone())


@triton.jit
def _leave_kernel(S, HIDX, HW, SLOT, n_cols, T, B, BLOCK: tl.constexpr):
    """S[b, j] -= w for the (j, w) of batch row b in the ring's oldest row (the one at SLOT)."""
    b = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    at = (tl.load(SLOT).to(tl.int64) * B + b) * T + offs
    j = tl.load(HIDX + at, mask=offs < T, other=-1)
    ok = j >= 0
    w = tl.load(HW + at, mask=ok, other=0.0)
    dst = S + b.to(tl.int64) * n_cols + j
    tl.store(dst, tl.load(dst, mask=ok, other=0.0) - w, mask=ok)


@triton.jit
def _final_kernel(ACC, M, L, O, LOGITS, SETS, S, HIDX, HW, SLOT, CNT, T, n_cols, R, n_splits, W, B, n_prog,
                  GQ: tl.constexpr, GQP: tl.constexpr, GQ2: tl.constexpr, D: tl.constexpr, SC: tl.constexpr,
                  S_P2: tl.constexpr, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    tb = tl.program_id(1)
    if tb < R:  # O of KV head tb of batch row b
        _combine_row(ACC, M, L, O, b * R + tb, (b * R + tb) * GQ, GQ, n_splits, GQ, GQ2, D, SC)
    offs_t = tb * BLOCK + tl.arange(0, BLOCK)
    tmask = offs_t < T
    w = tl.zeros([BLOCK], tl.float32)
    for h in range(R):  # each KV head's query heads: their softmax over the whole set, summed
        w += tl.sum(_split_probs(LOGITS, M, L, b * R + h, offs_t, T, n_splits, GQ, GQP, S_P2), 0)
    slot = tl.load(SLOT)
    j = tl.load(SETS + b * T + offs_t, mask=tmask, other=-1)
    ok = j >= 0
    dst = S + b.to(tl.int64) * n_cols + j
    tl.store(dst, tl.load(dst, mask=ok, other=0.0) + w, mask=ok)
    ring = (slot.to(tl.int64) * B + b) * T + offs_t
    tl.store(HIDX + ring, j, mask=tmask)
    tl.store(HW + ring, tl.where(ok, w, 0.0), mask=tmask)
    if _last_of_row(CNT, 0, B * n_prog):  # the last program (every one has read SLOT): the ring moves on
        tl.store(SLOT, (slot + 1) % W)


def alisa_attention(q_rows, k_flat, v_flat, sets, base, scaling: float, state: AlisaState, out=None,
                    tok_per_split: int | None = None, block_t: int = 64, num_warps: int = 4,
                    num_stages: int = 3, block: int = 512):
    """Attention of q_rows [B, R, GQ, D] over each batch row's token set sets [B, T] (positions; base [B, R]
    int64 the flat pool row of each stream's position 0) of k_flat / v_flat -> out [B, R, GQ, D]; the set's
    attention weights, summed over every query head, enter state.S and the window's ring, the row leaving the
    window leaves S (module docstring). tok_per_split / block_t / num_warps / num_stages: the split launch;
    block: set positions per program of the last launch (defaults: data/run22_probe_alisa.log)."""
    B, R, GQ, D = q_rows.shape
    T = sets.shape[-1]
    N = state.S.shape[-1]
    W = state.hist_idx.shape[0]
    if sets.shape != (B, T) or sets.dtype != torch.int32 or base.shape != (B, R) or state.S.shape[0] != B \
            or state.hist_idx.shape[1:] != (B, T):
        raise ValueError(f"alisa_attention: sets must be [B, T] = [{B}, T] int32, base [{B}, {R}], the state's S "
                         f"[{B}, N] and rings [W, {B}, T] (got sets {tuple(sets.shape)} {sets.dtype}, base "
                         f"{tuple(base.shape)}, S {tuple(state.S.shape)}, ring {tuple(state.hist_idx.shape)})")
    q = q_rows.contiguous()
    if out is None:
        out = torch.empty_like(q)
    _leave_kernel[(B, triton.cdiv(T, 1024))](state.S, state.hist_idx, state.hist_w, state.slot, N, T, B, BLOCK=1024)
    logits, acc, m, lse, n_splits = gather_split(q.view(B * R, GQ, D), k_flat, v_flat, sets, scaling, tok_per_split,
                                                 block_t, base.contiguous().view(-1), R, num_warps, num_stages)
    n_prog = max(triton.cdiv(T, block), R)
    _final_kernel[(B, n_prog)](acc, m, lse, out, logits, sets, state.S, state.hist_idx, state.hist_w, state.slot,
                               state.count, T, N, R, n_splits, W, B, n_prog, GQ=GQ, GQP=_pow2(GQ), D=D,
                               **_combine_meta(GQ, D, n_splits), S_P2=_pow2(n_splits, 1), BLOCK=block, num_warps=4)
    return out
