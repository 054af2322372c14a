"""Decode kernels in Triton over the paged store (sparsebench.kv_store's layout).

- `paged_attention`: one new token per row against the pages a row selected. A *row* is one KV
  head of one batch row (its query group packed together: GQ query heads share each K / V load)
  or one query head (per-query-head selections, GQ = 1). Pages are split across programs
  (split-KV, flash-decoding; split s takes list entries s, s + n_splits, ..., or a contiguous chunk;
  rows with short lists may get fewer splits, `short_rows`); the last program of a row to finish reduces
  the row's splits (one launch; `fuse_combine=False` reduces in a second kernel). Reads only the listed
  pages; an optional position filter implements page-granular windows. A program loads its split's page
  ids once, then reads `pages_per_iter` pages per software-pipelined tile.
- `page_scores`: Quest's bound for every logical page of a row from the per-page key min / max,
  reduced to physical pages (max of their logical pages): one pass over the summaries.
- `top_pages`: the top-k pages of each score row (no sort: a search for the threshold on the scores' bits
  within each row's key range);
  `select_pages` = `page_scores` then `top_pages`, a decode step's selection.
- `gathered_attention`: attention over an explicit token set that also returns the softmax weights
  (H2O's and ALISA's score accumulation), split over the tokens.
Shapes: q_rows [B, R, GQ, D]; k_pool / v_pool [P, page, D]; page lists [B, R, NP] int32 of pool
page ids (-1 = none) with page_len [B, R, NP] tokens valid in each.

Fused combine ("the last program finishes the row"): each program stores its partial, a CTA barrier
orders every thread's stores before one acq_rel atomic increment of the row's counter, and the
program that sees the final count reads the partials (bypassing L1) and resets the counter to 0 for
the next launch, so a CUDA graph replays the kernel unchanged.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from sparsebench.kernels.triton_prefill import INTERPRET, online_softmax_update


def _pow2(n: int, lo: int = 16) -> int:
    return max(lo, triton.next_power_of_2(n))


MAX_PAGES_PER_SPLIT = 1024
_COUNTERS: dict = {}
_COUNTER_BUFFERS: list = []  # every buffer handed out stays alive (a captured graph may hold its address)


def _counters(device, n: int) -> torch.Tensor:
    """A zeroed int32 buffer of >= n row counters; kernels leave it zeroed when they finish."""
    buf = _COUNTERS.get(device)
    if buf is None or buf.numel() < n:
        buf = torch.zeros(max(n, 1 << 14), dtype=torch.int32, device=device)
        _COUNTERS[device] = buf
        _COUNTER_BUFFERS.append(buf)
    return buf


try:  # grid dependency control (Hopper+): a kernel launched early waits here for its predecessor's results
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
    _HAS_GDC = True
except ImportError:  # older Triton: launches stay ordinary
    _HAS_GDC = False

    @triton.jit
    def gdc_wait():
        pass

    @triton.jit
    def gdc_launch_dependents():
        pass


@functools.lru_cache(maxsize=None)
def _pdl_capable(device: str) -> bool:
    dev = torch.device(device)
    return _HAS_GDC and not INTERPRET and dev.type == "cuda" and torch.cuda.get_device_capability(dev)[0] >= 9


def use_pdl(device, pdl) -> tuple[bool, bool]:
    """(compile the grid-dependency ops, launch as a PDL dependent) for pdl = False | True | "trigger" (Hopper or
    newer, a Triton with grid dependency control).

    With PDL a kernel is launched while its predecessor in the stream (or CUDA graph) finishes, once the
    predecessor's programs have called gdc_launch_dependents ("trigger": compiled with that call, launched
    normally; True: also launched as a dependent). Every kernel here calls gdc_wait before its first load, so all
    it hides is launch latency, never a data dependency. Off by default: on the H100, every decode kernel launched
    so moved the LServe cycle by -2 % to +4 % and StreamingLLM's step by -6 % (run 7); run 12 uses it on the
    selector step's edges only (docs/benchmarks/attention.md)."""
    if pdl not in (False, True, "trigger"):
        raise ValueError(f"pdl={pdl!r}: allowed False, True, 'trigger'")
    if pdl and not _pdl_capable(str(device)):
        raise ValueError(f"pdl={pdl!r} needs a Hopper-or-newer GPU and Triton with grid dependency control "
                         f"(device {device}, Triton {triton.__version__})")
    return bool(pdl), pdl is True


@triton.jit
def _pdl_enter(PDL: tl.constexpr):
    """Start of a kernel launched with PDL: wait for the predecessor's results, then let the successor launch."""
    if PDL:
        gdc_wait()
        gdc_launch_dependents()


@triton.jit
def _last_of_row(CNT, row, n_parts):
    """True in the program that finishes row `row` (n_parts programs per row); resets the counter."""
    tl.debug_barrier()  # every thread's stores happen before the release below
    last = tl.atomic_add(CNT + row, 1, sem="acq_rel") == n_parts - 1
    if last:
        tl.atomic_xchg(CNT + row, 0)
    return last


@triton.jit
def _split_start(Q, q0, gq, sm_scale, GQP: tl.constexpr, D: tl.constexpr, DOT_F32: tl.constexpr):
    """A split program's start: the row's gq queries (Q rows q0 ..., padded to GQP rows), the base-2 logit scale
    and an empty online-softmax state (m, l, acc)."""
    offs_g = tl.arange(0, GQP)
    offs_d = tl.arange(0, D)
    q = tl.load(Q + (q0 + offs_g[:, None]) * D + offs_d[None, :], mask=offs_g[:, None] < gq, other=0.0)
    if DOT_F32:
        q = q.to(tl.float32)
    return (q, sm_scale * 1.44269504, tl.full([GQP], float("-inf"), tl.float32), tl.zeros([GQP], tl.float32),
            tl.zeros([GQP, D], tl.float32))


@triton.jit
def _store_partial(ACC, M, L, row, split, n_splits, acc, m_i, l_i, gq, GQ: tl.constexpr, GQP: tl.constexpr,
                   D: tl.constexpr):
    """A split's partial (acc [GQP, D], m / l [GQP]) for the row's gq <= GQ real queries only (GQ = 1 pads to 16
    for tl.dot); partials are laid out GQ per (row, split)."""
    offs_g = tl.arange(0, GQP)
    offs_d = tl.arange(0, D)
    out = (row * n_splits + split) * GQ
    gmask = offs_g < gq
    tl.store(ACC + (out + offs_g[:, None]) * D + offs_d[None, :], acc, mask=gmask[:, None])
    tl.store(M + out + offs_g, m_i, mask=gmask)
    tl.store(L + out + offs_g, l_i, mask=gmask)


