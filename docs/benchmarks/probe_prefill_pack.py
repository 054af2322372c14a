"""Probe (H100, run 11): Triton prefill launch configs per policy, per head (t: TMA) against GQA-packed (tp),
per block against dense cuDNN timed once per length.
    OUT=/tmp python3 docs/benchmarks/probe_prefill_pack.py 8192,32768,131072 \\
        64x64x4x3t,128x64x8x3t,128x128x8x3t,64x64x4x3tp,128x64x8x3tp,128x64x8x2tp,128x128x8x2tp,128x32x8x3tp"""
import json, os, sys, time
from sparsebench.evals.latency_attention import LatencyAttentionConfig, prefill_row
OUT = os.environ.get("OUT", "/tmp")
c = LatencyAttentionConfig(); c.rep_ms, c.warmup_ms = 60, 20
confs = sys.argv[2].split(",")
lengths = [int(x) for x in sys.argv[1].split(",")]
pols = [("streaming_llm", "triton"), ("streaming_heads", "triton"), ("lserve", "triton"), ("full", "triton_all")]
if len(sys.argv) > 3:
    pols = [tuple(p.split(":")) for p in sys.argv[3].split(",")]
res = []
for n in lengths:
    base = prefill_row(c, {"batch": 1, "length": n, "policy": "full", "backend": "sdpa_cudnn"})
    per = base["ms"] / base["causal_blocks"]
    c.prefill_configs = confs
    for pol, be in pols:
        t0 = time.time()
        r = prefill_row(c, {"batch": 1, "length": n, "policy": pol, "backend": be})
        row = {k: round((v / r["blocks"]) / per, 3) for k, v in r["config_ms"].items()}
        res.append({"n": n, "policy": pol, "backend": be, "cudnn_ms": base["ms"], "config_ms": r["config_ms"],
                    "ratio": row, "note": r["note"]})
        best = min(row, key=row.get)
        print(f"{n:>6} {pol:15s} {be:10s} best {best:14s} {row[best]:.3f} | " +
              " ".join(f"{k}={v}" for k, v in row.items()), f"({time.time()-t0:.0f}s) {r['note'][-60:]}", flush=True)
        json.dump(res, open(f"{OUT}/probe_pack.json", "w"), indent=1)
