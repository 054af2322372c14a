"""What the probes share: one prefill layer of the benchmark's geometry (Llama-3-8B: 32 / 8 heads, D 128, bf16) at
n tokens, seeded by n, and dense cuDNN on them as the benchmark times it (K / V expanded outside); LServe's decode
cycle timed per decode config against dense SDPA, and its summary lines; the selector's buffers of a decode step."""
import math
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from sparsebench.evals.latency_attention import LatencyAttentionConfig


def prefill_inputs(n: int):
    """(config, q [1, Hq, n, D], k / v [1, Hkv, n, D], scale, cudnn): cudnn() runs dense causal attention."""
    c = LatencyAttentionConfig()
    Hq, Hkv, D = c.n_heads, c.n_kv_heads, c.head_dim
    g = torch.Generator(device="cuda").manual_seed(n)
    q = torch.randn(1, Hq, n, D, device="cuda", dtype=torch.bfloat16, generator=g)
    k = torch.randn(1, Hkv, n, D, device="cuda", dtype=torch.bfloat16, generator=g)
    v = torch.randn(1, Hkv, n, D, device="cuda", dtype=torch.bfloat16, generator=g)
    kk, vv = k.repeat_interleave(Hq // Hkv, 1), v.repeat_interleave(Hq // Hkv, 1)
    scale = 1 / math.sqrt(D)

    def cudnn():
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            return F.scaled_dot_product_attention(q, kk, vv, is_causal=True, scale=scale)
    return c, q, k, v, scale, cudnn


def print_cycles(tag: str, variants, cyc: dict, nbytes: int, width: int = 9):
    """One line per variant: the median selector step, reuse step and cycle mean (µs per layer) over the rounds in
    cyc[variant] (each round the per-position times of a cycle), against the median of cyc["dense"]."""
    dm = statistics.median(cyc["dense"])
    for v in variants:
        means = [statistics.mean(p) for p in cyc[v]]
        m = statistics.median(means)
        print(f"{tag} {v:{width}s} select {statistics.median(p[0] for p in cyc[v]):7.2f} reuse "
              f"{statistics.median(statistics.mean(p[1:]) for p in cyc[v]):7.2f} mean {m:7.2f} us "
              f"{[round(x, 2) for x in means]}  dense {dm:8.2f} -> {dm / m:6.3f}x  {nbytes / m / 1e6:.2f} TB/s",
              flush=True)
    return dm


def apply_config(conf: str) -> str:
    """Set the decode launch options of a config string (`decode_launch_opts`, then "+key[=value]" suffixes: a
    bench_steps.PAGED_OPTS key, "sel_" and a SELECT_OPTS key, or "trigger" for cuda_decode.PDL_TRIGGER); returns the
    PDL trigger that was set before, to put back after."""
    from sparsebench.evals.latency_attention import decode_launch_opts
    from sparsebench.kernels import bench_steps as bs
    from sparsebench.kernels import cuda_decode

    bs.PAGED_OPTS, bs.SELECT_OPTS = decode_launch_opts(conf.split("+")[0])
    trigger = cuda_decode.PDL_TRIGGER
    for opt in conf.split("+")[1:]:
        k, _, v = opt.partition("=")
        v = int(v) if v.isdigit() else v or True
        if k == "trigger":
            cuda_decode.PDL_TRIGGER = v
        elif k.startswith("sel_"):
            bs.SELECT_OPTS[k[4:]] = v
        else:
            bs.PAGED_OPTS[k] = v
    return trigger


def lserve_cycles(B: int, configs, rounds: int, attention: bool = False, L: int = 8, N: int = 131072) -> dict:
    """LServe's decode at batch B, length N, by the benchmark's method (L layers per CUDA graph, L2 evicted before
    each replay, per layer): each decode config string (`decode_launch_opts`; "+key[=value]" suffixes set more
    launch options, e.g. "4x2x8ipdc+fresh_pdl+sel_top_warps=4+trigger=start": a bench_steps.PAGED_OPTS key, "sel_"
    and a SELECT_OPTS key, or cuda_decode.PDL_TRIGGER) built, checked against dense math in the first round,
    then its reuse cycle timed per position, rounds in turn with dense SDPA; printed as `print_cycles` lines.
    attention: also the attention launch alone per config. Returns the record of the batch."""
    from sparsebench.kernels import bench_steps as bs
    from sparsebench.kernels import cuda_decode
    from sparsebench.timing import graph_ms

    dense = [bs.build_decode_step("full", "sdpa", B, N, 32, 8, 128, torch.bfloat16) for _ in range(L)]
    cyc, attn, checks, nbytes = {}, {}, {}, None
    for rnd in range(rounds):
        for conf in configs:
            trigger = apply_config(conf)
            sparse = [bs.build_decode_step("lserve", "triton", B, N, 32, 8, 128, torch.bfloat16) for _ in range(L)]
            nbytes = sparse[0][2]["bytes"]
            if rnd == 0:
                checks[conf] = sparse[0][2]["check"]()
            per = graph_ms(lambda i: [b[0](i) for b in sparse], 4, l2="evicted", per_step=True, replays=200)
            cyc.setdefault(conf, []).append([t / L * 1e3 for t in per])
            if attention:
                a = graph_ms(lambda i: [b[2]["parts"]["attention"]() for b in sparse], l2="evicted", replays=200)
                attn.setdefault(conf, []).append(a / L * 1e3)
            sparse = None
            cuda_decode.PDL_TRIGGER = trigger
            torch.cuda.empty_cache()
        d = graph_ms(lambda i: [x[0](i) for x in dense], l2="evicted", replays=60)
        cyc.setdefault("dense", []).append(d / L * 1e3)
    bs.PAGED_OPTS, bs.SELECT_OPTS = {}, {}
    dense = None
    torch.cuda.empty_cache()
    print(f"B{B} checks", checks, flush=True)
    dm = print_cycles(f"B{B}", configs, cyc, nbytes, width=12)
    rec = {"cycles_us": cyc, "bytes": nbytes, "dense_us_median": dm, "checks": checks}
    if attention:
        for conf in configs:
            print(f"B{B} {conf:12s} attention launch alone {statistics.median(attn[conf]):7.2f} us {attn[conf]}",
                  flush=True)
        rec["attention_us"] = attn
    return rec


def selector_cell(built, name: str):
    """A variable of an LServe decode step's selector (`build_decode_step`'s return value `built`): its scores,
    ids_buf, n_sel, ..., for probes that launch the selector's kernels alone on the step's own buffers."""
    sel = built[2]["parts"]["selector"]
    return sel.__closure__[sel.__code__.co_freevars.index(name)].cell_contents