# ------------------------------------------------------------------------------------------ paged attention
@triton.jit
def _combine_row(ACC, M, L, O, row, q0, gq, n_splits, GQ: tl.constexpr, GQ2: tl.constexpr, D: tl.constexpr,
                 SC: tl.constexpr, n_parts=None):
    """O rows q0 .. q0 + gq = the softmax-weighted sum of the row's split partials (ACC [S, GQ, D], M / L [S, GQ];
    the row's first n_parts of its n_splits slots, all when None).

    Works on the row flattened to C = GQ2 * D columns (GQ2 = GQ rounded up to a power of two, no tl.dot padding)
    and SC splits at a time, merging chunks with the online rule. A chunk's ACC, M and L loads are independent, so
    a row of <= SC splits costs one round trip to L2 (the partials were just written) instead of one per split."""
    offs_c = tl.arange(0, GQ2 * D)
    g = offs_c // D
    cmask = g < gq
    base = row * n_splits * GQ
    if n_parts is None:
        n_parts = n_splits
    m_run = tl.full([GQ2 * D], float("-inf"), tl.float32)
    l_run = tl.zeros([GQ2 * D], tl.float32)
    acc = tl.zeros([GQ2 * D], tl.float32)
    for s0 in range(0, n_parts, SC):
        offs_s = s0 + tl.arange(0, SC)
        msk = (offs_s < n_parts)[:, None] & cmask[None, :]
        at = base + offs_s[:, None] * GQ + g[None, :]  # [SC, C] partial (split, query head) of each column
        m = tl.load(M + at, mask=msk, other=float("-inf"), cache_modifier=".cg")
        l = tl.load(L + at, mask=msk, other=0.0, cache_modifier=".cg")
        a = tl.load(ACC + at * D + offs_c[None, :] % D, mask=msk, other=0.0, cache_modifier=".cg")
        m_new = tl.maximum(m_run, tl.max(m, 0))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        w = tl.where(m == float("-inf"), 0.0, tl.exp2(m - m_safe[None, :]))  # [SC, C]
        alpha = tl.where(m_run == float("-inf"), 0.0, tl.exp2(m_run - m_safe))
        l_run = l_run * alpha + tl.sum(w * l, 0)
        acc = acc * alpha + tl.sum(w * a, 0)
        m_run = m_new
    l_run = tl.where(l_run == 0.0, 1.0, l_run)
    tl.store(O + q0 * D + offs_c, (acc / l_run).to(O.dtype.element_ty), mask=cmask)


