"""How LServe's decode launch lays out its programs (run 12, docs/benchmarks/attention.md). 128K, 8 layers per graph,
L2 evicted (clean) before each replay, batch 1 and 8.

One launch holds 16 retrieval rows (one per query head, 64 pages) and 4 streaming rows (one per KV head, 6 pages:
sink 128 + local 256), split-KV with pages_per_split 8, so 8 splits per row: 160 programs on 132 SMs.
  chunked (the old layout): split s reads list entries [8s, 8s + 8): a streaming row's 6 pages in one program, its
      7 other splits empty;
  strided ('i'): split s reads entries s, s + 8, ...: the 6 pages spread over 6 programs;
  short rows ('r'): the streaming rows get only the splits their 6 pages need (chunked: 1 program; strided: 1),
      in a 1-D grid of exactly the programs needed: 128 + 4 = 132, one per SM;
  then, on 'sir', programmatic dependent launch on the selector step's edges only: '+top' the top-k launched as a
      dependent of the page scores; '+top+scores' also the page scores as a dependent of the kernel before them
      (the previous layer's attention here). Run 12's data also holds '+att' (the attention as a dependent of the
      top-k) and '+both', from an option since removed (it lost).
Per variant, alternately over rounds: the reuse cycle (selector step + 3 reuse steps, per position) and dense SDPA.
Run on a GPU box:  OUT=/tmp python3 docs/benchmarks/probe_decode_layout.py   # writes $OUT/layout.json
"""
import json
import os

import torch

from probe_inputs import print_cycles
from sparsebench.kernels import bench_steps as bs
from sparsebench.timing import graph_ms

OUT = os.environ.get("OUT", "/tmp")
L, N = 8, 131072
SIR = {"strided": True, "short": True}
VARIANTS = {"4x3x8s": {}, "4x3x8si": {"strided": True}, "4x3x8sr": {"short": True}, "4x3x8sir": SIR,
            "4x3x0i": {"strided": True, "auto": True}, "sir+top": {**SIR, "top_pdl": True},
            "sir+top+scores": {**SIR, "top_pdl": True, "scores_pdl": True}}
res = {}
for B in (1, 8):
    sparse = [bs.build_decode_step("lserve", "triton", B, N, 32, 8, 128, torch.bfloat16) for _ in range(L)]
    dense = [bs.build_decode_step("full", "sdpa", B, N, 32, 8, 128, torch.bfloat16) for _ in range(L)]

    def opts(v):
        o = VARIANTS[v]
        bs.SELECT_OPTS = {"top_pdl": True} if o.get("top_pdl") else {}
        if o.get("scores_pdl"):
            bs.SELECT_OPTS["pdl"] = True
        return {"num_warps": 4, "num_stages": 3, "split_first": True, "strided": o.get("strided", False),
                "short": o.get("short", False),
                "pdl": "trigger" if o.get("scores_pdl") else False,
                **({} if o.get("auto") else {"pages_per_split": 8})}

    for v in VARIANTS:
        bs.PAGED_OPTS = opts(v)
        print(f"B{B} {v} check", sparse[0][2]["check"](), flush=True)
    cyc = {}
    for rnd in range(3):
        for v in VARIANTS:
            bs.PAGED_OPTS = opts(v)
            per = graph_ms(lambda i: [b[0](i) for b in sparse], 4, l2="evicted", per_step=True, replays=200)
            cyc.setdefault(v, []).append([t / L * 1e3 for t in per])
        d = graph_ms(lambda i: [x[0](i) for x in dense], l2="evicted", replays=60)
        cyc.setdefault("dense", []).append(d / L * 1e3)
    dm = print_cycles(f"B{B}", VARIANTS, cyc, sparse[0][2]["bytes"])
    res[f"B{B}"] = {"cycles_us": cyc, "bytes": sparse[0][2]["bytes"], "dense_us_median": dm}
    bs.PAGED_OPTS, bs.SELECT_OPTS = {}, {}
    del sparse, dense
    torch.cuda.empty_cache()
json.dump(res, open(f"{OUT}/layout.json", "w"), indent=1)
