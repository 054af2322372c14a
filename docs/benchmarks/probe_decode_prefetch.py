"""LServe decode at 128K with the paged launch's pages bulk-prefetched into L2 (run 15, docs/benchmarks/attention.md).
8 layers per graph, L2 evicted before each replay, batch 1 and 8; every variant on top of run 12's best config
4x3x8sirp (4 warps, 3 stages, 8 pages per split, split-first, interleaved pages, short streaming rows, the top-k as a
PDL dependent of the page scores):
  f          every attention launch first requests all its split's pages into L2 (prefetch="late");
  e:end      reuse steps: the launch is a PDL dependent of the previous layer's, prefetches before its grid-dependency
             wait and lets its successor launch at the end of its page loop; after a selection: as f;
  e:start    as e:end, the successor launched at the start (it prefetches during this launch's page reads);
  pdl        every attention launch a PDL dependent, no prefetch (waits at its start: run 7's form);
  e:end st2 / st4 / pps4 / pps16   e:end with 2 or 4 stages, 4 or 16 pages per split.
Per variant, alternately over rounds: the reuse cycle (selector step + 3 reuse steps, per position), and dense SDPA.
The prefetch lost everywhere and was removed; the kernel change it measured is data/run15_l2_prefetch_kernel.diff
(against 351062f). Run on a GPU box, in a checkout with it applied:
  git worktree add /tmp/r15 351062f && git -C /tmp/r15 apply $PWD/docs/benchmarks/data/run15_l2_prefetch_kernel.diff
  cd /tmp/r15 && pip install --no-deps -e . && OUT=/tmp python3 $OLDPWD/docs/benchmarks/probe_decode_prefetch.py
(writes $OUT/prefetch.json; reinstall the main checkout afterwards)
"""
import json
import os

import torch

from probe_inputs import print_cycles
from sparsebench.kernels import bench_steps as bs
from sparsebench.timing import graph_ms

OUT = os.environ.get("OUT", "/tmp")
L, N = 8, 131072
BASE = {"num_warps": 4, "num_stages": 3, "pages_per_split": 8, "split_first": True, "strided": True, "short": True}
VARIANTS = {"sirp": {}, "f": {"l2_prefetch": "late"}, "e:end": {"l2_prefetch": "early"},
            "e:start": {"l2_prefetch": "early", "pdl_trigger": "start"}, "pdl": {"pdl": True},
            "e:end st2": {"l2_prefetch": "early", "num_stages": 2},
            "e:end st4": {"l2_prefetch": "early", "num_stages": 4},
            "e:end pps4": {"l2_prefetch": "early", "pages_per_split": 4},
            "e:end pps16": {"l2_prefetch": "early", "pages_per_split": 16}}
ROUNDS = {1: 3, 8: 2}
res = {}
for B in (1, 8):
    sparse = [bs.build_decode_step("lserve", "triton", B, N, 32, 8, 128, torch.bfloat16) for _ in range(L)]
    dense = [bs.build_decode_step("full", "sdpa", B, N, 32, 8, 128, torch.bfloat16) for _ in range(L)]
    bs.SELECT_OPTS = {"top_pdl": True}
    checks = {}
    for v, o in VARIANTS.items():
        bs.PAGED_OPTS = {**BASE, **o}
        checks[v] = sparse[0][2]["check"]()
    print(f"B{B} checks", checks, flush=True)
    cyc = {}
    for rnd in range(ROUNDS[B]):
        for v, o in VARIANTS.items():
            bs.PAGED_OPTS = {**BASE, **o}
            per = graph_ms(lambda i: [b[0](i) for b in sparse], 4, l2="evicted", per_step=True, replays=200)
            cyc.setdefault(v, []).append([t / L * 1e3 for t in per])
        d = graph_ms(lambda i: [x[0](i) for x in dense], l2="evicted", replays=60)
        cyc.setdefault("dense", []).append(d / L * 1e3)
    dm = print_cycles(f"B{B}", VARIANTS, cyc, sparse[0][2]["bytes"], width=11)
    res[f"B{B}"] = {"cycles_us": cyc, "bytes": sparse[0][2]["bytes"], "dense_us_median": dm, "checks": checks}
    bs.PAGED_OPTS, bs.SELECT_OPTS = {}, {}
    sparse = dense = None
    torch.cuda.empty_cache()
    json.dump(res, open(f"{OUT}/prefetch.json", "w"), indent=1)
