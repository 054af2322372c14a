"""Probe (H100, run 13): can StreamingLLM's short-window prefill launch run faster in another form?

Three modes (argv[2]); each times the existing launch (64 x 64 tiles, 4 warps, 3 stages, TMA, GQA-packed:
`64x64x4x3tp`) beside the variants, per block against dense cuDNN (K / V expanded, the benchmark's baseline), and
checks each variant's output against the existing kernel's (max |diff|; NaN marks a wrong kernel).
- `persistent`: a fixed number of programs per SM walk the (query block, head) tiles in turn (`flatten=True`:
  Triton fuses the tile loop and the key loop into one software pipeline), to save the per-program start, Q load
  and pipeline fill; plus the existing launch at windows 512 / 2048 / 4096 (is the cost per program or per block?).
- `ws`: the window loop without branches (the mask on every key block), with Triton's Hopper warp specialisation
  (`tl.range(warp_specialize=True)` at 4 warps: a producer warp group and two consumer groups, 12 warps). It
  needs device-built tensor descriptors and declines (a compile error) GQA-packed 4-D loads and any if / else.
- `ws2`: the same, one query head per program, persistent or not, warp specialisation on the tile loop or the
  key loop, and without it the window in three loops (masks on the boundary blocks only, as the existing kernel).
    OUT=/tmp python3 docs/benchmarks/probe_prefill_persistent.py 65536,32768,131072,8192 persistent
    OUT=/tmp python3 docs/benchmarks/probe_prefill_persistent.py 65536,32768,131072,8192 ws
    OUT=/tmp python3 docs/benchmarks/probe_prefill_persistent.py 65536,131072,32768 ws2
Writes $OUT/probe_<mode>.json (run 13: docs/benchmarks/data/run13_probe_<mode>.json)."""
import json
import os
import sys

import torch
import triton
import triton.language as tl

from probe_inputs import prefill_inputs
from sparsebench.evals.latency_attention import _policy, computed_blocks
from sparsebench.kernels.triton_prefill import (_attend_window, _descriptor, block_sparse_prefill, plan_tensors,
                                               window_bounds)
from sparsebench.plans import PrefillPlan
from sparsebench.timing import median_ms


@triton.jit
def _tile_start(q, sm_scale, BLOCK_M: tl.constexpr, HEAD_DIM: tl.constexpr):
    """A tile's start: q pre-scaled for exp2 (sm_scale * log2 e), and the online softmax's empty state."""
    q = (q.to(tl.float32) * (sm_scale * 1.44269504)).to(q.dtype)
    return (q, tl.full([BLOCK_M], float("-inf"), tl.float32), tl.zeros([BLOCK_M], tl.float32),
            tl.zeros([BLOCK_M, HEAD_DIM], tl.float32))


@triton.jit
def _tile_out(acc, l_i):
    """The normalised output (rows that saw no key: 0)."""
    return acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]


