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

from probe_inputs import lserve_cycles

OUT = os.environ.get("OUT", "/tmp")
CONFIGS = sys.argv[1:] or ["4x3x8sirpd", "4x1x8sirpdo", "4x1x4sirpdo", "4x1x2sirpdo", "8x1x4sirpdo", "8x1x8sirpdo"]
ROUNDS = {1: 3, 8: 2}
res = {}
for B in (1, 8):
    res[f"B{B}"] = lserve_cycles(B, CONFIGS, ROUNDS[B])
    json.dump(res, open(f"{OUT}/one_query.json", "w"), indent=1)
