"""LServe decode at 128K, batch 1, layout 'sir' with the top-k launched as a PDL dependent of the page scores (run 12,
docs/benchmarks/attention.md): the selector's launch settings (page-score block / warps, top-k warps) and a few paged
launch settings, each timed as the whole reuse cycle (8 layers per graph, L2 evicted), two alternating rounds.
Run on a GPU box:  OUT=/tmp python3 docs/benchmarks/probe_decode_select_sweep.py   # writes $OUT/select_sweep.json
"""
import itertools
import json
import os
import statistics

import torch

from sparsebench.kernels import bench_steps as bs
from sparsebench.timing import graph_ms

OUT = os.environ.get("OUT", "/tmp")
L, N = 8, 131072
sparse = [bs.build_decode_step("lserve", "triton", 1, N, 32, 8, 128, torch.bfloat16) for _ in range(L)]
dense = [bs.build_decode_step("full", "sdpa", 1, N, 32, 8, 128, torch.bfloat16) for _ in range(L)]
SIR = {"num_warps": 4, "num_stages": 3, "split_first": True, "strided": True, "short": True, "pages_per_split": 8}
variants = {f"bp{bp}/w{w}/tw{tw}": (SIR, {"block_p": bp, "num_warps": w, "top_warps": tw})
            for bp, w, tw in itertools.product((8, 16, 32), (2, 4), (4, 8, 16))}
for name, pw in (("4x4x8sir", 4), ("4x2x8sir", 2)):
    variants[name] = ({**SIR, "num_stages": pw}, {})
variants["8x3x8sir"] = ({**SIR, "num_warps": 8}, {})
res = {}
for rnd in range(2):
    for name, (po, so) in variants.items():
        bs.PAGED_OPTS, bs.SELECT_OPTS = po, {**so, "top_pdl": True}
        per = graph_ms(lambda i: [b[0](i) for b in sparse], 4, l2="evicted", per_step=True, replays=150)
        res.setdefault(name, []).append([t / L * 1e3 for t in per])
    res.setdefault("dense", []).append(graph_ms(lambda i: [x[0](i) for x in dense], l2="evicted", replays=60) / L * 1e3)
dm = statistics.median(res["dense"])
rows = sorted((statistics.mean(statistics.mean(p) for p in v), k) for k, v in res.items() if k != "dense")
json.dump({"cycles_us": res, "dense_us_median": dm}, open(f"{OUT}/select_sweep.json", "w"), indent=1)
for m, k in rows:
    sel = statistics.mean(p[0] for p in res[k])
    print(f"{k:18s} select {sel:6.2f} mean {m:6.2f} us -> {dm / m:6.3f}x")
