"""Run 8 probe (docs/benchmarks/attention.md): dense causal prefill on cuDNN with GQA, K / V expanded inside the
timed region (repeat_interleave) vs passed as is (`enable_gqa`), by length, for all 32 query heads and for a
16-head subset (the dense half of a streaming-heads layer), plus the baseline with K / V expanded outside.
On a GPU box:  OUT=/tmp python3 docs/benchmarks/probe_dense_gqa.py      # writes $OUT/dense_gqa.json"""
import os, json, torch, triton
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
OUT = os.environ.get("OUT", "/tmp"); res = {}
gen = torch.Generator(device="cuda").manual_seed(0)
for n in (8192, 16384, 32768, 65536):
    for hq, hkv in ((32, 8), (16, 4)):
        G = hq // hkv
        q = torch.randn(1, hq, n, 128, device="cuda", dtype=torch.bfloat16, generator=gen)
        k = torch.randn(1, hkv, n, 128, device="cuda", dtype=torch.bfloat16, generator=gen)
        v = torch.randn(1, hkv, n, 128, device="cuda", dtype=torch.bfloat16, generator=gen)
        kk, vv = k.repeat_interleave(G, 1), v.repeat_interleave(G, 1)
        rep = 100 if n <= 16384 else 300
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            r = {"expanded_outside": triton.testing.do_bench(
                     lambda: F.scaled_dot_product_attention(q, kk, vv, is_causal=True), rep=rep),
                 "expand_timed": triton.testing.do_bench(lambda: F.scaled_dot_product_attention(
                     q, k.repeat_interleave(G, 1), v.repeat_interleave(G, 1), is_causal=True), rep=rep),
                 "enable_gqa": triton.testing.do_bench(
                     lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True), rep=rep)}
        res[f"{n}_{hq}x{hkv}"] = r
        print(n, hq, hkv, {a: round(b, 4) for a, b in r.items()}, flush=True)
        del q, k, v, kk, vv; torch.cuda.empty_cache()
json.dump(res, open(f"{OUT}/dense_gqa.json", "w"), indent=1)

# LServe's prefill pattern on `triton` (dense heads on cuDNN), native GQA vs K / V expanded, measured alternately
import math
from sparsebench.evals.latency_attention import LatencyAttentionConfig, _policy
from sparsebench.kernels import triton_backend as tb
native = tb.dense_sdpa
def expanded(q, k, v, scaling):
    g = q.shape[1] // k.shape[1]
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        return F.scaled_dot_product_attention(q, k.repeat_interleave(g, 1), v.repeat_interleave(g, 1),
                                              is_causal=True, scale=scaling)
c = LatencyAttentionConfig()
for n in (32768, 65536):
    q = torch.randn(1, 32, n, 128, device="cuda", dtype=torch.bfloat16, generator=gen)
    k = torch.randn(1, 8, n, 128, device="cuda", dtype=torch.bfloat16, generator=gen)
    v = torch.randn(1, 8, n, 128, device="cuda", dtype=torch.bfloat16, generator=gen)
    kk, vv = k.repeat_interleave(4, 1), v.repeat_interleave(4, 1)
    plan = _policy("lserve", c).prefill_plan(0, n)
    be = tb.TritonBackend("cuda", dense_heads="sdpa", block_m=128, block_n=128, num_warps=8, num_stages=3)
    r = {"native": [], "expanded": [], "cudnn_dense": []}
    for _ in range(3):
        for name, f in (("native", native), ("expanded", expanded)):
            tb.dense_sdpa = f
            r[name].append(triton.testing.do_bench(lambda: be._prefill_row(q, k, v, plan, 1 / math.sqrt(128)), rep=300))
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            r["cudnn_dense"].append(triton.testing.do_bench(
                lambda: F.scaled_dot_product_attention(q, kk, vv, is_causal=True), rep=300))
    tb.dense_sdpa = native
    res[f"lserve_{n}"] = r
    print("lserve", n, {a: [round(x, 2) for x in b] for a, b in r.items()}, flush=True)
    del q, k, v, kk, vv; torch.cuda.empty_cache()
json.dump(res, open(f"{OUT}/dense_gqa.json", "w"), indent=1)
