"""Block-sparse prefill attention in Triton: every head's pattern in one launch.

One program computes one query block of one query head (flash-attention forward, online
softmax, fp32 accumulation), or, GQA-packed (`pack_gqa`), one KV head's G query heads over BLOCK_M / G positions.
The KV head (GQA: query head // G) says which key blocks to visit:
- DENSE: key blocks 0 .. the diagonal, causal mask on the diagonal blocks only;
- WINDOW: token-exact sink + window: the sink blocks, then the blocks the window touches, with
  masks only on the blocks that straddle a boundary;
- BLOCKS: an explicit list of key blocks per query block (plus causality);
- SKIP: nothing (heads another kernel computes, e.g. dense heads sent to cuDNN).
Inputs q [B, Hq, L, D], k / v [B, Hkv, L, D] (any strides), bf16 / fp16 / fp32, head dim 64 or
128 (any power of two >= 16), any length L (rows and columns beyond L are masked). On Hopper and later, Q / K / V / O
move through TMA tensor descriptors (`tma`; H100, run 10: the dense kernel 531-585 TFLOP/s from 32K, was 454-461).
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

DENSE, WINDOW, BLOCKS, SKIP = 0, 1, 2, 3
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"  # CPU interpreter: its bf16 dot is wrong, upcast


@triton.jit
def online_softmax_update(s, v, m_i, m_safe, l_i, acc, DOT_F32: tl.constexpr):
    """One key block of the online softmax: s [M, N] base-2 logits, v [N, D]; m_i the old row max, m_safe the
    new one with -inf (nothing visible yet) replaced by 0. Returns (acc, l_i) rescaled and accumulated."""
    p = tl.exp2(s - m_safe[:, None])
    alpha = tl.exp2(m_i - m_safe)
    l_i = l_i * alpha + tl.sum(p, 1)
    if DOT_F32:
        acc = acc * alpha[:, None] + tl.dot(p, v.to(tl.float32))
    else:
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return acc, l_i


@triton.jit
def _block_logits(q, K_ptr, V_ptr, stride_kn, stride_vn, offs_d, start_n, n_ctx, b, kvh, BLOCK_N: tl.constexpr,
                  DOT_F32: tl.constexpr, TMA: tl.constexpr):
    """Key block [start_n, +BLOCK_N): (its key positions, base-2 logits of q against it, its values).
    TMA: K_ptr / V_ptr are [B, Hkv, L, D] tensor descriptors (rows past L read as zeros), else pointers to
    this (batch, KV head)'s first key."""
    offs_n = start_n + tl.arange(0, BLOCK_N)
    if TMA:
        k = K_ptr.load([b, kvh, start_n, 0]).reshape(BLOCK_N, offs_d.shape[0])
        v = V_ptr.load([b, kvh, start_n, 0]).reshape(BLOCK_N, offs_d.shape[0])
    else:
        k = tl.load(K_ptr + offs_n[:, None] * stride_kn + offs_d[None, :], mask=offs_n[:, None] < n_ctx, other=0.0)
        v = tl.load(V_ptr + offs_n[:, None] * stride_vn + offs_d[None, :], mask=offs_n[:, None] < n_ctx, other=0.0)
    if DOT_F32:
        k = k.to(tl.float32)
    return offs_n, tl.dot(q, tl.trans(k)), v  # q is pre-scaled by sm_scale * log2(e)


@triton.jit
def _visible(offs_m, offs_n, n_ctx, sink, window, WINDOWED: tl.constexpr):
    """[M, N] which keys each query row sees: causal and in the sequence; WINDOWED: also a sink or in the window."""
    keep = (offs_n[None, :] <= offs_m[:, None]) & (offs_n[None, :] < n_ctx)
    if WINDOWED:
        keep = keep & ((offs_n[None, :] < sink) | (offs_m[:, None] - offs_n[None, :] < window))
    return keep