@triton.jit
def _tile_rows(start_m, hp, rows, G: tl.constexpr, BLOCK_M: tl.constexpr, PACK: tl.constexpr):
    """(KV head, first query head, each row's query position) of query block start_m of head program hp: one query
    head per program (PACK 1) or a KV head's PACK = G query heads x BLOCK_M / G positions."""
    if PACK > 1:
        return hp, hp * G, start_m * (BLOCK_M // PACK) + rows % (BLOCK_M // PACK)
    return hp // G, hp, start_m * BLOCK_M + rows


@triton.jit
def _window_persistent(Q, K, V, O, SINK_PTR, WIN_PTR, n_ctx, sm_scale, n_m, n_hp, n_tiles,
                       G: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                       PACK: tl.constexpr, FLATTEN: tl.constexpr):
    BLOCK_P: tl.constexpr = BLOCK_M // PACK
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    n_mine = tl.cdiv(n_tiles - pid, nprog)
    rows = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    for j in tl.range(0, n_mine, flatten=FLATTEN):
        t = pid + j * nprog  # query blocks fastest: programs running together share their windows in L2
        start_m = t % n_m
        hp = (t // n_m) % n_hp
        b = t // (n_m * n_hp)
        kvh, h0, offs_m = _tile_rows(start_m, hp, rows, G, BLOCK_M, PACK)
        sink = tl.load(SINK_PTR + kvh)
        window = tl.load(WIN_PTR + kvh)
        q = Q.load([b, h0, start_m * BLOCK_P, 0]).reshape(BLOCK_M, HEAD_DIM)
        q, m_i, l_i, acc = _tile_start(q, sm_scale, BLOCK_M, HEAD_DIM)
        q_lo = start_m * BLOCK_P
        q_hi = tl.minimum(q_lo + BLOCK_P, n_ctx)
        sink_hi, start, full_lo, full_hi = window_bounds(q_lo, q_hi, sink, window, BLOCK_N)
        acc, m_i, l_i = _attend_window(acc, m_i, l_i, q, K, V, 0, 0, offs_m, offs_d, sink_hi // BLOCK_N, start, q_hi,
                                       full_lo, full_hi, n_ctx, sink, window, b, kvh, BLOCK_N, False, True)
        out = _tile_out(acc, l_i)
        O.store([b, h0, start_m * BLOCK_P, 0], out.to(O.dtype).reshape(1, PACK, BLOCK_P, HEAD_DIM))


def _setup(q, k, plan, out):
    """q's shape, KV heads, group size, the plan's per-KV-head sink / window tensors, the output."""
    Hkv = k.shape[1]
    _, sinks, wins, _, _, _, present = plan_tensors(plan, q.device, False, q.shape[2])
    assert present == 2, "short-window launches only"
    return q.shape, Hkv, q.shape[1] // Hkv, sinks, wins, torch.empty_like(q) if out is None else out


def persistent_prefill(q, k, v, plan, scaling, block_m=64, block_n=64, num_warps=4, num_stages=3, pack=True,
                       per_sm=2, flatten=False, out=None):
    (B, Hq, L, D), Hkv, G, sinks, wins, out = _setup(q, k, plan, out)
    p = G if pack else 1
    n_m, n_hp = triton.cdiv(L, block_m // p), Hq // p
    n_tiles = n_m * n_hp * B
    sms = torch.cuda.get_device_properties(q.device).multi_processor_count if q.is_cuda else 4
    grid = (min(n_tiles, sms * per_sm),)
    _window_persistent[grid](_descriptor(q, block_m // p, p), _descriptor(k, block_n), _descriptor(v, block_n),
                             _descriptor(out, block_m // p, p), sinks, wins, L, scaling, n_m, n_hp, n_tiles,
                             G=G, HEAD_DIM=D, BLOCK_M=block_m, BLOCK_N=block_n, PACK=p, FLATTEN=flatten,
                             num_warps=num_warps, num_stages=num_stages)
    return out


@triton.jit
def _flat_descriptors(Q, K, V, O, q_rows, kv_rows, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                      BLOCK_N: tl.constexpr):
    """Device-built 2-D descriptors over contiguous [rows, HEAD_DIM] views of q / o and k / v."""
    return (tl.make_tensor_descriptor(Q, shape=[q_rows, HEAD_DIM], strides=[HEAD_DIM, 1],
                                      block_shape=[BLOCK_M, HEAD_DIM]),
            tl.make_tensor_descriptor(K, shape=[kv_rows, HEAD_DIM], strides=[HEAD_DIM, 1],
                                      block_shape=[BLOCK_N, HEAD_DIM]),
            tl.make_tensor_descriptor(V, shape=[kv_rows, HEAD_DIM], strides=[HEAD_DIM, 1],
                                      block_shape=[BLOCK_N, HEAD_DIM]),
            tl.make_tensor_descriptor(O, shape=[q_rows, HEAD_DIM], strides=[HEAD_DIM, 1],
                                      block_shape=[BLOCK_M, HEAD_DIM]))


@triton.jit
def _ws_block(acc, m_i, l_i, q, K, V, kv_row, start_n, offs_m, n_ctx, sink, window, MASK: tl.constexpr,
              BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr):
    k = K.load([kv_row + start_n, 0])
    v = V.load([kv_row + start_n, 0])
    return _ws_step(acc, m_i, l_i, q, k, v, start_n, offs_m, n_ctx, sink, window, MASK, BLOCK_N)


@triton.jit
def _ws_step(acc, m_i, l_i, q, k, v, start_n, offs_m, n_ctx, sink, window, MASK: tl.constexpr,
             BLOCK_N: tl.constexpr):
    """One key block, the mask written without a branch (MASK a constexpr)."""
    s = tl.dot(q, tl.trans(k))
    if MASK:
        offs_n = start_n + tl.arange(0, BLOCK_N)
        keep = (offs_n[None, :] <= offs_m[:, None]) & (offs_n[None, :] < n_ctx) & (
            (offs_n[None, :] < sink) | (offs_m[:, None] - offs_n[None, :] < window))
        s = tl.where(keep, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    p = tl.exp2(s - m_safe[:, None])
    alpha = tl.exp2(m_i - m_safe)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return acc, m_new, l_i


@triton.jit
def _window_ws(Q, K, V, O, SINK_PTR, WIN_PTR, n_ctx, sm_scale, G: tl.constexpr, HEAD_DIM: tl.constexpr,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PACK: tl.constexpr, WS: tl.constexpr,
               FLAT: tl.constexpr = False, HQ: tl.constexpr = 1, HKV: tl.constexpr = 1, DEV: tl.constexpr = False,
               NB: tl.constexpr = 1):
    """The window loop without branches (the mask on every key block), so that Triton's Hopper warp
    specialisation can take it (`tl.range(warp_specialize=True)`, 4 warps: a producer warp group for the TMA
    loads, two consumer groups of BLOCK_M / 2 rows). It declines functions holding an if with an else."""
    BLOCK_P: tl.constexpr = BLOCK_M // PACK
    start_m = tl.num_programs(0) - 1 - tl.program_id(0)
    hp = tl.program_id(1)
    b = tl.program_id(2)
    rows = tl.arange(0, BLOCK_M)
    kvh, h0, offs_m = _tile_rows(start_m, hp, rows, G, BLOCK_M, PACK)
    sink = tl.load(SINK_PTR + kvh)
    window = tl.load(WIN_PTR + kvh)
    if DEV:  # descriptors built on the device from plain pointers (Triton's Hopper warp specialisation needs them)
        if FLAT:
            Q, K, V, O = _flat_descriptors(Q, K, V, O, NB * HQ * n_ctx, NB * HKV * n_ctx, HEAD_DIM, BLOCK_M, BLOCK_N)
        else:
            Q = tl.make_tensor_descriptor(Q, shape=[NB, HQ, n_ctx, HEAD_DIM],
                                          strides=[HQ * n_ctx * HEAD_DIM, n_ctx * HEAD_DIM, HEAD_DIM, 1],
                                          block_shape=[1, PACK, BLOCK_P, HEAD_DIM])
            O = tl.make_tensor_descriptor(O, shape=[NB, HQ, n_ctx, HEAD_DIM],
                                          strides=[HQ * n_ctx * HEAD_DIM, n_ctx * HEAD_DIM, HEAD_DIM, 1],
                                          block_shape=[1, PACK, BLOCK_P, HEAD_DIM])
            K = tl.make_tensor_descriptor(K, shape=[NB, HKV, n_ctx, HEAD_DIM],
                                          strides=[HKV * n_ctx * HEAD_DIM, n_ctx * HEAD_DIM, HEAD_DIM, 1],
                                          block_shape=[1, 1, BLOCK_N, HEAD_DIM])
            V = tl.make_tensor_descriptor(V, shape=[NB, HKV, n_ctx, HEAD_DIM],
                                          strides=[HKV * n_ctx * HEAD_DIM, n_ctx * HEAD_DIM, HEAD_DIM, 1],
                                          block_shape=[1, 1, BLOCK_N, HEAD_DIM])
    if FLAT:  # 2-D descriptors over [B * H * L, D] (PACK 1, L a multiple of BLOCK_M)
        q = Q.load([(b * HQ + h0) * n_ctx + start_m * BLOCK_M, 0])
    else:
        q = Q.load([b, h0, start_m * BLOCK_P, 0]).reshape(BLOCK_M, HEAD_DIM)
    q, m_i, l_i, acc = _tile_start(q, sm_scale, BLOCK_M, HEAD_DIM)
    q_lo = start_m * BLOCK_P
    q_hi = tl.minimum(q_lo + BLOCK_P, n_ctx)
    sink_hi, start, _, _ = window_bounds(q_lo, q_hi, sink, window, BLOCK_N)
    n_sink_blk = sink_hi // BLOCK_N
    n_it = n_sink_blk + tl.cdiv(q_hi - start, BLOCK_N)
    for i in tl.range(0, n_it, warp_specialize=WS):
        start_n = tl.where(i < n_sink_blk, i * BLOCK_N, start + (i - n_sink_blk) * BLOCK_N)
        if FLAT:
            k = K.load([(b * HKV + kvh) * n_ctx + start_n, 0])
            v = V.load([(b * HKV + kvh) * n_ctx + start_n, 0])
        else:
            k = K.load([b, kvh, start_n, 0]).reshape(BLOCK_N, HEAD_DIM)
            v = V.load([b, kvh, start_n, 0]).reshape(BLOCK_N, HEAD_DIM)
        acc, m_i, l_i = _ws_step(acc, m_i, l_i, q, k, v, start_n, offs_m, n_ctx, sink, window, True, BLOCK_N)
    out = _tile_out(acc, l_i)
    if FLAT:
        O.store([(b * HQ + h0) * n_ctx + start_m * BLOCK_M, 0], out.to(O.dtype))
    else:
        O.store([b, h0, start_m * BLOCK_P, 0], out.to(O.dtype).reshape(1, PACK, BLOCK_P, HEAD_DIM))


def ws_prefill(q, k, v, plan, scaling, block_m=128, block_n=64, num_warps=4, num_stages=3, pack=True, ws=True,
               out=None, flat=False, dev=False):
    (B, Hq, L, D), Hkv, G, sinks, wins, out = _setup(q, k, plan, out)
    p = G if pack else 1
    grid = (triton.cdiv(L, block_m // p), Hq // p, B)
    if dev:
        assert q.is_contiguous() and k.is_contiguous() and v.is_contiguous() and (L % block_m == 0 or not flat)
        triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device=q.device))
        descs = [q, k, v, out]
    elif flat:
        from triton.tools.tensor_descriptor import TensorDescriptor
        assert p == 1 and L % block_m == 0 and q.is_contiguous() and k.is_contiguous() and v.is_contiguous()
        descs = [TensorDescriptor.from_tensor(t.view(-1, D), [bl, D]) for t, bl in
                 ((q, block_m), (k, block_n), (v, block_n), (out, block_m))]
    else:
        descs = [_descriptor(q, block_m // p, p), _descriptor(k, block_n), _descriptor(v, block_n),
                 _descriptor(out, block_m // p, p)]
    ws_prefill.last = _window_ws[grid](*descs, sinks, wins, L, scaling, G=G, HEAD_DIM=D, BLOCK_M=block_m,
                     BLOCK_N=block_n, PACK=p, WS=ws, FLAT=flat, HQ=Hq, HKV=Hkv, DEV=dev, NB=B, num_warps=num_warps,
                     num_stages=num_stages)
    return out


@triton.jit
def _window_ws2(Q, K, V, O, SINK_PTR, WIN_PTR, n_ctx, sm_scale, n_tiles, HQ: tl.constexpr, HKV: tl.constexpr,
                NB: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                PERSIST: tl.constexpr, WS_OUTER: tl.constexpr, WS_INNER: tl.constexpr, THREE: tl.constexpr):
    """Flat 2-D device descriptors, one query head per program (tile = query block x head). PERSIST: a program
    per SM walks tiles (descriptors built once per program); WS_OUTER / WS_INNER: which loop carries
    `warp_specialize`; THREE: the window in three loops (masked leading blocks, unmasked middle, masked
    diagonal) instead of one loop masking every block."""
    G: tl.constexpr = HQ // HKV
    Q, K, V, O = _flat_descriptors(Q, K, V, O, NB * HQ * n_ctx, NB * HKV * n_ctx, HEAD_DIM, BLOCK_M, BLOCK_N)
    n_m = n_ctx // BLOCK_M
    if PERSIST:
        pid = tl.program_id(0)
        nprog = tl.num_programs(0)
        n_mine = tl.cdiv(n_tiles - pid, nprog)
    else:
        pid = tl.program_id(0) + tl.program_id(1) * n_m
        nprog = 1
        n_mine = 1
    rows = tl.arange(0, BLOCK_M)
    for j in tl.range(0, n_mine, warp_specialize=WS_OUTER):
        t = pid + j * nprog
        start_m = n_m - 1 - t % n_m
        bh = t // n_m  # b * HQ + h
        kvh = (bh % HQ) // G
        kv_row = (bh // HQ * HKV + kvh) * n_ctx
        sink = tl.load(SINK_PTR + kvh)
        window = tl.load(WIN_PTR + kvh)
        offs_m = start_m * BLOCK_M + rows
        q = Q.load([bh * n_ctx + start_m * BLOCK_M, 0])
        q, m_i, l_i, acc = _tile_start(q, sm_scale, BLOCK_M, HEAD_DIM)
        q_lo = start_m * BLOCK_M
        q_hi = q_lo + BLOCK_M
        sink_hi, start, full_lo, full_hi = window_bounds(q_lo, q_hi, sink, window, BLOCK_N)
        n_sink_blk = sink_hi // BLOCK_N
        if THREE:
            n_a = n_sink_blk + (full_lo - start) // BLOCK_N
            for i in tl.range(0, n_a, warp_specialize=WS_INNER):
                start_n = tl.where(i < n_sink_blk, i * BLOCK_N, start + (i - n_sink_blk) * BLOCK_N)
                acc, m_i, l_i = _ws_block(acc, m_i, l_i, q, K, V, kv_row, start_n, offs_m, n_ctx, sink, window,
                                          True, BLOCK_N, HEAD_DIM)
            for start_n in tl.range(full_lo, full_hi, BLOCK_N, warp_specialize=WS_INNER):
                acc, m_i, l_i = _ws_block(acc, m_i, l_i, q, K, V, kv_row, start_n, offs_m, n_ctx, sink, window,
                                          False, BLOCK_N, HEAD_DIM)
            for start_n in tl.range(full_hi, q_hi, BLOCK_N, warp_specialize=WS_INNER):
                acc, m_i, l_i = _ws_block(acc, m_i, l_i, q, K, V, kv_row, start_n, offs_m, n_ctx, sink, window,
                                          True, BLOCK_N, HEAD_DIM)
        else:
            n_it = n_sink_blk + tl.cdiv(q_hi - start, BLOCK_N)
            for i in tl.range(0, n_it, warp_specialize=WS_INNER):
                start_n = tl.where(i < n_sink_blk, i * BLOCK_N, start + (i - n_sink_blk) * BLOCK_N)
                acc, m_i, l_i = _ws_block(acc, m_i, l_i, q, K, V, kv_row, start_n, offs_m, n_ctx, sink, window,
                                          True, BLOCK_N, HEAD_DIM)
        O.store([bh * n_ctx + start_m * BLOCK_M, 0], _tile_out(acc, l_i).to(O.dtype))


def ws2_prefill(q, k, v, plan, scaling, block_m=128, block_n=64, num_warps=4, num_stages=2, persist=False,
                ws_outer=False, ws_inner=True, three=True, per_sm=1, out=None):
    (B, Hq, L, D), Hkv, _, sinks, wins, out = _setup(q, k, plan, out)
    assert q.is_contiguous() and k.is_contiguous() and v.is_contiguous() and L % block_m == 0
    triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device=q.device))
    n_m = L // block_m
    n_tiles = n_m * Hq * B
    sms = torch.cuda.get_device_properties(q.device).multi_processor_count if q.is_cuda else 4
    grid = (min(n_tiles, sms * per_sm),) if persist else (n_m, Hq * B)
    ws_prefill.last = _window_ws2[grid](q, k, v, out, sinks, wins, L, scaling, n_tiles, HQ=Hq, HKV=Hkv, NB=B,
                                        HEAD_DIM=D, BLOCK_M=block_m, BLOCK_N=block_n, PERSIST=persist,
                                        WS_OUTER=ws_outer, WS_INNER=ws_inner, THREE=three, num_warps=num_warps,
                                        num_stages=num_stages)
    return out


def main():
    """argv: lengths; what to run: "persistent" (the persistent sweep and the window-size scan) or "ws" (the
    branch-free window loop with and without Triton's warp specialisation)."""
    out_dir = os.environ.get("OUT", "/tmp")
    lengths = [int(x) for x in sys.argv[1].split(",")]
    what = sys.argv[2] if len(sys.argv) > 2 else "persistent"
    res = []
    for n in lengths:
        c, q, k, v, scale, cudnn = prefill_inputs(n)
        Hq, Hkv = c.n_heads, c.n_kv_heads
        plans = {"streaming_llm": _policy("streaming_llm", c).prefill_plan(0, n)}
        if what == "persistent":
            for w in (508, 2044, 4092):
                plans[f"window{w + 4}"] = PrefillPlan(sink=(4,) * Hkv, window=(w,) * Hkv)
        cud = median_ms(cudnn, 20, 60)
        _, causal_blocks = computed_blocks(plans["streaming_llm"], n, Hq // Hkv)
        per = cud / causal_blocks
        for name, plan in plans.items():
            blocks, _ = computed_blocks(plan, n, Hq // Hkv)
            ref = block_sparse_prefill(q, k, v, plan, scale, ws=False)
            fns = {"64x64x4x3tp": lambda: block_sparse_prefill(q, k, v, plan, scale, ws=False)}
            if name == "streaming_llm" and what == "persistent":
                for per_sm in (1, 2, 3):
                    for fl in (False, True):
                        for st in (2, 3):
                            fns[f"pers{per_sm}{'f' if fl else ''}s{st}"] = (
                                lambda per_sm=per_sm, fl=fl, st=st: persistent_prefill(
                                    q, k, v, plan, scale, per_sm=per_sm, flatten=fl, num_stages=st))
            if name == "streaming_llm" and what == "ws":
                # BLOCK_M x BLOCK_N x warps x stages, w: warp specialised (4 warps become 12: a producer group and
                # two consumer groups), d: device-built descriptors, f: flat 2-D descriptors (one head per program)
                for conf, kw in {"128x64x4x3wdf": dict(block_n=64, num_warps=4, num_stages=3, ws=True),
                                 "128x128x4x2wdf": dict(block_n=128, num_warps=4, num_stages=2, ws=True),
                                 "128x64x4x2wdf": dict(block_n=64, num_warps=4, num_stages=2, ws=True),
                                 "128x64x8x3df": dict(block_n=64, num_warps=8, num_stages=3, ws=False),
                                 "64x64x4x3dp": dict(block_m=64, block_n=64, num_warps=4, num_stages=3, ws=False,
                                                     flat=False, pack=True),
                                 }.items():
                    kw = {"block_m": 128, "flat": True, "pack": False, "dev": True, **kw}
                    fns[conf] = lambda kw=kw: ws_prefill(q, k, v, plan, scale, **kw)
            if name == "streaming_llm" and what == "ws2":
                # P: persistent (a program per SM), o / i: warp_specialize on the tile / key loop, 3: three loops
                # (masks on boundary blocks only), else one loop masking every block
                for conf, kw in {"P o 1L 4x2": dict(persist=True, ws_outer=True, ws_inner=False, three=False),
                                 "P i 1L 4x2": dict(persist=True, ws_outer=False, ws_inner=True, three=False),
                                 "P i 1L 4x3": dict(persist=True, ws_outer=False, ws_inner=True, three=False,
                                                    num_stages=3),
                                 "P - 3L 8x3": dict(persist=True, ws_inner=False, three=True, num_warps=8,
                                                    num_stages=3),
                                 "P - 1L 8x3": dict(persist=True, ws_inner=False, three=False, num_warps=8,
                                                    num_stages=3),
                                 "P2 - 3L 8x2": dict(persist=True, ws_inner=False, three=True, num_warps=8,
                                                     num_stages=2, per_sm=2),
                                 "- i 1L 4x2": dict(persist=False, ws_inner=True, three=False),
                                 "- - 3L 8x3": dict(persist=False, ws_inner=False, three=True, num_warps=8,
                                                    num_stages=3),
                                 }.items():
                    fns[conf] = lambda kw=kw: ws2_prefill(q, k, v, plan, scale, **kw)
            row = {"n": n, "plan": name, "cudnn_ms": cud, "blocks": blocks, "causal_blocks": causal_blocks,
                   "ms": {}, "ratio": {}, "max_abs_diff": {}, "warps": {}}
            for conf, fn in fns.items():
                try:
                    ws_prefill.last = None
                    o = fn()
                    kern = ws_prefill.last
                    if kern is not None and hasattr(kern, "metadata"):
                        row["warps"][conf] = [kern.metadata.num_warps, "setmaxnreg" in kern.asm.get("ptx", ""),
                                              kern.metadata.shared]
                    row["max_abs_diff"][conf] = float((o.float() - ref.float()).abs().max())
                    ms = median_ms(fn, 20, 60)
                    row["ms"][conf] = ms
                    row["ratio"][conf] = round(ms / blocks / per, 3)
                except Exception as e:
                    row["ms"][conf] = f"failed: {type(e).__name__}: {e}"[:300]
                    print(conf, row["ms"][conf], flush=True)
            res.append(row)
            print(f"{n:>6} {name:14s} cudnn {cud:7.3f} ms | " + " ".join(
                f"{k_}={v_:.3f}({row['ms'][k_]:.3f}ms,d{row['max_abs_diff'][k_]:.0e})" for k_, v_ in
                row["ratio"].items()), row["warps"], flush=True)
            json.dump(res, open(f"{out_dir}/probe_{what}.json", "w"), indent=1)


if __name__ == "__main__":
    main()
