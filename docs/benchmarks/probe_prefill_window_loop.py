"""Prefill window-loop probe behind run 7 (docs/benchmarks/attention.md, data/run7_prefill_window_loop.json):
StreamingLLM, LServe and DuoAttention-style streaming heads at the given lengths on `triton` and `triton_all`, with
the windowed heads' blocks in one loop or in one loop per masked / unmasked range; time per computed block vs
cuDNN's in the same run. Run on a GPU box:
    OUT=/tmp python3 docs/benchmarks/probe_prefill_window_loop.py 32768,65536,131072 128x64x8x3,128x128x8x3,128x32x4x4
"""
import os, json, sys, time, torch
from sparsebench.kernels import triton_prefill as tp
from sparsebench.evals.latency_attention import LatencyAttentionConfig, prefill_row
OUT = os.environ.get("OUT", "/tmp"); res = []
orig = tp.block_sparse_prefill
MODE = {"one": True}
def patched(*a, **k):  # every windowed head in one loop, or none
    k.setdefault("window_one_loop_max", 1 << 30 if MODE["one"] else 0)
    return orig(*a, **k)
tp.block_sparse_prefill = patched
lengths = [int(x) for x in sys.argv[1].split(",")]
c = LatencyAttentionConfig()
c.rep_ms = 60; c.warmup_ms = 20
c.prefill_configs = sys.argv[2].split(",")
t0 = time.time()
for n in lengths:
    base = prefill_row(c, {"batch": 1, "length": n, "policy": "full", "backend": "sdpa_cudnn"})
    per_dense = base["ms"] / base["causal_blocks"]
    print(f"{n} cudnn {base['ms']:.2f} ms", flush=True)
    for pol in ("streaming_llm", "lserve", "streaming_heads"):
        for be in ("triton", "triton_all"):
            for one in (False, True):
                MODE["one"] = one
                r = prefill_row(c, {"batch": 1, "length": n, "policy": pol, "backend": be})
                ratio = (r["ms"] / r["blocks"]) / per_dense
                ideal = 1 / r["block_fraction"]
                res.append({"n": n, "policy": pol, "backend": be, "one_loop": one, "ms": r["ms"], "ratio": ratio,
                            "of_ideal": base["ms"] / r["ms"] / ideal, "note": r["note"]})
                print(f"{n} {pol:16s} {be:10s} one={one!s:5s} {r['ms']:8.2f} ms  block/cudnn {ratio:.2f}  of ideal {base['ms'] / r['ms'] / ideal:.2f}  {r['note'][:40]}", flush=True)
json.dump(res, open(f"{OUT}/prefill_sweep.json", "w"), indent=1)
print("elapsed", round(time.time() - t0))
