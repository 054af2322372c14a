"""Short-window prefill (token-exact sink + window heads) on Hopper, warp-specialised, in Gluon.

The form FlashAttention-3 uses, written in Triton's lower-level dialect: one persistent CTA per SM walks the tiles;
a producer warp feeds every operand through TMA into a ring of shared-memory stages (mbarriers say "ready" /
"empty"), and two consumer warp groups of 4 warps each compute one half of a tile. A tile is one KV head's G query
heads over P = 128 / G positions: consumer w holds query heads w * G / 2 .. + G / 2 (64 rows), so both consume the
same K / V stages. Each consumer overlaps the tile's next QK^T (issued asynchronously) and the current PV with its
softmax (FA3's in-group pipelining), and the scheduler overlaps one group's softmax with the other's products.

Keys per tile: the sink [0, sink) as one SN-key step (SN = 16 for StreamingLLM's 4 sink tokens, where the Triton
kernel spends a 64-key block), then the window from its first key (max(q_lo - window + 1, sink), not rounded down
to a block) in BN-key blocks, masks only on the blocks that straddle the window's start or the diagonal.

Inputs as `triton_prefill.block_sparse_prefill`: q [B, Hq, L, D], k / v [B, Hkv, L, D] (any strides TMA accepts),
bf16 / fp16, D 64 or 128, G = Hq / Hkv in {2, 4, 8}; the KV heads it computes are listed (the others are left to
another kernel), each a sink + window head with sink <= 128. `block_sparse_prefill` sends launches of short windows
here on Hopper (`ws`). No CPU interpreter runs Gluon: this kernel is tested on the GPU only
(`tests/test_gpu_kernels.py`, against the reference); CI checks its dispatch rules on the CPU.
"""

from __future__ import annotations

import functools

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma, warpgroup_mma,
                                                              warpgroup_mma_wait)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

ROWS = gl.constexpr(64)  # query rows per consumer warp group (one wgmma M)


@gluon.jit
def _tile_of(t, n_qb, n_heads, HEAD_PTR):
    """Tile t -> (batch, KV head, query block): consecutive tiles are consecutive query blocks of one head, so the
    SMs working at once share their windows' K / V in L2. HEAD_PTR lists the n_heads KV heads computed here."""
    r = t // n_qb
    return r // n_heads, gl.load(HEAD_PTR + r % n_heads), t % n_qb