def _combine_meta(GQ: int, D: int, n_splits: int) -> dict:
    """_combine_row's constexprs: GQ2, and SC = splits per chunk (<= 4096 fp32 values per loaded tile)."""
    GQ2 = triton.next_power_of_2(GQ)
    return {"GQ2": GQ2, "SC": min(_pow2(n_splits, 1), max(1, 4096 // (GQ2 * D)))}


@triton.jit
def _row_queries(QOFF, QCNT, row, GQ: tl.constexpr, ROW_Q: tl.constexpr):
    """(first Q row, number of queries) of a row: GQ per row in order, or per-row tables (ROW_Q)."""
    if ROW_Q:
        return tl.load(QOFF + row), tl.load(QCNT + row)
    else:
        return row * GQ, GQ


@triton.jit
def _paged_split_kernel(Q, QOFF, QCNT, KP, VP, PAGES, PLEN, POS, POS_LO, ACC, M, L, O, CNT,
                        n_pages, pages_per_split, n_splits, sm_scale, sink, R, R_long, short_splits, n_long_programs,
                        GQ: tl.constexpr, GQP: tl.constexpr, PAGE: tl.constexpr, D: tl.constexpr,
                        POS_FILTER: tl.constexpr, DOT_F32: tl.constexpr, PAGE_T: tl.constexpr, PPI: tl.constexpr,
                        FUSE_COMBINE: tl.constexpr, GQ2: tl.constexpr, SC: tl.constexpr, PDL: tl.constexpr,
                        PPS: tl.constexpr, SPLIT_FIRST: tl.constexpr, ROW_Q: tl.constexpr, STRIDED: tl.constexpr,
                        SHORT: tl.constexpr):
    _pdl_enter(PDL)
    row_splits = n_splits
    if SHORT:  # 1-D grid: the R_long long rows of every batch row first (n_splits programs each), then the short
        p = tl.program_id(0)  # rows (short_splits each); a row's programs are consecutive
        if p < n_long_programs:
            t = p // n_splits
            split = p % n_splits
            row = (t // R_long) * R + t % R_long
        else:
            t = (p - n_long_programs) // short_splits
            split = (p - n_long_programs) % short_splits
            row = (t // (R - R_long)) * R + R_long + t % (R - R_long)
            row_splits = short_splits
    elif SPLIT_FIRST:  # consecutive programs walk one row's splits (spreads a heavy row's splits over the SMs)
        split = tl.program_id(0)
        row = tl.program_id(1)
    else:
        row = tl.program_id(0)
        split = tl.program_id(1)
    offs_d = tl.arange(0, D)
    # One iteration reads PPI pages as one tile of PPI * PAGE_T token rows (PAGE_T = PAGE rounded up to a power
    # of two; rows past a page's tokens are masked): bigger tiles keep more bytes in flight per program, and
    # tl.dot needs >= 16 rows.
    offs_t = tl.arange(0, PPI * PAGE_T)
    within = offs_t % PAGE_T
    q0, gq = _row_queries(QOFF, QCNT, row, GQ, ROW_Q)
    q, qk_scale, m_i, l_i, acc = _split_start(Q, q0, gq, sm_scale, GQP, D, DOT_F32)
    # The split's page ids and lengths in one load, next to q's: loading each page's id inside the loop put a
    # dependent memory round trip (~0.9 us on an H100 with L2 cold) in front of every page's K / V loads, which
    # the software pipeline could not hide (measured: 64 empty pages in one program took 60 us).
    offs_p = tl.arange(0, PPS)  # PPS = pages_per_split rounded up to a power of two
    if STRIDED:  # split s reads list entries s, s + n_splits, ...: a short list spreads over the splits
        offs_j = split + offs_p * row_splits
    else:  # split s reads entries [s * pages_per_split, +pages_per_split)
        offs_j = split * pages_per_split + offs_p
    jmask = (offs_p < pages_per_split) & (offs_j < n_pages)
    pids = tl.load(PAGES + row * n_pages + offs_j, mask=jmask, other=-1)
    ntoks = tl.where(pids >= 0, tl.load(PLEN + row * n_pages + offs_j, mask=jmask, other=0), 0)
    n_iter = tl.cdiv(tl.max(tl.where(ntoks > 0, offs_p + 1, 0)), PPI)  # up to the last page with tokens
    if POS_FILTER:
        pos_lo = tl.load(POS_LO + row)
    for it in range(0, n_iter):  # branch-free, so Triton pipelines the page loads
        # this tile's PPI page ids and lengths, picked from registers (no memory access), one per token row
        pick = offs_p[None, :] == it * PPI + tl.arange(0, PPI)[:, None]  # [PPI, PPS]
        pid = tl.max(tl.where(pick, pids[None, :], -1), 1)
        ntok = tl.max(tl.where(pick, ntoks[None, :], 0), 1)  # 0 for a padding entry: it reads nothing
        pid = tl.reshape(tl.broadcast_to(pid[:, None], [PPI, PAGE_T]), [PPI * PAGE_T])
        ntok = tl.reshape(tl.broadcast_to(ntok[:, None], [PPI, PAGE_T]), [PPI * PAGE_T])
        tok = tl.maximum(pid, 0).to(tl.int64) * PAGE + within  # pool token row
        tmask = within < ntok
        k = tl.load(KP + tok[:, None] * D + offs_d[None, :], mask=tmask[:, None], other=0.0)
        v = tl.load(VP + tok[:, None] * D + offs_d[None, :], mask=tmask[:, None], other=0.0)
        if DOT_F32:
            k = k.to(tl.float32)
        s = tl.dot(q, tl.trans(k)) * qk_scale
        keep = tmask[None, :]
        if POS_FILTER:
            pos = tl.load(POS + tok, mask=tmask, other=-1)
            keep = keep & ((pos[None, :] >= 0) & ((pos[None, :] < sink) | (pos[None, :] >= pos_lo)))
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        acc, l_i = online_softmax_update(s, v, m_i, m_safe, l_i, acc, DOT_F32)
        m_i = m_new
    _store_partial(ACC, M, L, row, split, n_splits, acc, m_i, l_i, gq, GQ, GQP, D)
    if FUSE_COMBINE:
        if _last_of_row(CNT, row, row_splits):
            _combine_row(ACC, M, L, O, row, q0, gq, n_splits, GQ, GQ2, D, SC, row_splits)


@triton.jit
def _combine_kernel(ACC, M, L, O, QOFF, QCNT, n_splits, GQ: tl.constexpr, GQ2: tl.constexpr, D: tl.constexpr,
                    SC: tl.constexpr, PDL: tl.constexpr, ROW_Q: tl.constexpr):
    _pdl_enter(PDL)
    row = tl.program_id(0)
    q0, gq = _row_queries(QOFF, QCNT, row, GQ, ROW_Q)
    _combine_row(ACC, M, L, O, row, q0, gq, n_splits, GQ, GQ2, D, SC)


def paged_attention(q_rows, k_pool, v_pool, pages, page_len, scaling: float, pos_filter=None,
                    pages_per_split: int | None = None, num_warps: int = 4, num_stages: int = 2, out=None,
                    fuse_combine: bool = True, pdl: bool = False, pages_per_iter: int = 1,
                    split_first: bool = False, row_queries=None, strided: bool = True, short_rows=None,
                    impl: str = "triton", early_kv=None, ready=None):
    """q_rows [B, R, GQ, D] against the listed pages -> out [B, R, GQ, D] (q's dtype).
    pdl: programmatic dependent launch (see `use_pdl`). pages_per_iter: pages read as
    one tile per loop iteration (raised to reach 16 token rows); split_first: launch order of the programs.

    pos_filter: (pos_pool [P, page] int64, sink int, pos_lo [B, R]) keeps tokens with position < sink or
    >= pos_lo (page-granular windows over a ring of pages).
    row_queries: (q_off [B, R], q_cnt [B, R] int32, GQ): rows with their own number of queries in one launch
    (e.g. LServe: one row per retrieval query head, which selects its own pages, and one row per streaming KV
    head, whose query group shares its pages, so they are read once). Row r attends with queries q_off[r] ..
    q_off[r] + q_cnt[r] (q_cnt <= GQ) of q_rows flattened to [-1, D] and writes those rows of out (q_rows'
    shape); rows = pages' [B, R].
    strided: split s of a row reads list entries s, s + n_splits, ... (a short list spreads over the splits), else
    entries [s * pages_per_split, +pages_per_split).
    short_rows: (R_long, short_pages): rows R_long.. of every batch row list at most short_pages pages (entries past
    them are not read) and get only the splits those need, in a 1-D grid of exactly the programs needed (e.g.
    LServe's streaming rows: 6 pages beside retrieval rows of 64; the launch then fits one program per SM instead of
    doubling some SMs up with empty or short programs).
    impl: "triton" (this module's kernel) or "cuda_cluster" (kernels/cuda_decode.py: a row's splits are one
    thread-block cluster and meet in distributed shared memory; Hopper, bf16, pages of 64, head dim 128, <= 16
    splits (<= 8 when chosen automatically), interleaved pages, num_stages pages in flight per split; no pos_filter,
    split_first or short_rows).
    early_kv: [B, R] int32 pool page id per row (-1 = none), cuda_cluster with pdl only: each split starts its first
    pages before the grid-dependency wait, all but the row's early_kv page (the one the launch before may write, e.g.
    by an append); the lists must not be the launch before's to write (`cuda_decode.cluster_paged_attention`).
    ready: [B, R] int32 per-row flags (cuda_cluster, with early_kv): the launch right after a CUDA top-k that publishes
    each row's list as it is written (`top_pages(..., ready=)`; static rows hold 2), so a row's pages start as soon
    as its list is out (`cuda_decode.cluster_paged_attention` gives the contract)."""
    if row_queries is not None:
        q_off, q_cnt, GQ = row_queries
        B, R = pages.shape[:2]
        D = q_rows.shape[-1]
        if not 1 <= GQ <= 128 or q_off.shape != (B, R) or q_cnt.shape != (B, R):
            raise ValueError(f"row_queries: q_off / q_cnt must be [B, R] = {(B, R)} (got {tuple(q_off.shape)}, "
                             f"{tuple(q_cnt.shape)}) and GQ in 1..128 (got {GQ})")
        q_off = q_off.to(torch.int32).contiguous()
        q_cnt = q_cnt.to(torch.int32).contiguous()
    else:
        B, R, GQ, D = q_rows.shape
        q_off = q_cnt = pages  # unused placeholders
    page = k_pool.shape[1]
    NP = pages.shape[-1]
    rows = B * R
    q = q_rows.contiguous()
    pages = pages.reshape(rows, NP).to(torch.int32).contiguous()
    page_len = page_len.reshape(rows, NP).to(torch.int32).contiguous()
    if pages_per_split is None:  # ~2 programs per SM, at least 4 pages each, a row's splits of equal size
        sms = torch.cuda.get_device_properties(q.device).multi_processor_count if q.is_cuda else 8
        splits = max(1, min(triton.cdiv(NP, 4), triton.cdiv(2 * sms, rows)))
        if impl == "cuda_cluster":  # a row's splits are one cluster: at most 8 CTAs
            splits = min(splits, 8)
        pages_per_split = min(triton.cdiv(NP, splits), MAX_PAGES_PER_SPLIT)
    if not 1 <= pages_per_split <= MAX_PAGES_PER_SPLIT:
        raise ValueError(f"pages_per_split={pages_per_split}: allowed 1..{MAX_PAGES_PER_SPLIT} (a split's page ids "
                         "are held in registers)")
    n_splits = max(1, triton.cdiv(NP, pages_per_split))
    if impl == "cuda_cluster":
        return _cluster_paged(q, q_off, q_cnt, GQ, row_queries is not None, k_pool, v_pool, pages, page_len,
                              scaling, out, n_splits, num_warps, num_stages, pdl, pos_filter, split_first, strided,
                              short_rows, early_kv, ready)
    if impl != "triton":
        raise ValueError(f"impl={impl!r}: allowed 'triton', 'cuda_cluster'")
    if early_kv is not None or ready is not None:
        raise ValueError("early_kv / ready (pages fetched before the grid-dependency wait) need impl='cuda_cluster'")
    R_long, short_splits, n_long_programs = R, n_splits, 0
    if short_rows is not None:
        R_long, short_pages = short_rows
        if not 0 < R_long < R or short_pages < 1 or not fuse_combine:
            raise ValueError(f"short_rows={short_rows}: needs 0 < R_long < R = {R}, short_pages >= 1 and "
                             "fuse_combine=True")
        short_splits = min(n_splits, triton.cdiv(short_pages, pages_per_split))
        n_long_programs = B * R_long * n_splits
    GQP = _pow2(GQ)
    acc = torch.empty(rows, n_splits, GQ, D, dtype=torch.float32, device=q.device)
    m = torch.empty(rows, n_splits, GQ, dtype=torch.float32, device=q.device)
    lse = torch.empty_like(m)
    if pos_filter is not None:
        pos_pool, sink, pos_lo = pos_filter
        pos_lo = pos_lo.reshape(rows).to(torch.int64).contiguous()
    else:
        pos_pool, sink, pos_lo = pages, 0, pages  # unused placeholders
    if out is None:
        out = torch.empty(q_rows.shape if row_queries is not None else (B, R, GQ, D), dtype=q_rows.dtype,
                          device=q.device)
    cnt = _counters(q.device, rows) if fuse_combine else pages
    pdl_ops, pdl_launch = use_pdl(q.device, pdl)
    meta = {**_combine_meta(GQ, D, n_splits), "PDL": pdl_ops, "ROW_Q": row_queries is not None}
    page_t = triton.next_power_of_2(page)
    ppi = max(triton.next_power_of_2(pages_per_iter), triton.cdiv(16, page_t))
    if short_rows is not None:
        grid = (n_long_programs + B * (R - R_long) * short_splits,)
    else:
        grid = (n_splits, rows) if split_first else (rows, n_splits)
    _paged_split_kernel[grid](
        q, q_off, q_cnt, k_pool, v_pool, pages, page_len, pos_pool, pos_lo, acc, m, lse, out, cnt, NP, pages_per_split,
        n_splits, scaling, sink, R, R_long, short_splits, n_long_programs, GQ=GQ, GQP=GQP, PAGE=page, D=D,
        POS_FILTER=pos_filter is not None, DOT_F32=INTERPRET or q.dtype == torch.float32, PAGE_T=page_t, PPI=ppi,
        FUSE_COMBINE=fuse_combine, **meta, PPS=_pow2(pages_per_split, ppi), SPLIT_FIRST=split_first, STRIDED=strided,
        SHORT=short_rows is not None, num_warps=num_warps, num_stages=1 if INTERPRET else num_stages,
        launch_pdl=pdl_launch)
    if not fuse_combine:
        _combine_kernel[(rows,)](acc, m, lse, out, q_off, q_cnt, n_splits, GQ=GQ, D=D, **meta, num_warps=4,
                                 launch_pdl=pdl_launch)
    return out


_ROW_TABLES: dict = {}


def _cluster_paged(q, q_off, q_cnt, GQ, has_row_q, k_pool, v_pool, pages, page_len, scaling, out, n_splits,
                   num_warps, num_stages, pdl, pos_filter, split_first, strided, short_rows, early_kv, ready):
    """paged_attention(impl="cuda_cluster"): the launch options checked, then one cluster launch."""
    from sparsebench.kernels import cuda_decode

    bad = {"pos_filter": pos_filter is not None, "split_first": split_first, "strided=False": not strided,
           "short_rows": short_rows is not None, f"num_warps={num_warps} (4 only)": num_warps != 4}
    if any(bad.values()):
        raise ValueError(f"impl='cuda_cluster' does not take {', '.join(k for k, v in bad.items() if v)}")
    D = q.shape[-1]
    rows = pages.shape[0]
    if not has_row_q:  # row r holds queries r * GQ .. + GQ (built once per shape, so a graph replays it)
        key = (q.device, rows, GQ)
        if key not in _ROW_TABLES:
            _ROW_TABLES[key] = (torch.arange(rows, device=q.device, dtype=torch.int32) * GQ,
                                torch.full((rows,), GQ, device=q.device, dtype=torch.int32))
        q_off, q_cnt = _ROW_TABLES[key]
    if out is None:
        out = torch.empty_like(q)  # q_rows' shape, with or without row_queries
    cuda_decode.cluster_paged_attention(q.view(-1, D), q_off.reshape(-1), q_cnt.reshape(-1), k_pool, v_pool, pages,
                                        page_len, scaling, out.view(-1, D), n_splits, num_stages,
                                        use_pdl(q.device, pdl), n_queries=GQ,
                                        early_hot=None if early_kv is None else
                                        early_kv.reshape(-1).to(torch.int32).contiguous(),
                                        ready=None if ready is None else ready.view(-1))  # (a view: no copy)
    return out


# ------------------------------------------------------------------------------------------ page scores
@triton.jit
def _page_scores_block(Q, KMIN, KMAX, LP, OUT, row, pb, n_phys, n_lp_rows,
                       GQ: tl.constexpr, GQP: tl.constexpr, D: tl.constexpr, LPP: tl.constexpr,
                       BLOCK_P: tl.constexpr, REDUCE: tl.constexpr, DOT_F32: tl.constexpr, PDL: tl.constexpr,
                       EARLY: tl.constexpr):
    """Scores of physical pages [pb * BLOCK_P, +BLOCK_P) of `row` into OUT: one row per query head (REDUCE 0,
    the summaries read once for all of them), or the max (1) / sum (2) over the row's query heads.
    PDL: the grid-dependency ops; EARLY: the logical-page rows and summaries are loaded before the wait, Q after."""
    offs_g = tl.arange(0, GQP)
    offs_d = tl.arange(0, D)
    offs_l = pb * BLOCK_P * LPP + tl.arange(0, BLOCK_P * LPP)  # logical pages of this block
    q_ptrs = Q + (row * GQ + offs_g[:, None]) * D + offs_d[None, :]
    if not EARLY:
        _pdl_enter(PDL)
        q = tl.load(q_ptrs, mask=offs_g[:, None] < GQ, other=0.0)
    lp = tl.load(LP + row * n_lp_rows + offs_l, mask=offs_l < n_lp_rows, other=-1)
    ok = lp >= 0
    lpi = tl.where(ok, lp, 0).to(tl.int64)
    kmax = tl.load(KMAX + lpi[:, None] * D + offs_d[None, :], mask=ok[:, None], other=0.0)
    kmin = tl.load(KMIN + lpi[:, None] * D + offs_d[None, :], mask=ok[:, None], other=0.0)
    if EARLY:
        _pdl_enter(PDL)
        q = tl.load(q_ptrs, mask=offs_g[:, None] < GQ, other=0.0)
    # U = sum_i relu(q_i) * max_i + min(q_i, 0) * min_i  (Quest's bound, no 1/sqrt(d)). bf16 / fp16 products are
    # exact in the fp32 accumulator, so the half-precision dot gives the fp32 bound; fp32 stores use IEEE fp32.
    if DOT_F32:
        q = q.to(tl.float32)
        u = tl.dot(tl.maximum(q, 0.0), tl.trans(kmax.to(tl.float32)), input_precision="ieee") + \
            tl.dot(tl.minimum(q, 0.0), tl.trans(kmin.to(tl.float32)), input_precision="ieee")
    else:
        u = tl.dot(tl.maximum(q, 0.0).to(kmax.dtype), tl.trans(kmax)) + \
            tl.dot(tl.minimum(q, 0.0).to(kmin.dtype), tl.trans(kmin))  # [GQP, BLOCK_P * LPP]
    offs_p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    if REDUCE == 0:
        u = tl.where(ok[None, :], u, float("-inf"))
        phys_g = tl.max(tl.reshape(u, [GQP, BLOCK_P, LPP]), 2)  # [GQP, BLOCK_P]
        tl.store(OUT + (row * GQ + offs_g[:, None]) * n_phys + offs_p[None, :], phys_g,
                 mask=(offs_g[:, None] < GQ) & (offs_p[None, :] < n_phys))
    else:
        u = tl.where(offs_g[:, None] < GQ, u, float("-inf") if REDUCE == 1 else 0.0)
        if REDUCE == 1:
            s = tl.max(u, 0)
        else:
            s = tl.sum(u, 0)
        s = tl.where(ok, s, float("-inf"))
        phys = tl.max(tl.reshape(s, [BLOCK_P, LPP]), 1)
        tl.store(OUT + row * n_phys + offs_p, phys, mask=offs_p < n_phys)


@triton.jit
def _page_scores_kernel(Q, KMIN, KMAX, LP, OUT, n_phys, n_lp_rows,
                        GQ: tl.constexpr, GQP: tl.constexpr, D: tl.constexpr, LPP: tl.constexpr,
                        BLOCK_P: tl.constexpr, REDUCE: tl.constexpr, DOT_F32: tl.constexpr, PDL: tl.constexpr,
                        EARLY: tl.constexpr):
    _page_scores_block(Q, KMIN, KMAX, LP, OUT, tl.program_id(0), tl.program_id(1), n_phys, n_lp_rows,
                       GQ, GQP, D, LPP, BLOCK_P, REDUCE, DOT_F32, PDL, EARLY)


def page_scores_triton(q_rows, kmin_flat, kmax_flat, lp_rows, logical_per_page: int, reduce: str = "max",
                       block_p: int = 16, out=None, num_warps: int = 4, pdl: bool = False, early: bool = False):
    """Physical-page scores (fp32, -inf for empty pages): [B, R, NP] for reduce max / sum over each row's
    GQ query heads, or [B, R, GQ, NP] for reduce "none" (one row per query head, summaries read once);
    `out` may be any contiguous fp32 tensor of that many elements. early (with pdl=True): the summaries and
    logical-page rows are read before the grid-dependency wait, so they stream while the launch before finishes;
    they must not be its to write (a model's summary update for the new token comes earlier), Q is read after.

    q_rows [B, R, GQ, D]; kmin_flat / kmax_flat [n_logical_rows_total, D]; lp_rows [B, R, NP * LPP] int32
    flat logical-page rows (-1 = empty)."""
    B, R, GQ, D = q_rows.shape
    n_lp = lp_rows.shape[-1]
    n_phys = n_lp // logical_per_page
    # tl.dot needs >= 16 logical pages per program
    block_p = max(min(block_p, _pow2(n_phys, 1)), triton.next_power_of_2(max(1, 16 // logical_per_page)))
    mode = {"none": 0, "max": 1, "sum": 2}[reduce]
    shape = (B, R, GQ, n_phys) if mode == 0 else (B, R, n_phys)
    if out is None:
        out = torch.empty(shape, dtype=torch.float32, device=q_rows.device)
    _page_scores_kernel[(B * R, triton.cdiv(n_phys, block_p))](
        q_rows.contiguous(), kmin_flat, kmax_flat, lp_rows.reshape(B * R, n_lp).to(torch.int32).contiguous(), out,
        n_phys, n_lp, GQ=GQ, GQP=_pow2(GQ), D=D, LPP=logical_per_page, BLOCK_P=block_p, REDUCE=mode,
        DOT_F32=INTERPRET or q_rows.dtype == torch.float32, PDL=(p := use_pdl(q_rows.device, pdl))[0],
        EARLY=early and p[0], num_warps=num_warps, launch_pdl=p[1])
    return out


# ------------------------------------------------------------------------------------------ top-k pages
@triton.jit
def sortable_key(s):
    """fp32 -> uint32 keys in the floats' order (NaN aside: callers map it)."""
    bits = s.to(tl.uint32, bitcast=True)
    return tl.where((bits >> 31) != 0, ~bits, bits | 0x80000000)


@triton.jit
def _max_min(a_max, a_min, b_max, b_min):
    return tl.maximum(a_max, b_max), tl.minimum(a_min, b_min)


@triton.jit
def _select_rows(SC, NPAGES, BASE, OUT, srow, rmask, n_cols, k_sel, out_width, rows_per_batch, out_rows_per_batch,
                 BLOCK: tl.constexpr, SEARCH: tl.constexpr):
    """For score rows srow [R] (rmask: real rows; R = 1 in `top_pages`): the k_sel - 1 best pages among all but
    the last valid page (ties to the lower page), in page order, then the last page; written as pool ids
    (BASE[row] + stream page) into OUT[out row, :k_sel]. No sort: each row's threshold is searched on the
    scores' sortable bits between the row's smallest and largest key, one CTA-wide count per pass, stopping as
    soon as exactly k_sel - 1 keys are at or above a candidate; then a prefix-sum compaction. SEARCH 0:
    bisection; 1: each candidate interpolated from the counts at the bracket's ends (regula falsi, Illinois
    variant; in simulation 6.5 / 9.4 / 6.7 passes against bisection's 15 / 9.7 / 11 for 2K normal,
    shifted half-normal and exponential scores)."""
    offs = tl.arange(0, BLOCK)
    # three independent loads in flight together (the score load does not wait for n_valid)
    n_valid = tl.load(NPAGES + srow, mask=rmask, other=1)
    base = tl.load(BASE + srow, mask=rmask, other=0)
    s = tl.load(SC + srow[:, None] * n_cols + offs[None, :], mask=(offs[None, :] < n_cols) & rmask[:, None],
                other=0.0, cache_modifier=".cg")
    ok = (offs[None, :] < n_valid[:, None] - 1) & rmask[:, None]
    # invalid or NaN pages rank below every real score (-inf -> 0x007FFFFF)
    key = tl.where(ok & (s == s), sortable_key(s), 0)
    kk = k_sel - 1
    # invariant: count(key >= lo) >= kk and the answer (the largest t with count(key >= t) >= kk, or any t with
    # count == kk) lies in [lo, hi]. Start from the row's key range: the answer is at most the largest key, and
    # at least the smallest valid key when kk keys or more are valid.
    hi, lo_valid = tl.reduce((key, tl.where(ok, key, ~tl.zeros_like(key))), 1, _max_min)  # one CTA-wide pass
    hi = hi.to(tl.int64)
    lo_valid = lo_valid.to(tl.int64)
    lo = tl.where(n_valid - 1 >= kk, tl.minimum(lo_valid, hi), 0)
    if SEARCH == 0:  # bisection
        while tl.max(hi - lo, 0) > 0:
            mid = (lo + hi + 1) // 2
            c = tl.sum((key >= mid.to(tl.uint32)[:, None]).to(tl.int32), 1)
            lo = tl.where(c >= kk, mid, lo)
            hi = tl.where(c == kk, mid, tl.where(c > kk, hi, mid - 1))
    else:  # regula falsi on the counts at the bracket's ends, Illinois-style (an end kept twice weighs half)
        c_lo = tl.where(n_valid - 1 >= kk, n_valid - 1, BLOCK).to(tl.float32)  # ~count(key >= lo)
        c_hi = tl.zeros_like(c_lo)  # count(key > hi)
        w_lo = tl.full(c_lo.shape, 1.0, tl.float32)
        w_hi = tl.full(c_lo.shape, 1.0, tl.float32)
        side = tl.zeros(c_lo.shape, tl.int32)  # which end the last pass moved: 1 lo, -1 hi
        while tl.max(hi - lo, 0) > 0:
            # aim between the kk-th and (kk + 1)-th key as if the keys were uniform in (lo, hi]
            f_lo = (c_lo - kk - 0.5) * w_lo
            f_hi = (kk - 0.5 - c_hi) * w_hi
            frac = (f_lo / tl.maximum(f_lo + f_hi, 1e-6) * 1048576.0).to(tl.int64)  # 20-bit fixed point
            t = tl.minimum(tl.maximum(lo + (((hi - lo + 1) * frac) >> 20), lo + 1), hi)
            c = tl.sum((key >= t.to(tl.uint32)[:, None]).to(tl.int32), 1)
            up = c >= kk
            cf = c.to(tl.float32)
            w_hi = tl.where(up, tl.where(side == 1, w_hi * 0.5, w_hi), 1.0)
            w_lo = tl.where(up, 1.0, tl.where(side == -1, w_lo * 0.5, w_lo))
            side = tl.where(up, 1, -1)
            c_lo = tl.where(up, cf, c_lo)
            c_hi = tl.where(up, c_hi, cf)
            lo = tl.where(up, t, lo)
            hi = tl.where(c == kk, t, tl.where(c > kk, hi, t - 1))
    lo = lo.to(tl.uint32)
    greater = key > lo[:, None]
    eq = (key == lo[:, None]) & ok
    counts = tl.sum(greater.to(tl.int64) + (eq.to(tl.int64) << 32), 1)  # both counts in one CTA-wide pass
    need = kk - (counts & 0xFFFFFFFF).to(tl.int32)
    if tl.max((counts >> 32).to(tl.int32) - need, 0) > 0:  # more ties at the threshold than places left:
        take = greater | (eq & (tl.cumsum(eq.to(tl.int32), 1) <= need[:, None]))  # the first ones by page
    else:  # (the common case: no scan for the ties)
        take = greater | eq
    take = take & (tl.zeros_like(offs)[None, :] < kk)  # k_sel == 1: only the last page
    pos = tl.cumsum(take.to(tl.int32), 1) - 1
    out_row = (srow // rows_per_batch) * out_rows_per_batch + srow % rows_per_batch
    tl.store(OUT + out_row[:, None] * out_width + pos, (base[:, None] + offs[None, :]).to(tl.int32), mask=take)
    tl.store(OUT + out_row * out_width + kk, (base + n_valid - 1).to(tl.int32), mask=rmask)


@triton.jit
def _top_pages_kernel(SCORES, NPAGES, BASE, OUT, n_cols, k_sel, out_width, rows_per_batch, out_rows_per_batch,
                      BLOCK: tl.constexpr, SEARCH: tl.constexpr, PDL: tl.constexpr):
    _pdl_enter(PDL)
    srow = tl.program_id(0) + tl.arange(0, 1)
    _select_rows(SCORES, NPAGES, BASE, OUT, srow, srow >= 0, n_cols, k_sel, out_width, rows_per_batch,
                 out_rows_per_batch, BLOCK, SEARCH)


SEARCHES = {"bisect": 0, "interp": 1}


TOP_IMPLS = ("triton", "cuda")


def top_pages(scores, n_pages, base, k_sel: int, out, rows_per_batch: int | None = None,
              out_rows_per_batch: int | None = None, num_warps: int = 4, pdl: bool = False, search: str = "bisect",
              impl: str = "triton", candidates: int | None = None, ready=None):
    """scores [rows, P] fp32; n_pages [rows] valid pages; base [rows] pool id of each row's first page;
    writes the k_sel selected pool page ids (int32, the last page in column k_sel - 1) into row
    (row // rows_per_batch) * out_rows_per_batch + row % rows_per_batch of out (row stride out.stride(-2)).
    search: how each pass picks its candidate threshold (see `_select_rows`). impl: "triton" (this module's kernel)
    or "cuda" (kernels/cuda_topk.py: the same selection with fewer, cheaper passes; a GPU, P <= 8192; num_warps and
    search do not apply to it; candidates: its thresholds counted per pass, 1 / 3 / 7, None = its default; ready:
    flags it publishes each row of out through, see `cuda_topk.top_pages_cuda`)."""
    if search not in SEARCHES:
        raise ValueError(f"top_pages: search={search!r}; allowed: {sorted(SEARCHES)}")
    if impl not in TOP_IMPLS:
        raise ValueError(f"top_pages: impl={impl!r}; allowed: {TOP_IMPLS}")
    rows, P = scores.shape
    rpb = rows_per_batch or rows
    if impl == "cuda":
        from sparsebench.kernels.cuda_topk import top_pages_cuda

        return top_pages_cuda(scores, n_pages, base, k_sel, out, rpb, out_rows_per_batch or rpb,
                              use_pdl(scores.device, pdl), candidates, ready)
    if ready is not None:
        raise ValueError("top_pages: ready (rows published as they are written) needs impl='cuda'")
    _top_pages_kernel[(rows,)](scores, n_pages.to(torch.int32).contiguous(), base.to(torch.int64).contiguous(), out, P,
                               k_sel, out.stride(-2), rpb, out_rows_per_batch or rpb,
                               BLOCK=triton.next_power_of_2(P), SEARCH=SEARCHES[search],
                               PDL=(p := use_pdl(scores.device, pdl))[0],
                               num_warps=num_warps, launch_pdl=p[1])
    return out


def select_pages(q_rows, kmin_flat, kmax_flat, lp_rows, logical_per_page: int, reduce: str, n_pages, base,
                 k_sel: int, out, rows_per_batch: int | None = None, out_rows_per_batch: int | None = None,
                 block_p: int = 8, num_warps: int = 2, top_warps: int = 8, scores=None, pdl=False,
                 top_search: str = "bisect", top_pdl=None, scores_early: bool = False, top_impl: str = "triton",
                 top_candidates: int | None = None, ready=None):
    """A decode step's page selection: `page_scores_triton` into `scores` (fp32 scratch of the score rows), then
    `top_pages` over its score rows (two launches; defaults = the fastest in the H100 sweep at 128K, batch 1
    and 8). pdl applies to both launches; top_pdl (default: pdl) to the top-k alone, which then waits on the page
    scores as a PDL dependent (True) or lets its own successor launch early ("trigger"). Score rows are the
    B * R rows (reduce max / sum) or the B * R * GQ query heads (reduce "none"); n_pages / base [score rows].
    scores_early: the page scores launched as a PDL dependent that reads the summaries before its dependency wait
    (`page_scores_triton`'s early). top_impl, top_candidates, ready: `top_pages`' impl, candidates, ready."""
    if top_pdl is None:
        top_pdl = pdl
    s_pdl = True if scores_early else "trigger" if top_pdl and pdl is False else pdl
    scores = page_scores_triton(q_rows, kmin_flat, kmax_flat, lp_rows, logical_per_page, reduce, block_p, scores,
                                num_warps, s_pdl, early=scores_early)
    return top_pages(scores.view(-1, scores.shape[-1]), n_pages, base, k_sel, out, rows_per_batch,
                     out_rows_per_batch, num_warps=top_warps, pdl=top_pdl, search=top_search, impl=top_impl,
                     candidates=top_candidates, ready=ready)


# ------------------------------------------------------------------------------------------ gathered tokens
@triton.jit
def _gather_split_kernel(Q, KF, VF, IDX, BASE, LOGITS, ACC, M, L, n_tok, tok_per_split, n_splits, sm_scale,
                         rows_per_set, GQ: tl.constexpr, GQP: tl.constexpr, D: tl.constexpr, BLOCK_T: tl.constexpr,
                         DOT_F32: tl.constexpr, SHARED: tl.constexpr):
    """One split of a row's tokens: logits stored, the split's online-softmax partial stored. SHARED: one token
    set per `rows_per_set` rows (IDX [rows / rows_per_set, n_tok] positions in the row's stream), each row adding
    its stream's first flat pool row BASE[row]; else IDX [rows, n_tok] flat pool rows. (Loading the next tile's
    indices and rows ahead of a tile's compute did not change ALISA's step: data/run22_probe_alisa.log.)"""
    row = tl.program_id(0)
    split = tl.program_id(1)
    if SHARED:
        irow = row // rows_per_set
        base = tl.load(BASE + row)
    else:
        irow = row
        base = 0
    offs_g = tl.arange(0, GQP)
    offs_d = tl.arange(0, D)
    q, qk_scale, m_i, l_i, acc = _split_start(Q, row * GQ, GQ, sm_scale, GQP, D, DOT_F32)
    lo = split * tok_per_split
    hi = tl.minimum(lo + tok_per_split, n_tok)
    for t0 in range(lo, hi, BLOCK_T):
        offs_t = t0 + tl.arange(0, BLOCK_T)
        tmask = offs_t < hi
        idx = tl.load(IDX + irow * n_tok + offs_t, mask=tmask, other=-1)
        ok = idx >= 0
        idx64 = tl.where(ok, idx, 0).to(tl.int64) + base
        k = tl.load(KF + idx64[:, None] * D + offs_d[None, :], mask=ok[:, None], other=0.0)
        v = tl.load(VF + idx64[:, None] * D + offs_d[None, :], mask=ok[:, None], other=0.0)
        if DOT_F32:
            k = k.to(tl.float32)
        s = tl.dot(q, tl.trans(k)) * qk_scale
        s = tl.where(ok[None, :], s, float("-inf"))
        tl.store(LOGITS + (row * GQ + offs_g[:, None]) * n_tok + offs_t[None, :], s,
                 mask=(offs_g[:, None] < GQ) & tmask[None, :])
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        acc, l_i = online_softmax_update(s, v, m_i, m_safe, l_i, acc, DOT_F32)
        m_i = m_new
    _store_partial(ACC, M, L, row, split, n_splits, acc, m_i, l_i, GQ, GQ, GQP, D)


@triton.jit
def _split_probs(LOGITS, M, L, row, offs_t, n_tok, n_splits, GQ: tl.constexpr, GQP: tl.constexpr,
                 S_P2: tl.constexpr):
    """Softmax weights [GQP, len(offs_t)] of row's GQ queries on tokens offs_t (0 past n_tok and for padded
    queries), from the split kernel's logits and its partials' maxima and sums."""
    offs_s = tl.arange(0, S_P2)
    offs_g = tl.arange(0, GQP)
    smask = (offs_s < n_splits)[:, None] & (offs_g < GQ)[None, :]
    at = row * n_splits * GQ + offs_s[:, None] * GQ + offs_g[None, :]
    m = tl.load(M + at, mask=smask, other=float("-inf"))
    l = tl.load(L + at, mask=smask, other=0.0)
    m_max = tl.max(m, 0)
    m_safe = tl.where(m_max == float("-inf"), 0.0, m_max)
    denom = tl.sum(tl.where(m == float("-inf"), 0.0, tl.exp2(m - m_safe[None, :])) * l, 0)
    denom = tl.where(denom == 0.0, 1.0, denom)
    msk = (offs_g[:, None] < GQ) & (offs_t[None, :] < n_tok)
    s = tl.load(LOGITS + (row * GQ + offs_g[:, None]) * n_tok + offs_t[None, :], mask=msk, other=float("-inf"))
    return tl.where(s == float("-inf"), 0.0, tl.exp2(s - m_safe[:, None]) / denom[:, None])


@triton.jit
def _probs_kernel(LOGITS, M, L, PROBS, n_tok, n_splits, GQ: tl.constexpr, GQP: tl.constexpr,
                  S_P2: tl.constexpr, BLOCK_T: tl.constexpr):
    row = tl.program_id(0)
    offs_t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_g = tl.arange(0, GQP)
    p = _split_probs(LOGITS, M, L, row, offs_t, n_tok, n_splits, GQ, GQP, S_P2)
    tl.store(PROBS + (row * GQ + offs_g[:, None]) * n_tok + offs_t[None, :], p,
             mask=(offs_g[:, None] < GQ) & (offs_t[None, :] < n_tok))


def gather_split(q, k_flat, v_flat, idx, scaling: float, tok_per_split: int | None = None, block_t: int = 64,
                 base=None, rows_per_set: int = 1, num_warps: int = 4, num_stages: int = 3):
    """The split launch of attention over gathered tokens: q [rows, GQ, D] contiguous; idx int32 [rows, T] flat
    pool rows, or with base ([rows] int64) [rows / rows_per_set, T] positions shared by rows_per_set rows, each
    adding its base. Returns (logits fp32 [rows, GQ, T], the partials acc, m, l, n_splits)."""
    rows, GQ, D = q.shape
    T = idx.shape[-1]
    if tok_per_split is None:  # about two programs per SM
        sms = torch.cuda.get_device_properties(q.device).multi_processor_count if q.is_cuda else 8
        tok_per_split = max(block_t, triton.cdiv(triton.cdiv(T * rows, 2 * sms), block_t) * block_t)
    n_splits = max(1, triton.cdiv(T, tok_per_split))
    logits = torch.empty(rows, GQ, T, dtype=torch.float32, device=q.device)
    acc = torch.empty(rows, n_splits, GQ, D, dtype=torch.float32, device=q.device)
    m = torch.empty(rows, n_splits, GQ, dtype=torch.float32, device=q.device)
    lse = torch.empty_like(m)
    _gather_split_kernel[(rows, n_splits)](q, k_flat, v_flat, idx, idx if base is None else base, logits, acc, m,
                                           lse, T, tok_per_split, n_splits, scaling, rows_per_set, GQ=GQ,
                                           GQP=_pow2(GQ), D=D, BLOCK_T=block_t,
                                           DOT_F32=INTERPRET or q.dtype == torch.float32, SHARED=base is not None,
                                           num_warps=num_warps, num_stages=num_stages)
    return logits, acc, m, lse, n_splits


def gathered_attention(q_rows, k_flat, v_flat, idx, scaling: float, tok_per_split: int | None = None,
                       block_t: int = 64):
    """Attention of q_rows [B, R, GQ, D] over tokens idx [B, R, T] (flat pool rows, -1 = none) of
    k_flat / v_flat [N, D] -> (out [B, R, GQ, D], probs fp32 [B, R, GQ, T])."""
    B, R, GQ, D = q_rows.shape
    T = idx.shape[-1]
    rows = B * R
    q = q_rows.contiguous()
    idx = idx.reshape(rows, T).to(torch.int32).contiguous()
    logits, acc, m, lse, n_splits = gather_split(q.view(rows, GQ, D), k_flat, v_flat, idx, scaling, tok_per_split,
                                                 block_t)
    out = torch.empty(B, R, GQ, D, dtype=q_rows.dtype, device=q.device)
    _combine_kernel[(rows,)](acc, m, lse, out, idx, idx, n_splits, GQ=GQ, D=D, **_combine_meta(GQ, D, n_splits),
                             PDL=False, ROW_Q=False, num_warps=4)
    probs = torch.empty(rows, GQ, T, dtype=torch.float32, device=q.device)
    _probs_kernel[(rows, triton.cdiv(T, 256))](logits, m, lse, probs, T, n_splits, GQ=GQ, GQP=_pow2(GQ),
                                               S_P2=_pow2(n_splits, 1), BLOCK_T=256, num_warps=4)
    return out, probs.view(B, R, GQ, T)
