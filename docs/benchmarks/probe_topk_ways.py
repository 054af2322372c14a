"""Run 8 probe (docs/benchmarks/attention.md): LServe's top-k by threshold search (bisection, interpolation) and
warps, the selector step and the reuse cycle at 128K with the fastest, per layer (8 layers per CUDA graph, L2
flushed), batch 1 and 8; dense SDPA decode in the same run. Then the dense-head path of prefill at 8K / 32K:
cuDNN on K / V expanded outside the timed region (the baseline), the same with the expansion timed
(repeat_interleave, what `dense_sdpa` did), SDPA's enable_gqa on cuDNN, and batch-1 query heads regrouped
[G, Hkv] so K / V broadcast over G with stride 0 (no copy). On a GPU box:
    OUT=/tmp python3 docs/benchmarks/probe_topk_ways.py      # writes $OUT/topk_ways.json"""
import os, json, torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
import triton
from probe_inputs import selector_cell as cell
from sparsebench.kernels import bench_steps as bs
from sparsebench.kernels import triton_decode as td
from sparsebench.timing import graph_ms
OUT = os.environ.get("OUT", "/tmp"); L = 8; res = {}
def t(fn, replays=100, steps=1, per_step=False):
    r = graph_ms(fn, steps, replays=replays, per_step=per_step, l2="flushed")
    return [x / L * 1e3 for x in r] if per_step else r / L * 1e3
for B in (1, 8):
    built = [bs.build_decode_step("lserve", "triton", B, 131072, 32, 8, 128, torch.bfloat16) for _ in range(L)]
    [b[0](0) for b in built]; torch.cuda.synchronize()
    r = {}
    for search in ("bisect", "interp"):
        for w in (4, 8):
            def topk(i, search=search, w=w):
                for b in built:
                    sc = cell(b, "scores"); R, G = cell(b, "R"), cell(b, "G")
                    td.top_pages(sc.view(-1, sc.shape[-1]), cell(b, "n_valid"), cell(b, "ret_base").reshape(-1),
                                 cell(b, "n_sel"), cell(b, "ids_buf"), R * G, cell(b, "RO"), num_warps=w,
                                 search=search)  # (out rows per batch row: the step's RO, retrieval + streaming)
            try:
                r[f"topk_{search}_w{w}"] = t(topk)
            except Exception as e:
                r[f"topk_{search}_w{w}"] = repr(e)[:100]
    print(f"B{B}", {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
    ok = {k: v for k, v in r.items() if isinstance(v, float)}
    best = min(ok, key=ok.get)
    search, w = best.split("_")[1], int(best.rsplit("_w", 1)[1])
    r["best"] = best
    for name, opts in (("bisect_w8", {"top_search": "bisect", "top_warps": 8}),
                       ("best", {"top_search": search, "top_warps": w})):
        bs.SELECT_OPTS = opts
        r[f"selector_{name}"] = t(lambda i: [b[2]["parts"]["selector"]() for b in built])
        r[f"check_{name}"] = built[0][2]["check"]()
        pp = t(lambda i: [b[0](i) for b in built], replays=200, steps=4, per_step=True)
        r[f"cycle_{name}"] = pp
        r[f"cycle_mean_{name}"] = sum(pp) / 4
    bs.SELECT_OPTS = {}
    r["scores_only"] = t(lambda i: [td.page_scores_triton(cell(b, "q_ret"), cell(b, "ret").kmin, cell(b, "ret").kmax,
                                                          cell(b, "lp_rows"), cell(b, "ret").lpp, "none", 8,
                                                          cell(b, "scores"), 2) for b in built])
    r["bytes"] = built[0][2]["bytes"]
    del built; torch.cuda.empty_cache()
    dense = [bs.build_decode_step("full", "sdpa", B, 131072, 32, 8, 128, torch.bfloat16) for _ in range(L)]
    r["dense_sdpa"] = t(lambda i: [d[0](i) for d in dense])
    del dense; torch.cuda.empty_cache()
    for name in ("bisect_w8", "best"):
        r[f"speedup_{name}"] = r["dense_sdpa"] / r[f"cycle_mean_{name}"]
    res[f"B{B}"] = r
    print(f"B{B}", {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items() if not k.startswith("topk")},
          flush=True)
json.dump(res, open(f"{OUT}/topk_ways.json", "w"), indent=1)

# ------------------------------------------------------------------ prefill: dense heads on cuDNN with GQA
def bench(fn):
    return triton.testing.do_bench(fn, warmup=25, rep=100)
gen = torch.Generator(device="cuda").manual_seed(0)
for n in (8192, 32768):
    Hq, Hkv, D = 32, 8, 128
    G = Hq // Hkv
    q = torch.randn(1, Hq, n, D, device="cuda", dtype=torch.bfloat16, generator=gen)
    k = torch.randn(1, Hkv, n, D, device="cuda", dtype=torch.bfloat16, generator=gen)
    v = torch.randn(1, Hkv, n, D, device="cuda", dtype=torch.bfloat16, generator=gen)
    kk, vv = k.repeat_interleave(G, 1), v.repeat_interleave(G, 1)
    p = {}
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        ref = F.scaled_dot_product_attention(q, kk, vv, is_causal=True)
        p["cudnn_expanded_outside"] = bench(lambda: F.scaled_dot_product_attention(q, kk, vv, is_causal=True))
        p["cudnn_expand_timed"] = bench(lambda: F.scaled_dot_product_attention(
            q, k.repeat_interleave(G, 1), v.repeat_interleave(G, 1), is_causal=True))
        try:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            p["cudnn_enable_gqa_err"] = ((o.float() - ref.float()).norm() / ref.float().norm()).item()
            p["cudnn_enable_gqa"] = bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True))
        except Exception as e:
            p["cudnn_enable_gqa"] = repr(e)[:160]
        def regrouped():
            qg = q[0].view(Hkv, G, n, D).transpose(0, 1)  # [G, Hkv, n, D]: batch = position in the group
            kg, vg = k[0].expand(G, Hkv, n, D), v[0].expand(G, Hkv, n, D)  # stride 0 over G: no copy
            o = F.scaled_dot_product_attention(qg, kg, vg, is_causal=True)
            return o.transpose(0, 1).reshape(1, Hq, n, D)
        try:
            o = regrouped()
            p["cudnn_regrouped_err"] = ((o.float() - ref.float()).norm() / ref.float().norm()).item()
            p["cudnn_regrouped"] = bench(regrouped)
        except Exception as e:
            p["cudnn_regrouped"] = repr(e)[:160]
    res[f"prefill_{n}"] = p
    print(n, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in p.items()}, flush=True)
    del q, k, v, kk, vv; torch.cuda.empty_cache()
json.dump(res, open(f"{OUT}/topk_ways.json", "w"), indent=1)
