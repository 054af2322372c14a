"""Exact top-k of long score rows on the GPU: ALISA's global set (k of ~N tokens by accumulated attention;
at 128K tokens and r = 0.2, 13107 of 117965 per layer and step).

`top_tokens(scores, k, out)` writes, per row, the column indices of the k largest scores in ascending column
order (a sorted set: the gather that follows reads K / V in address order), ties at the threshold taken from the
lowest column up (deterministic; `torch.topk` leaves the tie order open). No sort: a radix select over the
scores' order-preserving uint32 keys, 8 bits per pass (DIGIT): each pass a launch over slices of 1024 columns
(BLOCK) that histograms the keys of its slice matching the digits chosen so far into a per-row histogram of 256
bins (one atomic per nonzero bin and program), every program re-deriving those digits from the histograms (a
suffix sum); then a launch that counts each slice's keys above and at the threshold, and one that writes each
slice's selected columns at its prefix offset. Six launches, each reading the rows once (from L2 after the
first). H100, 8 selects per graph, L2 evicted (data/run22_probe_token_topk.log): 19.7 / 21.6 / 39.1 us at
batch 1 and 8K, batch 1 and 128K, batch 8 and 128K, against 41.9 / 57.3 / 69.9 for torch.topk(sorted=False)
(which returns them in no order; sorted, 120 us at batch 1 and 128K). 11-bit digits (three passes) were slower:
37.9 us at batch 1 and 128K (data/run22_probe_alisa_first.log).

Shapes: scores [rows, n] fp32 (any row stride, e.g. a view of the first n columns of wider rows); out [rows, >= k]
int32 or int64 (any row stride), columns [0, k) written. NaN ranks below every number; -inf above nothing.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sparsebench.kernels.triton_decode import sortable_key

DIGIT = 8  # key bits per pass (32 / DIGIT passes; a divisor of 32)
_SCRATCH: dict = {}


@triton.jit
def _keys(S, row, stride, offs, n):
    """uint32 keys of S[row, offs], monotone in the float's value (NaN and out-of-range columns -> 0)."""
    s = tl.load(S + row.to(tl.int64) * stride + offs, mask=offs < n, other=0.0)
    return tl.where((offs < n) & (s == s), sortable_key(s), 0)


@triton.jit
def _digit_pick(H, row, p: tl.constexpr, k_rem, NPASS: tl.constexpr, NB: tl.constexpr):
    """From pass p's histogram of row: the digit d holding the k_rem-th largest key among those matching the
    digits so far, and how many of them to take below the keys above d."""
    b = tl.arange(0, NB)
    h = tl.load(H + (row * NPASS + p) * NB + b)
    suf = tl.sum(h, 0) - tl.cumsum(h, 0) + h  # keys in bins >= b
    d = tl.sum((suf >= k_rem).to(tl.int32), 0) - 1  # the last bin whose suffix still holds k_rem
    above = tl.sum(tl.where(b == d, suf - h, 0), 0)  # keys in bins > d
    return d, k_rem - above


@triton.jit
def _prefix(H, row, k, P: tl.constexpr, DIGIT: tl.constexpr, NPASS: tl.constexpr, NB: tl.constexpr):
    """The digits of passes < P as one key prefix (the key's top P * DIGIT bits) and the keys still to take
    among those matching it."""
    pre = tl.zeros((), tl.uint32)
    k_rem = k
    for p in tl.static_range(P):
        d, k_rem = _digit_pick(H, row, p, k_rem, NPASS, NB)
        pre = (pre << DIGIT) | d.to(tl.uint32)
    return pre, k_rem


@triton.jit
def _hist_kernel(S, H, n, stride, k, P: tl.constexpr, DIGIT: tl.constexpr, NPASS: tl.constexpr,
                 BLOCK: tl.constexpr, NB: tl.constexpr):
    """Pass P: the histogram of digit P of the keys of this program's slice that match the digits so far."""
    row = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    key = _keys(S, row, stride, offs, n)
    digit = (key >> (32 - DIGIT * (P + 1))) & (NB - 1)
    match = offs < n
    if P > 0:
        pre, _ = _prefix(H, row, k, P, DIGIT, NPASS, NB)
        match = match & ((key >> (32 - DIGIT * P)) == pre)
    h = tl.histogram(tl.where(match, digit, 0).to(tl.int32), NB)
    b = tl.arange(0, NB)
    h = h - tl.where(b == 0, BLOCK - tl.sum(match.to(tl.int32), 0), 0)  # the non-matching keys were counted in bin 0
    tl.atomic_add(H + (row * NPASS + P) * NB + b, h, mask=h > 0, sem="relaxed")


@triton.jit
def _count_kernel(S, H, C, T, n, stride, k, n_prog, DIGIT: tl.constexpr, NPASS: tl.constexpr, BLOCK: tl.constexpr,
                  NB: tl.constexpr):
    """Each slice's keys above and at the threshold key -> C[row, slice, 0 / 1]; program 0 of a row stores the
    threshold and the ties to take in T[row, 0 / 1]."""
    row = tl.program_id(0)
    pid = tl.program_id(1)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    key = _keys(S, row, stride, offs, n)
    thr, ties = _prefix(H, row, k, NPASS, DIGIT, NPASS, NB)
    valid = offs < n
    gt = tl.sum((valid & (key > thr)).to(tl.int32), 0)
    eq = tl.sum((valid & (key == thr)).to(tl.int32), 0)
    tl.store(C + (row * n_prog + pid) * 2, gt)
    tl.store(C + (row * n_prog + pid) * 2 + 1, eq)
    if pid == 0:
        tl.store(T + row * 2, thr.to(tl.int32, bitcast=True))
        tl.store(T + row * 2 + 1, ties)