@gluon.jit
def _window_span(q_lo, n_ctx, sink, window, P: gl.constexpr, BN: gl.constexpr):
    """The window part of the tile's keys: BN-key blocks from ws (the sink part holds the keys below `sink`)."""
    ws = gl.maximum(q_lo - window + 1, sink)
    q_hi = gl.minimum(q_lo + P, n_ctx)
    return ws, gl.maximum((q_hi - ws + BN - 1) // BN, 0)


@gluon.jit
def _producer(q_desc, k_desc, v_desc, ks_desc, vs_desc, bars, bufs, HEAD_PTR, SINK_PTR, WIN_PTR, n_ctx, n_qb,
              n_heads, n_tiles, G: gl.constexpr, P: gl.constexpr, BN: gl.constexpr, STAGES: gl.constexpr,
              HAS_SINK: gl.constexpr):
    """One warp: each tile's two Q halves, its sink keys / values, then its window's K / V blocks into the ring."""
    q_ready, q_empty, s_ready, s_empty, k_ready, k_empty, v_ready, v_empty = bars
    q_bufs, ks_buf, vs_buf, k_bufs, v_bufs = bufs
    it = 0  # K / V blocks issued so far (ring position and phase)
    tc = 0  # tiles so far (phase of the per-tile buffers)
    for t in range(gl.program_id(0), n_tiles, gl.num_programs(0)):
        b, kvh, qb = _tile_of(t, n_qb, n_heads, HEAD_PTR)
        q_lo = qb * P
        sink = gl.load(SINK_PTR + kvh)
        ws, nb = _window_span(q_lo, n_ctx, sink, gl.load(WIN_PTR + kvh), P, BN)
        ph = tc & 1
        for w in gl.static_range(2):  # mbarriers start with phase 1 complete: the first waits pass
            mbarrier.wait(q_empty.index(w), ph ^ 1)
            mbarrier.expect(q_ready.index(w), q_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(q_desc, [b, kvh * G + w * (G // 2), q_lo, 0], q_ready.index(w),
                                            q_bufs.index(w))
        if HAS_SINK:
            mbarrier.wait(s_empty.index(0), ph ^ 1)
            mbarrier.expect(s_ready.index(0), 2 * ks_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(ks_desc, [b, kvh, 0, 0], s_ready.index(0), ks_buf)
            tma.async_copy_global_to_shared(vs_desc, [b, kvh, 0, 0], s_ready.index(0), vs_buf)
        for j in range(nb):
            s = it % STAGES
            kph = (it // STAGES) & 1
            mbarrier.wait(k_empty.index(s), kph ^ 1)
            mbarrier.expect(k_ready.index(s), k_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(k_desc, [b, kvh, ws + j * BN, 0], k_ready.index(s), k_bufs.index(s))
            mbarrier.wait(v_empty.index(s), kph ^ 1)
            mbarrier.expect(v_ready.index(s), v_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(v_desc, [b, kvh, ws + j * BN, 0], v_ready.index(s), v_bufs.index(s))
            it += 1
        tc += 1


@gluon.jit
def _softmax_step(sc, m_i, l_i, blk_lo, pos, cols, window, q_lo, qk_scale, P: gl.constexpr, BN: gl.constexpr):
    """One window block of the online softmax. sc [ROWS, BN] raw logits of keys blk_lo + cols, pos [ROWS] each row's
    query position; m_i is kept in scaled base-2 units. Masks only when the block straddles a row's window start
    or the diagonal. Returns (p, alpha, m, l)."""
    if (blk_lo < q_lo + P - window) | (blk_lo + BN - 1 > q_lo):
        keys = blk_lo + cols
        keep = (keys[None, :] <= pos[:, None]) & (keys[None, :] > pos[:, None] - window)
        sc = gl.where(keep, sc, float("-inf"))
    m_new = gl.maximum(m_i, gl.max(sc, axis=1) * qk_scale)
    m_safe = gl.where(m_new == float("-inf"), 0.0, m_new)  # a row that has seen no key yet
    p = gl.exp2(sc * qk_scale - m_safe[:, None])
    alpha = gl.exp2(m_i - m_safe)
    return p, alpha, m_new, l_i * alpha + gl.sum(p, axis=1)


@gluon.jit
def _consumer(w: gl.constexpr, o_desc, bars, bufs, HEAD_PTR, SINK_PTR, WIN_PTR, n_ctx, n_qb, n_heads, n_tiles,
              qk_scale, G: gl.constexpr, P: gl.constexpr, BN: gl.constexpr, D: gl.constexpr, SN: gl.constexpr,
              STAGES: gl.constexpr, HAS_SINK: gl.constexpr):
    """Warp group w: rows = query heads w * G / 2 .. + G / 2 (head-major) x the tile's P positions."""
    q_ready, q_empty, s_ready, s_empty, k_ready, k_empty, v_ready, v_empty = bars
    q_bufs, ks_buf, vs_buf, k_bufs, v_bufs, o_bufs = bufs
    dtype: gl.constexpr = o_desc.dtype
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BN, 16])
    ss_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                        instr_shape=[16, SN, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, D, 16])
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    row_l: gl.constexpr = gl.SliceLayout(1, s_layout)
    orow_l: gl.constexpr = gl.SliceLayout(1, o_layout)
    q_smem = q_bufs.index(w).reshape([ROWS, D])
    o_smem = o_bufs.index(w)
    rows = gl.arange(0, ROWS, layout=row_l)
    cols = gl.arange(0, BN, layout=gl.SliceLayout(0, s_layout))
    zero_s = gl.zeros([ROWS, BN], gl.float32, s_layout)
    it = 0
    tc = 0
    for t in range(gl.program_id(0), n_tiles, gl.num_programs(0)):
        b, kvh, qb = _tile_of(t, n_qb, n_heads, HEAD_PTR)
        q_lo = qb * P
        sink = gl.load(SINK_PTR + kvh)
        window = gl.load(WIN_PTR + kvh)
        ws, nb = _window_span(q_lo, n_ctx, sink, window, P, BN)
        pos = q_lo + rows % P
        ph = tc & 1
        mbarrier.wait(q_ready.index(w), ph)
        if HAS_SINK:  # keys [0, sink) in one SN-key step: the online softmax's first state
            mbarrier.wait(s_ready.index(0), ph)
            ss = warpgroup_mma(q_smem, ks_buf.reshape([SN, D]).permute((1, 0)),
                               gl.zeros([ROWS, SN], gl.float32, ss_layout), use_acc=False)
            skeys = gl.arange(0, SN, layout=gl.SliceLayout(0, ss_layout))
            spos = q_lo + gl.arange(0, ROWS, layout=gl.SliceLayout(1, ss_layout)) % P
            ss = gl.where((skeys[None, :] < sink) & (skeys[None, :] <= spos[:, None]), ss, float("-inf"))
            m_s = gl.max(ss, axis=1) * qk_scale
            m_s_safe = gl.where(m_s == float("-inf"), 0.0, m_s)
            p_s = gl.exp2(ss * qk_scale - m_s_safe[:, None])
            acc = warpgroup_mma(gl.convert_layout(p_s.to(dtype), p_layout), vs_buf.reshape([SN, D]),
                                gl.zeros([ROWS, D], gl.float32, o_layout), use_acc=False)
            mbarrier.arrive(s_empty.index(0), count=1)
            m_i = gl.convert_layout(m_s, row_l)
            l_i = gl.convert_layout(gl.sum(p_s, axis=1), row_l)
        else:
            m_i = gl.full([ROWS], float("-inf"), gl.float32, row_l)
            l_i = gl.zeros([ROWS], gl.float32, row_l)
            acc = gl.zeros([ROWS, D], gl.float32, o_layout)
        if nb > 0:
            s = it % STAGES
            mbarrier.wait(k_ready.index(s), (it // STAGES) & 1)
            sc = warpgroup_mma(q_smem, k_bufs.index(s).reshape([BN, D]).permute((1, 0)), zero_s, use_acc=False)
            mbarrier.arrive(k_empty.index(s), count=1)
            p, alpha, m_i, l_i = _softmax_step(sc, m_i, l_i, ws, pos, cols, window, q_lo, qk_scale, P, BN)
            acc = acc * gl.convert_layout(alpha, orow_l)[:, None]
            for j in range(1, nb):
                sn = (it + 1) % STAGES
                mbarrier.wait(k_ready.index(sn), ((it + 1) // STAGES) & 1)
                s_tok = warpgroup_mma(q_smem, k_bufs.index(sn).reshape([BN, D]).permute((1, 0)), zero_s,
                                      use_acc=False, is_async=True)
                s = it % STAGES
                mbarrier.wait(v_ready.index(s), (it // STAGES) & 1)
                acc_tok = warpgroup_mma(gl.convert_layout(p.to(dtype), p_layout), v_bufs.index(s).reshape([BN, D]),
                                        acc, is_async=True)
                sc = warpgroup_mma_wait(1, deps=(s_tok, ))  # this block's QK^T done, the previous PV may run on
                mbarrier.arrive(k_empty.index(sn), count=1)
                p, alpha, m_i, l_i = _softmax_step(sc, m_i, l_i, ws + j * BN, pos, cols, window, q_lo, qk_scale, P,
                                                   BN)
                acc = warpgroup_mma_wait(0, deps=(acc_tok, ))
                mbarrier.arrive(v_empty.index(s), count=1)
                acc = acc * gl.convert_layout(alpha, orow_l)[:, None]
                it += 1
            mbarrier.arrive(q_empty.index(w), count=1)  # every QK^T of the tile is done: Q's buffer is free
            s = it % STAGES
            mbarrier.wait(v_ready.index(s), (it // STAGES) & 1)
            acc = warpgroup_mma(gl.convert_layout(p.to(dtype), p_layout), v_bufs.index(s).reshape([BN, D]), acc)
            mbarrier.arrive(v_empty.index(s), count=1)
            it += 1
        else:
            mbarrier.arrive(q_empty.index(w), count=1)
        l_safe = gl.where(l_i == 0.0, 1.0, l_i)
        out = acc / gl.convert_layout(l_safe, orow_l)[:, None]
        tma.store_wait(0)  # the previous tile's output has left o_smem
        o_smem.reshape([ROWS, D]).store(out.to(dtype))
        fence_async_shared()
        tma.async_copy_shared_to_global(o_desc, [b, kvh * G + w * (G // 2), q_lo, 0], o_smem)
        tc += 1
    tma.store_wait(0)


@gluon.jit
def _window_ws_kernel(q_desc, k_desc, v_desc, ks_desc, vs_desc, o_desc, HEAD_PTR, SINK_PTR, WIN_PTR, n_ctx, n_qb,
                      n_heads, n_tiles, qk_scale, G: gl.constexpr, P: gl.constexpr, BN: gl.constexpr, D: gl.constexpr,
                      SN: gl.constexpr, STAGES: gl.constexpr, HAS_SINK: gl.constexpr, CONSUMER_REGS: gl.constexpr):
    dtype: gl.constexpr = q_desc.dtype
    q_bufs = gl.allocate_shared_memory(dtype, [2] + q_desc.block_type.shape, q_desc.layout)
    o_bufs = gl.allocate_shared_memory(dtype, [2] + o_desc.block_type.shape, o_desc.layout)
    ks_buf = gl.allocate_shared_memory(dtype, ks_desc.block_type.shape, ks_desc.layout)
    vs_buf = gl.allocate_shared_memory(dtype, vs_desc.block_type.shape, vs_desc.layout)
    k_bufs = gl.allocate_shared_memory(dtype, [STAGES] + k_desc.block_type.shape, k_desc.layout)
    v_bufs = gl.allocate_shared_memory(dtype, [STAGES] + v_desc.block_type.shape, v_desc.layout)
    q_ready = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    q_empty = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    s_ready = gl.allocate_shared_memory(gl.int64, [1, 1], mbarrier.MBarrierLayout())
    s_empty = gl.allocate_shared_memory(gl.int64, [1, 1], mbarrier.MBarrierLayout())
    k_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    k_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(2):
        mbarrier.init(q_ready.index(i), count=1)
        mbarrier.init(q_empty.index(i), count=1)
    mbarrier.init(s_ready.index(0), count=1)
    mbarrier.init(s_empty.index(0), count=2)  # both consumer groups release the sink
    for i in gl.static_range(STAGES):
        mbarrier.init(k_ready.index(i), count=1)
        mbarrier.init(k_empty.index(i), count=2)
        mbarrier.init(v_ready.index(i), count=1)
        mbarrier.init(v_empty.index(i), count=2)
    bars = (q_ready, q_empty, s_ready, s_empty, k_ready, k_empty, v_ready, v_empty)
    cbufs = (q_bufs, ks_buf, vs_buf, k_bufs, v_bufs, o_bufs)
    pbufs = (q_bufs, ks_buf, vs_buf, k_bufs, v_bufs)
    gl.warp_specialize([
        (_consumer, (0, o_desc, bars, cbufs, HEAD_PTR, SINK_PTR, WIN_PTR, n_ctx, n_qb, n_heads, n_tiles, qk_scale,
                     G, P, BN, D, SN, STAGES, HAS_SINK)),
        (_consumer, (1, o_desc, bars, cbufs, HEAD_PTR, SINK_PTR, WIN_PTR, n_ctx, n_qb, n_heads, n_tiles, qk_scale,
                     G, P, BN, D, SN, STAGES, HAS_SINK)),
        (_producer, (q_desc, k_desc, v_desc, ks_desc, vs_desc, bars, pbufs, HEAD_PTR, SINK_PTR, WIN_PTR, n_ctx, n_qb,
                     n_heads, n_tiles, G, P, BN, STAGES, HAS_SINK)),
    ], [4, 1], [CONSUMER_REGS, 24])


SMEM_LIMIT = 232448  # bytes of shared memory a CTA may use on the H100 (Triton's "hardware limit")


def smem_bytes(D: int, block_n: int, stages: int, sn: int, elem: int = 2) -> int:
    """Shared memory of one CTA: Q and O for both groups, the sink's K / V, the K / V ring, ~1 KB of mbarriers and
    alignment (sm_90 compile at D 128, BN 64, SN 128, 4 stages: 262720 = 262144 + 576)."""
    return (4 * ROWS.value * D + 2 * sn * D + 2 * stages * block_n * D) * elem + 1024


def sink_step(sink_max: int) -> int:
    """SN: the sink step's keys, a power of two >= 16 (wgmma's K) covering every sink."""
    return max(16, triton.next_power_of_2(max(sink_max, 1)))


def fit_stages(D: int, block_n: int, stages: int, sn: int, elem: int = 2) -> int:
    """The K / V ring depth: `stages`, lowered until the CTA's shared memory fits; ValueError below 2."""
    while stages >= 2 and smem_bytes(D, block_n, stages, sn, elem) > SMEM_LIMIT:
        stages -= 1
    if stages < 2:
        raise ValueError(f"window_prefill_ws: block_n={block_n} with D={D} and a {sn}-key sink step does not fit "
                         f"two K / V stages in shared memory ({SMEM_LIMIT} bytes)")
    return stages


def unsupported(q, k, v, out, sink_max: int, block_n: int) -> str | None:
    """Why this kernel cannot run the launch (None: it can): 16-bit, G = Hq / Hkv in {2, 4, 8}, D 64 / 128, sinks
    <= 128 tokens, BN 64 / 128, tensors TMA can address, a Hopper GPU (sm_90)."""
    from sparsebench.kernels.triton_prefill import tma_ok

    G = q.shape[1] // k.shape[1]
    if q.dtype not in (torch.bfloat16, torch.float16):
        return f"dtype {q.dtype}: allowed bfloat16, float16"
    if G not in (2, 4, 8) or q.shape[1] != G * k.shape[1]:
        return f"{q.shape[1]} query heads over {k.shape[1]} KV heads: allowed G = 2, 4, 8"
    if q.shape[-1] not in (64, 128):
        return f"head dim {q.shape[-1]}: allowed 64, 128"
    if sink_max > 128:
        return f"sink {sink_max} tokens: allowed <= 128"
    if block_n not in (64, 128):
        return f"block_n {block_n}: allowed 64, 128"
    sn = sink_step(sink_max)
    if smem_bytes(q.shape[-1], block_n, 2, sn, q.element_size()) > SMEM_LIMIT:
        return (f"block_n {block_n} with a {sn}-key sink step: two K / V stages exceed {SMEM_LIMIT} bytes of shared "
                "memory")
    if not q.is_cuda or torch.cuda.get_device_capability(q.device)[0] != 9:
        return "needs a Hopper GPU (sm_90)"
    if out.dtype != q.dtype or not tma_ok(q, k, v, out):
        return "tensors a TMA descriptor cannot address (last dim contiguous, 16-byte strides, out in q's dtype)"
    return None


@functools.lru_cache(maxsize=None)
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _desc(t, block):
    gdt = gl.bfloat16 if t.dtype == torch.bfloat16 else gl.float16
    return TensorDescriptor(t, list(t.shape), list(t.stride()), block,
                            gl.NVMMASharedLayout.get_default_for(block, gdt))


def window_prefill_ws(q, k, v, heads, sinks, windows, scaling: float, sink_max: int, out=None, block_n: int = 64,
                      stages: int = 3, consumer_regs: int = 240, ctas: int | None = None):
    """q [B, Hq, L, D], k / v [B, Hkv, L, D] -> out [B, Hq, L, D] for the KV heads listed in `heads` (int32 [n],
    the others' output untouched); sinks / windows: int32 [Hkv] per KV head (window >= 1); sink_max: the largest
    sink of those heads (0 drops the sink step). stages: K / V ring depth, lowered until the CTA's shared memory
    fits (raises below 2). ctas: persistent CTAs (None: one per SM)."""
    B, Hq, L, D = q.shape
    Hkv = k.shape[1]
    G = Hq // Hkv
    if out is None:
        out = torch.empty_like(q)
    sn = sink_step(sink_max)
    stages = fit_stages(D, block_n, stages, sn, q.element_size())
    P = 2 * ROWS.value // G
    qo_block = [1, G // 2, P, D]
    q_desc, o_desc = _desc(q, qo_block), _desc(out, qo_block)
    k_desc, v_desc = _desc(k, [1, 1, block_n, D]), _desc(v, [1, 1, block_n, D])
    ks_desc, vs_desc = _desc(k, [1, 1, sn, D]), _desc(v, [1, 1, sn, D])
    n_qb = triton.cdiv(L, P)
    n_tiles = B * heads.numel() * n_qb
    n_cta = min(n_tiles, ctas or _sm_count(q.device.index or 0))
    # 12 warps (4 + 4 consumers, a producer warp rounded to a group): registers 168 x 384 = 64512 of 65536;
    # setmaxnreg gives the producer 24 and each consumer group consumer_regs
    _window_ws_kernel[(n_cta, )](q_desc, k_desc, v_desc, ks_desc, vs_desc, o_desc, heads, sinks, windows, L, n_qb,
                                 heads.numel(), n_tiles, scaling * 1.4426950408889634, G=G, P=P, BN=block_n, D=D,
                                 SN=sn, STAGES=stages, HAS_SINK=sink_max > 0, CONSUMER_REGS=consumer_regs,
                                 num_warps=4, maxnreg=168)
    return out
