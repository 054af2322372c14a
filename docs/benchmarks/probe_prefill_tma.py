"""Prefill probes behind run 10 (docs/benchmarks/attention.md): launch configs with plain loads and with TMA tensor
descriptors ('t'), for our dense kernel (`triton_all` full) and the windowed patterns on `triton`; time per computed
block vs cuDNN's in the same run. Run on a GPU box:
    OUT=/tmp python3 docs/benchmarks/probe_prefill_tma.py 8192,32768,65536,131072  # run10_probe_prefill_tma_*.json
    OUT=/tmp python3 docs/benchmarks/probe_prefill_tma.py 32768,131072 tiles  # run10_probe_prefill_small_tiles.json
(run 10's second TMA sweep, `_b.json`, also timed dense heads on cuDNN on a second stream, configs ending in 'o': an
option removed since, as it changed nothing beyond the spread between runs.)
"""
import json
import os
import sys
import time

from sparsebench.evals.latency_attention import LatencyAttentionConfig, prefill_row

OUT = os.environ.get("OUT", "/tmp")
lengths = [int(x) for x in sys.argv[1].split(",")]
tiles = len(sys.argv) > 2 and sys.argv[2] == "tiles"
plain = [] if tiles else ["128x128x8x3", "128x64x8x3"]
tma = (["64x64x4x3t", "64x64x4x2t", "64x64x8x3t", "64x64x8x2t", "64x32x4x3t", "64x64x4x4t", "64x128x8x2t"] if tiles
       else ["128x128x8x3t", "128x64x8x3t", "128x128x8x2t", "64x64x4x3t", "64x64x4x4t", "64x128x4x2t", "64x32x4x4t"])
rows = ([("streaming_llm", "triton"), ("streaming_heads", "triton")] if tiles else
        [("full", "triton_all"), ("streaming_llm", "triton"), ("streaming_heads", "triton"), ("lserve", "triton")])
c = LatencyAttentionConfig()
c.rep_ms, c.warmup_ms, c.prefill_configs = 60, 20, plain + tma
res, t0 = [], time.time()
for n in lengths:
    base = prefill_row(c, {"batch": 1, "length": n, "policy": "full", "backend": "sdpa_cudnn"})
    per_dense = base["ms"] / base["causal_blocks"]
    res.append({"n": n, "policy": "full", "backend": "sdpa_cudnn", "ms": base["ms"]})
    print(f"{n} cudnn {base['ms']:.2f} ms", flush=True)
    for pol, be in rows:
        r = prefill_row(c, {"batch": 1, "length": n, "policy": pol, "backend": be})
        cm = r["config_ms"]
        ratio = {conf: (ms / r["blocks"]) / per_dense for conf, ms in cm.items()}
        res.append({"n": n, "policy": pol, "backend": be, "config_ms": cm, "ratio": ratio, "blocks": r["blocks"],
                    "causal_blocks": r["causal_blocks"], "cudnn_ms": base["ms"], "note": r["note"]})
        best = {kind: min(group, key=cm.get) for kind, group in (("plain", plain), ("tma", tma)) if group}
        print(f"{n:6d} {pol:15s} {be:10s} " + "  ".join(f"{kd} {x} {cm[x]:.2f} ms ({ratio[x]:.2f})"
                                                      for kd, x in best.items()) + f"  | {r['note'][-50:]}", flush=True)
    json.dump(res, open(f"{OUT}/probe_prefill_tma.json", "w"), indent=1)
print("elapsed", round(time.time() - t0))
