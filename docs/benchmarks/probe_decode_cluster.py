"""LServe decode at 128K with the cluster kernel (config flag 'c', kernels/cuda_decode.py) against the Triton paged
kernel: the benchmark's method (8 layers per CUDA graph, L2 evicted before each replay, per layer), batch 1 and 8.
Each decode config (the benchmark's strings, `evals.latency_attention.decode_launch_opts`) is built, checked against
dense math, then timed over rounds in turn with dense SDPA: the reuse cycle per position (selector step + 3 reuse
steps) and the attention launch alone.
    OUT=/tmp python3 docs/benchmarks/probe_decode_cluster.py [B1 config ...]   # writes $OUT/cluster$TAG.json
Environment: BATCHES (default "1,8"); TRIGGER: where a PDL launch of the cluster kernel lets the next launch start
("start", the default, or "pages_done"); TAG: a suffix for the output file.
"""
import json
import os
import statistics
import sys

import torch

from probe_inputs import print_cycles
from sparsebench.evals.latency_attention import decode_launch_opts
from sparsebench.kernels import bench_steps as bs
from sparsebench.kernels import cuda_decode
from sparsebench.timing import graph_ms

OUT = os.environ.get("OUT", "/tmp")
L, N = 8, 131072
CONFIGS = {1: sys.argv[1:] or ["4x3x8sirpd", "4x3x8ipdc", "4x4x8ipdc", "4x2x8ipdc", "4x3x8ipc"],
           8: ["4x3x8sid", "4x3x8idc", "4x4x8idc"]}
ROUNDS = {1: 3, 8: 2}
cuda_decode.PDL_TRIGGER = os.environ.get("TRIGGER", "start")
res = {"trigger": cuda_decode.PDL_TRIGGER}
for B in [int(b) for b in os.environ.get("BATCHES", "1,8").split(",")]:
    dense = [bs.build_decode_step("full", "sdpa", B, N, 32, 8, 128, torch.bfloat16) for _ in range(L)]
    cyc, attn, checks, nbytes = {}, {}, {}, None
    for rnd in range(ROUNDS[B]):
        for conf in CONFIGS[B]:
            bs.PAGED_OPTS, bs.SELECT_OPTS = decode_launch_opts(conf)
            sparse = [bs.build_decode_step("lserve", "triton", B, N, 32, 8, 128, torch.bfloat16) for _ in range(L)]
            nbytes = sparse[0][2]["bytes"]
            if rnd == 0:
                checks[conf] = sparse[0][2]["check"]()
            per = graph_ms(lambda i: [b[0](i) for b in sparse], 4, l2="evicted", per_step=True, replays=200)
            cyc.setdefault(conf, []).append([t / L * 1e3 for t in per])
            a = graph_ms(lambda i: [b[2]["parts"]["attention"]() for b in sparse], l2="evicted", replays=200)
            attn.setdefault(conf, []).append(a / L * 1e3)
            sparse = None
            torch.cuda.empty_cache()
        d = graph_ms(lambda i: [x[0](i) for x in dense], l2="evicted", replays=60)
        cyc.setdefault("dense", []).append(d / L * 1e3)
    print(f"B{B} checks", checks, flush=True)
    dm = print_cycles(f"B{B}", CONFIGS[B], cyc, nbytes, width=12)
    for conf in CONFIGS[B]:
        print(f"B{B} {conf:12s} attention launch alone {statistics.median(attn[conf]):7.2f} us {attn[conf]}",
              flush=True)
    res[f"B{B}"] = {"cycles_us": cyc, "attention_us": attn, "bytes": nbytes, "dense_us_median": dm,
                    "checks": checks}
    bs.PAGED_OPTS, bs.SELECT_OPTS = {}, {}
    dense = None
    torch.cuda.empty_cache()
    json.dump(res, open(f"{OUT}/cluster{os.environ.get('TAG', '')}.json", "w"), indent=1)
