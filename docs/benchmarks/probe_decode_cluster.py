"""LServe decode at 128K with the cluster kernel (config flag 'c', kernels/cuda_decode.py) against the Triton paged
kernel: the benchmark's method (8 layers per CUDA graph, L2 evicted before each replay, per layer), batch 1 and 8.
Each decode config (the benchmark's strings, `evals.latency_attention.decode_launch_opts`) is built, checked against
dense math, then timed over rounds in turn with dense SDPA: the reuse cycle per position (selector step + 3 reuse
steps) and the attention launch alone.
    OUT=/tmp python3 docs/benchmarks/probe_decode_cluster.py [B1 config ...]   # writes $OUT/cluster$TAG.json
Environment: BATCHES (default "1,8"); TRIGGER: where a PDL launch of the cluster kernel lets the next launch start
("start", "pages_done" or "fetches_done"; default cuda_decode.PDL_TRIGGER); TAG: a suffix for the output file.
A config may carry "+key[=value]" launch options (see probe_inputs.lserve_cycles), e.g. 4x2x8ipfdec+trigger=start.
"""
import json
import os
import sys

from probe_inputs import lserve_cycles
from sparsebench.kernels import cuda_decode

OUT = os.environ.get("OUT", "/tmp")
CONFIGS = {1: sys.argv[1:] or ["4x3x8sirpd", "4x3x8ipdc", "4x4x8ipdc", "4x2x8ipdc", "4x3x8ipc"],
           8: ["4x3x8sid", "4x3x8idc", "4x4x8idc"]}
ROUNDS = {1: 3, 8: 2}
cuda_decode.PDL_TRIGGER = os.environ.get("TRIGGER", cuda_decode.PDL_TRIGGER)
res = {"trigger": cuda_decode.PDL_TRIGGER}
for B in [int(b) for b in os.environ.get("BATCHES", "1,8").split(",")]:
    res[f"B{B}"] = lserve_cycles(B, CONFIGS[B], ROUNDS[B], attention=True)
    json.dump(res, open(f"{OUT}/cluster{os.environ.get('TAG', '')}.json", "w"), indent=1)
