"""LServe decode at 128K through the one-query paged kernel (config flag 'o', run 16, docs/benchmarks/attention.md):
the benchmark's method (8 layers per CUDA graph, L2 evicted before each replay, per layer), batch 1 and 8. Each
decode config (the benchmark's strings, `evals.latency_attention.decode_launch_opts`) is built, checked against
dense math, then timed over rounds in turn with dense SDPA: the reuse cycle per position (selector step + 3 reuse
steps). The kernel and the 'o' flag are not kept: run on a GPU box in a checkout with their diff applied:
    git apply docs/benchmarks/data/run16_one_query_kernel.diff && pip install --no-deps -e .
    OUT=/tmp python3 docs/benchmarks/probe_decode_one_query.py [config ...]   # writes $OUT/one_query.json
"""
import json
import os
import sys

import torch

from probe_inputs import print_cycles
from sparsebench.evals.latency_attention import decode_launch_opts
from sparsebench.kernels import bench_steps as bs
from sparsebench.timing import graph_ms

OUT = os.environ.get("OUT", "/tmp")
L, N = 8, 131072
CONFIGS = sys.argv[1:] or ["4x3x8sirpd", "4x1x8sirpdo", "4x1x4sirpdo", "4x1x2sirpdo", "8x1x4sirpdo", "8x1x8sirpdo"]
ROUNDS = {1: 3, 8: 2}
res = {}
for B in (1, 8):
    dense = [bs.build_decode_step("full", "sdpa", B, N, 32, 8, 128, torch.bfloat16) for _ in range(L)]
    cyc, checks, nbytes = {}, {}, None
    for rnd in range(ROUNDS[B]):
        for conf in CONFIGS:
            bs.PAGED_OPTS, bs.SELECT_OPTS = decode_launch_opts(conf)
            sparse = [bs.build_decode_step("lserve", "triton", B, N, 32, 8, 128, torch.bfloat16) for _ in range(L)]
            nbytes = sparse[0][2]["bytes"]
            if rnd == 0:
                checks[conf] = sparse[0][2]["check"]()
            per = graph_ms(lambda i: [b[0](i) for b in sparse], 4, l2="evicted", per_step=True, replays=200)
            cyc.setdefault(conf, []).append([t / L * 1e3 for t in per])
            sparse = None
            torch.cuda.empty_cache()
        d = graph_ms(lambda i: [x[0](i) for x in dense], l2="evicted", replays=60)
        cyc.setdefault("dense", []).append(d / L * 1e3)
    print(f"B{B} checks", checks, flush=True)
    dm = print_cycles(f"B{B}", CONFIGS, cyc, nbytes, width=12)
    res[f"B{B}"] = {"cycles_us": cyc, "bytes": nbytes, "dense_us_median": dm, "checks": checks}
    bs.PAGED_OPTS, bs.SELECT_OPTS = {}, {}
    dense = None
    torch.cuda.empty_cache()
    json.dump(res, open(f"{OUT}/one_query.json", "w"), indent=1)