@triton.jit
def _attend_blocks(acc, m_i, l_i, q, K_ptr, V_ptr, stride_kn, stride_vn, offs_m, offs_d, lo, hi, n_ctx,
                   sink, window, b, kvh, KIND: tl.constexpr, MASK: tl.constexpr, BLOCK_N: tl.constexpr,
                   DOT_F32: tl.constexpr, TMA: tl.constexpr):
    """Visit key blocks [lo, hi) (in tokens, multiples of BLOCK_N). MASK applies causality and the window."""
    for start_n in range(lo, hi, BLOCK_N):
        offs_n, s, v = _block_logits(q, K_ptr, V_ptr, stride_kn, stride_vn, offs_d, start_n, n_ctx, b, kvh, BLOCK_N,
                                     DOT_F32, TMA)
        if MASK:
            s = tl.where(_visible(offs_m, offs_n, n_ctx, sink, window, KIND == 1), s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with nothing visible yet
        else:
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = m_new
        acc, l_i = online_softmax_update(s, v, m_i, m_safe, l_i, acc, DOT_F32)
        m_i = m_new
    return acc, m_i, l_i


@triton.jit
def _attend_window(acc, m_i, l_i, q, K_ptr, V_ptr, stride_kn, stride_vn, offs_m, offs_d, n_sink_blk, start, hi,
                   full_lo, full_hi, n_ctx, sink, window, b, kvh, BLOCK_N: tl.constexpr, DOT_F32: tl.constexpr,
                   TMA: tl.constexpr):
    """A WINDOW head's blocks in one loop: the n_sink_blk sink blocks, then key blocks [start, hi), masked only
    outside [full_lo, full_hi) (a branch inside the loop). One software pipeline for the whole row, instead of
    one per range, each filling and draining its own loads (short windows visit ~10-20 blocks)."""
    n_it = n_sink_blk + tl.cdiv(hi - start, BLOCK_N)
    for i in range(0, n_it):
        start_n = tl.where(i < n_sink_blk, i * BLOCK_N, start + (i - n_sink_blk) * BLOCK_N)
        offs_n, s, v = _block_logits(q, K_ptr, V_ptr, stride_kn, stride_vn, offs_d, start_n, n_ctx, b, kvh, BLOCK_N,
                                     DOT_F32, TMA)
        if (start_n < full_lo) | (start_n >= full_hi):
            s = tl.where(_visible(offs_m, offs_n, n_ctx, sink, window, True), s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with nothing visible yet
        acc, l_i = online_softmax_update(s, v, m_i, m_safe, l_i, acc, DOT_F32)
        m_i = m_new
    return acc, m_i, l_i


@triton.jit
def window_bounds(q_lo, q_hi, sink, window, BLOCK_N: tl.constexpr):
    """A WINDOW head's key blocks for the queries [q_lo, q_hi), in tokens (multiples of BLOCK_N):
    (sink_hi, start, full_lo, full_hi): the sink blocks are [0, sink_hi) (none once the window reaches them), the
    window's from `start` to the diagonal, and those in [full_lo, full_hi) need no mask (inside every row's
    window and strictly below the diagonal)."""
    win_lo = tl.maximum(q_lo - window + 1, 0)  # the earliest key any row of this block sees in its window
    sink_hi = tl.minimum(((sink + BLOCK_N - 1) // BLOCK_N) * BLOCK_N, (win_lo // BLOCK_N) * BLOCK_N)
    start = tl.maximum((win_lo // BLOCK_N) * BLOCK_N, sink_hi)
    full_lo = tl.maximum(((q_hi - window + BLOCK_N - 1) // BLOCK_N) * BLOCK_N, start)
    full_hi = tl.maximum((q_lo // BLOCK_N) * BLOCK_N, full_lo)
    return sink_hi, start, full_lo, full_hi


@triton.jit
def _prefill_kernel(Q, K, V, O, KIND_PTR, SINK_PTR, WIN_PTR, BLK_IDX, BLK_CNT,
                    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
                    stride_ob, stride_oh, stride_om, stride_bh, stride_bq, n_ctx, sm_scale,
                    G: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    MAX_BLOCKS: tl.constexpr, DOT_F32: tl.constexpr, WIN_ONE_LOOP: tl.constexpr,
                    TMA: tl.constexpr, KINDS: tl.constexpr, PACK: tl.constexpr):
    # PACK == 1: a program is BLOCK_M positions of one query head. PACK == G (GQA packed): a program is one KV head's
    # G query heads x BLOCK_M // G positions, row r = head r // (BLOCK_M // G), so the group shares every K / V tile
    BLOCK_P: tl.constexpr = BLOCK_M // PACK  # query positions per program
    start_m = tl.num_programs(0) - 1 - tl.program_id(0)  # longest (last) query blocks first: a shorter tail
    b = tl.program_id(2)
    if PACK > 1:
        kvh = tl.program_id(1)
        h0 = kvh * G  # the program's first query head
    else:
        h0 = tl.program_id(1)
        kvh = h0 // G
    kind = tl.load(KIND_PTR + kvh)
    if kind == 3:  # SKIP
        return
    sink = tl.load(SINK_PTR + kvh)
    window = tl.load(WIN_PTR + kvh)
    rows = tl.arange(0, BLOCK_M)
    if PACK > 1:
        offs_m = start_m * BLOCK_P + rows % BLOCK_P  # each row's query position (masks use positions only)
        row_head = h0 + rows // BLOCK_P
    else:
        offs_m = start_m * BLOCK_M + rows
        row_head = h0
    offs_d = tl.arange(0, HEAD_DIM)
    if TMA:  # Q, K, V, O are tensor descriptors (Hopper's TMA unit: bulk copies, rows past L as zeros)
        q = Q.load([b, h0, start_m * BLOCK_P, 0]).reshape(BLOCK_M, HEAD_DIM)
        K_ptr = K
        V_ptr = V
    else:
        q_rows = Q + b * stride_qb + row_head * stride_qh + offs_m * stride_qm
        q = tl.load(q_rows[:, None] + offs_d[None, :], mask=offs_m[:, None] < n_ctx, other=0.0)
        K_ptr = K + b * stride_kb + kvh * stride_kh
        V_ptr = V + b * stride_vb + kvh * stride_vh
    qk_scale = sm_scale * 1.44269504  # exp2
    q = (q.to(tl.float32) * qk_scale).to(tl.float32 if DOT_F32 else q.dtype)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    q_lo = start_m * BLOCK_P
    q_hi = tl.minimum(q_lo + BLOCK_P, n_ctx)  # exclusive
    # KINDS (constexpr bit mask of the kinds in this launch) drops the loops of absent kinds: Triton gives each
    # pipelined loop its own shared memory, and with TMA buffers every kind's loops together exceed the H100's 227 KB
    if (KINDS & 1) != 0 and kind == 0:  # DENSE: full blocks below the diagonal, then the diagonal blocks masked
        full_hi = (q_lo // BLOCK_N) * BLOCK_N
        acc, m_i, l_i = _attend_blocks(acc, m_i, l_i, q, K_ptr, V_ptr, stride_kn, stride_vn, offs_m, offs_d, 0,
                                       full_hi, n_ctx, sink, window, b, kvh, 0, False, BLOCK_N, DOT_F32, TMA)
        acc, m_i, l_i = _attend_blocks(acc, m_i, l_i, q, K_ptr, V_ptr, stride_kn, stride_vn, offs_m, offs_d,
                                       full_hi, q_hi, n_ctx, sink, window, b, kvh, 0, True, BLOCK_N, DOT_F32, TMA)
    if (KINDS & 2) != 0 and kind == 1:  # WINDOW: sink blocks, then the window's blocks (masks only at boundaries)
        sink_hi, start, full_lo, full_hi = window_bounds(q_lo, q_hi, sink, window, BLOCK_N)
        # One kernel variant per choice: Triton gives each pipelined loop its own shared memory, and a kernel
        # holding both forms' loops needs 416 KB at 128 x 128 tiles (H100: 227 KB).
        if WIN_ONE_LOOP:  # short windows (run 7: StreamingLLM's 1020 tokens 15 % faster)
            acc, m_i, l_i = _attend_window(acc, m_i, l_i, q, K_ptr, V_ptr, stride_kn, stride_vn, offs_m, offs_d,
                                           sink_hi // BLOCK_N, start, q_hi, full_lo, full_hi, n_ctx, sink, window,
                                           b, kvh, BLOCK_N, DOT_F32, TMA)
        else:  # long windows: the unmasked blocks in their own loop (run 7: 8192 tokens 0-4 % faster)
            acc, m_i, l_i = _attend_blocks(acc, m_i, l_i, q, K_ptr, V_ptr, stride_kn, stride_vn, offs_m, offs_d, 0,
                                           sink_hi, n_ctx, sink, window, b, kvh, 1, True, BLOCK_N, DOT_F32, TMA)
            acc, m_i, l_i = _attend_blocks(acc, m_i, l_i, q, K_ptr, V_ptr, stride_kn, stride_vn, offs_m, offs_d,
                                           start, full_lo, n_ctx, sink, window, b, kvh, 1, True, BLOCK_N, DOT_F32, TMA)
            acc, m_i, l_i = _attend_blocks(acc, m_i, l_i, q, K_ptr, V_ptr, stride_kn, stride_vn, offs_m, offs_d,
                                           full_lo, full_hi, n_ctx, sink, window, b, kvh, 1, False, BLOCK_N,
                                           DOT_F32, TMA)
            acc, m_i, l_i = _attend_blocks(acc, m_i, l_i, q, K_ptr, V_ptr, stride_kn, stride_vn, offs_m, offs_d,
                                           full_hi, q_hi, n_ctx, sink, window, b, kvh, 1, True, BLOCK_N, DOT_F32, TMA)
    if (KINDS & 4) != 0 and kind == 2:  # BLOCKS: the plan's key blocks for this query block (the plan's sizes)
        cnt = tl.load(BLK_CNT + kvh * stride_bh + start_m)
        for i in range(0, MAX_BLOCKS):
            if i < cnt:
                kb = tl.load(BLK_IDX + kvh * stride_bh * MAX_BLOCKS + start_m * stride_bq + i)
                acc, m_i, l_i = _attend_blocks(acc, m_i, l_i, q, K_ptr, V_ptr, stride_kn, stride_vn, offs_m, offs_d,
                                               kb * BLOCK_N, kb * BLOCK_N + BLOCK_N, n_ctx, sink, window, b, kvh,
                                               0, True, BLOCK_N, DOT_F32, TMA)
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    out = acc / l_safe[:, None]
    if TMA:
        # rows past L are dropped by the descriptor
        O.store([b, h0, start_m * BLOCK_P, 0], out.to(O.dtype).reshape(1, PACK, BLOCK_P, HEAD_DIM))
    else:
        o_rows = O + b * stride_ob + row_head * stride_oh + offs_m * stride_om
        tl.store(o_rows[:, None] + offs_d[None, :], out.to(O.dtype.element_ty), mask=offs_m[:, None] < n_ctx)


def plan_tensors(plan, device, skip_dense: bool = False, n: int | None = None):
    """Per KV head (kind, sink, window) int32 tensors, the block list tensors (or 1-element dummies), the
    longest WINDOW head's window (0 if none) and a bit mask of the kinds present (bit DENSE / WINDOW / BLOCKS).
    n: the chunk's length; windows of >= n tokens then run as DENSE (no masks off the diagonal).
    Plans without block lists (hashable by value) are built once per (plan, device, skip_dense, n): building copies
    host lists to the device, a copy that waits for the GPU, once per layer of every prefill otherwise."""
    if plan.blocks is None:
        return _plan_tensors_cached(plan, torch.device(device), skip_dense, n)
    return _build_plan_tensors(plan, device, skip_dense, n)


@functools.lru_cache(maxsize=256)
def _plan_tensors_cached(plan, device, skip_dense, n):
    return _build_plan_tensors(plan, device, skip_dense, n)


def head_kinds(plan, skip_dense, n) -> list[int]:
    """Each KV head's kind (DENSE / WINDOW / BLOCKS / SKIP) in a launch over a chunk of n tokens."""
    dense = set(plan.dense_heads(n if n is not None else 1 << 62))

    def kind(i):
        if plan.block_heads and plan.block_heads[i]:
            return BLOCKS
        if i in dense:
            return SKIP if skip_dense else DENSE
        return WINDOW
    return [kind(i) for i in range(len(plan.window))]


def _build_plan_tensors(plan, device, skip_dense, n):
    h = len(plan.window)
    kinds = head_kinds(plan, skip_dense, n)
    sinks = [max(s, 0) for s in plan.sink]
    wins = [max(w, 1) for w in plan.window]
    as_t = lambda x: torch.tensor(x, dtype=torch.int32, device=device)  # noqa: E731
    if plan.blocks is not None:
        idx = plan.blocks.kv_idx.to(device=device, dtype=torch.int32).contiguous()  # [Hkv, NQB, MAXB]
        cnt = (idx >= 0).sum(-1).to(torch.int32).contiguous()
        # compact each row's valid blocks to the front
        order = torch.sort(torch.where(idx >= 0, idx, torch.iinfo(torch.int32).max), dim=-1).values
        idx = torch.where(order == torch.iinfo(torch.int32).max, torch.full_like(order, -1), order).contiguous()
    else:
        idx = torch.full((h, 1, 1), -1, dtype=torch.int32, device=device)
        cnt = torch.zeros((h, 1), dtype=torch.int32, device=device)
    longest = max((w for kd, w in zip(kinds, wins) if kd == WINDOW), default=0)
    present = sum(1 << kd for kd in set(kinds) if kd != SKIP)
    return as_t(kinds), as_t(sinks), as_t(wins), idx, cnt, longest, present


@functools.lru_cache(maxsize=256)
def _window_heads(plan, device, skip_dense, n):
    """(int32 tensor of the launch's WINDOW KV heads, their largest sink): the warp-specialised kernel's inputs."""
    heads = [i for i, kd in enumerate(head_kinds(plan, skip_dense, n)) if kd == WINDOW]
    return (torch.tensor(heads, dtype=torch.int32, device=device),
            max((max(plan.sink[i], 0) for i in heads), default=0))


def ws_unsupported(q, k, v, out, plan, present: int, skip_dense: bool, block_n: int | None,
                   tma: bool | None) -> str | None:
    """Why `gluon_prefill.window_prefill_ws` cannot run this launch (None: it can): it computes sink + window heads
    only (others skipped), through TMA, on Hopper, outside the CPU interpreter."""
    if INTERPRET:
        return "Gluon kernels do not run under TRITON_INTERPRET"
    if tma is False:
        return "tma=False (the kernel moves every operand through TMA)"
    if plan.blocks is not None or present != 1 << WINDOW:
        return "the launch holds dense or block-list heads (allowed: sink + window heads, the others skipped)"
    from sparsebench.kernels.gluon_prefill import unsupported

    return unsupported(q, k, v, out, _window_heads(plan, q.device, skip_dense, q.shape[2])[1], block_n or 64)


def tma_ok(*ts) -> bool:
    """Tensors a TMA descriptor can address: on a Hopper-or-later GPU, last dim contiguous, 16-byte aligned base
    and strides."""
    t0 = ts[0]
    if not INTERPRET and (t0.device.type != "cuda" or torch.cuda.get_device_capability(t0.device)[0] < 9):
        return False  # (the CPU interpreter emulates descriptors: the TMA path is tested there too)
    for t in ts:
        es = t.element_size()
        if t.stride(-1) != 1 or t.data_ptr() % 16 or any((st * es) % 16 for st in t.stride()[:-1]):
            return False
    return True


def _descriptor(t, rows: int, heads: int = 1):
    from triton.tools.tensor_descriptor import TensorDescriptor

    return TensorDescriptor.from_tensor(t, [1, heads, rows, t.shape[-1]])


def packable(G: int, block_m: int, present: int) -> bool:
    """Whether a launch can pack a GQA group's G query heads into one program: no block-list heads (their lists
    are per query block of the plan's size), G a power of two > 1 dividing BLOCK_M into >= 16 positions."""
    return not present & (1 << BLOCKS) and G > 1 and G & (G - 1) == 0 and block_m % G == 0 and block_m // G >= 16


def block_sparse_prefill(q, k, v, plan, scaling: float, out=None, skip_dense: bool = False,
                         block_m: int | None = None, block_n: int | None = None, num_warps: int | None = None,
                         num_stages: int | None = None, window_one_loop_max: int = 4096, tma: bool | None = None,
                         pack_gqa: bool | None = None, ws: bool | None = None):
    """q [B, Hq, L, D], k / v [B, Hkv, L, D] -> out [B, Hq, L, D] under `plan` (a PrefillPlan).
    window_one_loop_max: when every windowed head's window is at most this many tokens, each visits its sink and
    window blocks in one loop; otherwise one loop per masked / unmasked range (the run 2 kernel).
    tma: move Q / K / V / O through TMA tensor descriptors where `tma_ok` (else plain loads); None: on a GPU
    whenever it can (H100, run 10: dense 8-14 % faster at 32K-128K, StreamingLLM 9-14 %).
    pack_gqa: one program per KV head's G query heads x BLOCK_M // G positions (they share each K / V tile and a
    short window wastes fewer masked keys per row), where `packable`; refused with block lists. None: on for
    launches of short windows only.
    ws: run the launch through the warp-specialised Gluon kernel (`gluon_prefill`: sink + window heads on Hopper;
    block_n and num_stages then set its key block and K / V ring depth, default 64 and 3). None: on for launches of
    short windows wherever `ws_unsupported` finds no reason against (H100, run 14: StreamingLLM takes 16-24 % less time
    than this kernel's best launch); True where it cannot raises ValueError."""
    B, Hq, L, D = q.shape
    Hkv = k.shape[1]
    if out is None:
        out = torch.empty_like(q)
    kinds, sinks, wins, idx, cnt, longest_window, present = plan_tensors(plan, q.device, skip_dense, L)
    short_windows = present == 1 << WINDOW and longest_window <= window_one_loop_max
    if ws or (ws is None and short_windows):  # asked for, or the default for short windows where it can run
        why = ws_unsupported(q, k, v, out, plan, present, skip_dense, block_n, tma)
        if ws and why:
            raise ValueError(f"ws=True (the warp-specialised Gluon prefill): {why}")
        ws = why is None
    if ws:
        from sparsebench.kernels.gluon_prefill import window_prefill_ws

        heads, sink_max = _window_heads(plan, q.device, skip_dense, L)
        return window_prefill_ws(q, k, v, heads, sinks, wins, scaling, sink_max, out=out, block_n=block_n or 64,
                                 stages=num_stages or 3)
    if plan.blocks is not None:
        block_m, block_n = plan.blocks.block_q, plan.blocks.block_k
    # a launch of short windows only (StreamingLLM; streaming heads with their dense heads on cuDNN): 64 x 64 tiles,
    # 4 warps, GQA packed (H100, run 11 StreamingLLM: per block 1.22-1.27 of cuDNN's vs 1.32-1.60 at 128 x 64 per head)
    if block_m is None:
        block_m = 64 if (INTERPRET or short_windows or D > 64 and q.element_size() > 2) else 128
    if block_n is None:
        block_n = 64 if (INTERPRET or D > 128) else (64 if D == 128 else 128)
    if num_warps is None:
        num_warps = 8 if block_m >= 128 else 4
    if num_stages is None:
        num_stages = 1 if INTERPRET else 3
    G = Hq // Hkv
    if pack_gqa is None:
        pack_gqa = short_windows and packable(G, block_m, present)
    if pack_gqa and not packable(G, block_m, present):
        raise ValueError(f"pack_gqa=True needs no block-list heads and G (here {G}) a power of two > 1 with "
                         f"BLOCK_M (here {block_m}) / G >= 16")
    pack = G if pack_gqa else 1
    grid = (triton.cdiv(L, block_m // pack), Hq // pack, B)
    use_tma = (not INTERPRET if tma is None else tma) and out.dtype == q.dtype and tma_ok(q, k, v, out)
    srcs = (_descriptor(q, block_m // pack, pack), _descriptor(k, block_n), _descriptor(v, block_n),
            _descriptor(out, block_m // pack, pack)) if use_tma else (q, k, v, out)
    _prefill_kernel[grid](
        *srcs, kinds, sinks, wins, idx, cnt,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), out.stride(0), out.stride(1), out.stride(2),
        idx.shape[1], idx.shape[2], L, scaling,
        G=G, HEAD_DIM=D, BLOCK_M=block_m, BLOCK_N=block_n, MAX_BLOCKS=idx.shape[2],
        DOT_F32=INTERPRET or q.dtype == torch.float32, num_warps=num_warps, num_stages=num_stages,
        WIN_ONE_LOOP=longest_window <= window_one_loop_max, TMA=use_tma,
        KINDS=present, PACK=pack,
    )
    return out