@triton.jit
def _write_kernel(S, H, C, T, OUT, n, stride, out_stride, n_prog, NPASS: tl.constexpr, BLOCK: tl.constexpr,
                  PP: tl.constexpr, NB: tl.constexpr):
    """Each slice's selected columns at its offset (the columns before it selected, ties from the lowest column);
    the histograms zeroed for the next call (this launch no longer reads them)."""
    row = tl.program_id(0)
    pid = tl.program_id(1)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    key = _keys(S, row, stride, offs, n)
    thr = tl.load(T + row * 2).to(tl.uint32, bitcast=True)
    ties = tl.load(T + row * 2 + 1)
    ps = tl.arange(0, PP)
    before = ps < pid
    gt_b = tl.sum(tl.load(C + (row * n_prog + ps) * 2, mask=before, other=0), 0)
    eq_b = tl.sum(tl.load(C + (row * n_prog + ps) * 2 + 1, mask=before, other=0), 0)
    valid = offs < n
    eq = valid & (key == thr)
    mine = tl.minimum(tl.maximum(ties - eq_b, 0), tl.sum(eq.to(tl.int32), 0))  # this slice's ties to take
    take = (valid & (key > thr)) | (eq & (tl.cumsum(eq.to(tl.int32), 0) <= mine))
    pos = gt_b + tl.minimum(eq_b, ties) + tl.cumsum(take.to(tl.int32), 0) - 1
    tl.store(OUT + row.to(tl.int64) * out_stride + pos, offs.to(OUT.dtype.element_ty), mask=take)
    # this program's share of the row's NPASS * NB histogram bins zeroed
    tl.store(H + row * NPASS * NB + offs, tl.zeros_like(offs), mask=offs < NPASS * NB)


BLOCK = 1024  # columns per program: the fastest at 8K and 128K, batch 1 and 8 (data/run22_probe_token_topk.log)


def top_tokens(scores: torch.Tensor, k: int, out: torch.Tensor, block: int | None = None, digit: int | None = None,
               warps: int | None = None) -> torch.Tensor:
    """The k largest of each row of scores [rows, n] fp32 (row stride any, columns contiguous) as ascending
    column indices into out[:, :k] (int32 / int64), ties at the threshold from the lowest column. 1 <= k <= n.
    block: columns per program (default BLOCK); digit: key bits per pass (default DIGIT); warps: per program."""
    for launch in launches(scores, k, out, block, digit, warps):
        launch()
    return out


def launches(scores: torch.Tensor, k: int, out: torch.Tensor, block: int | None = None, digit: int | None = None,
             warps: int | None = None) -> list:
    """`top_tokens`' launches as closures, in order (a probe times them one by one)."""
    if scores.dim() != 2 or scores.dtype != torch.float32 or scores.stride(1) != 1:
        raise ValueError(f"top_tokens: scores must be [rows, n] fp32 with contiguous columns (got "
                         f"{tuple(scores.shape)} {scores.dtype}, strides {scores.stride()})")
    rows, n = scores.shape
    if not 1 <= k <= n:
        raise ValueError(f"top_tokens: k={k}; allowed 1..{n} (the row length)")
    if out.dim() != 2 or out.shape[0] != rows or out.shape[1] < k or out.dtype not in (torch.int32, torch.int64) \
            or out.stride(1) != 1:
        raise ValueError(f"top_tokens: out must be [{rows}, >= {k}] int32 / int64 with contiguous columns (got "
                         f"{tuple(out.shape)} {out.dtype})")
    dev = scores.device
    digit = digit or DIGIT
    if 32 % digit:
        raise ValueError(f"top_tokens: digit={digit}; allowed: a divisor of 32")
    npass, nb = 32 // digit, 1 << digit
    block = block or BLOCK
    n_prog = triton.cdiv(n, block)
    if n_prog * block < npass * nb:  # the write launch zeroes the histograms: it needs npass * nb lanes in all
        block = triton.next_power_of_2(triton.cdiv(npass * nb, n_prog))
    key = (dev, rows, n_prog, digit)
    if key not in _SCRATCH:  # zeroed once; every call leaves the histograms zeroed (a graph replays them)
        _SCRATCH[key] = (torch.zeros(rows, npass, nb, dtype=torch.int32, device=dev),
                         torch.empty(rows, n_prog, 2, dtype=torch.int32, device=dev),
                         torch.empty(rows, 2, dtype=torch.int32, device=dev))
    H, C, T = _SCRATCH[key]
    grid = (rows, n_prog)
    meta = dict(NPASS=npass, BLOCK=block, NB=nb, num_warps=warps or 4)
    st = scores.stride(0)
    return ([lambda p=p: _hist_kernel[grid](scores, H, n, st, k, P=p, DIGIT=digit, **meta) for p in range(npass)]
            + [lambda: _count_kernel[grid](scores, H, C, T, n, st, k, n_prog, DIGIT=digit, **meta),
               lambda: _write_kernel[grid](scores, H, C, T, out, n, st, out.stride(0), n_prog,
                                           PP=triton.next_power_of_2(n_prog), **meta)])
