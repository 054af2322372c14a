"""What the probes share: one prefill layer of the benchmark's geometry (Llama-3-8B: 32 / 8 heads, D 128, bf16) at
n tokens, seeded by n, and dense cuDNN on them as the benchmark times it (K / V expanded outside); the summary line
of a decode probe's reuse cycles."""
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
