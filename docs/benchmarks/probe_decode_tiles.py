"""Decode launch-setting sweep behind run 7 (docs/benchmarks/attention.md, data/run7_decode_tile_sweep.json): LServe
attention alone and Quest's step at 128K, batch 1 and 8, over pages per tile (pages_per_iter), pipeline stages,
pages per split and launch order (split_first); then LServe's reuse cycle with the fastest. Run on a GPU box:
    OUT=/tmp python3 docs/benchmarks/probe_decode_tiles.py      # writes $OUT/sweep.json
"""
import os, json, itertools, torch
from sparsebench.kernels import bench_steps as bs
from sparsebench.timing import graph_ms
OUT = os.environ.get("OUT", "/tmp"); L = 8; res = {}
def t(fn, replays=60, steps=1, per_step=False):
    r = graph_ms(fn, steps, replays=replays, per_step=per_step, l2="flushed")
    return [x / L * 1e3 for x in r] if per_step else r / L * 1e3
for B in (1, 8):
    for pol in ("lserve", "quest"):
        built = [bs.build_decode_step(pol, "triton", B, 131072, 32, 8, 128, torch.bfloat16) for _ in range(L)]
        [b[0](0) for b in built]; torch.cuda.synchronize()
        rows = []
        if pol == "lserve":
            att = lambda i: [b[2]["parts"]["attention"]() for b in built]
        else:
            att = lambda i: [b[0](i) for b in built]
        for ppi, st, pps, sf in itertools.product((1, 2, 4) if pol == "lserve" else (1, 4, 8), (2, 3, 4), (0, 4, 8, 16), (False, True)):
            bs.PAGED_OPTS = {"num_stages": st, "pages_per_iter": ppi, "split_first": sf, **({"pages_per_split": pps} if pps else {})}
            try:
                rows.append((round(t(att), 2), ppi, st, pps, sf))
            except Exception as e:
                rows.append((1e9, ppi, st, pps, sf, repr(e)[:80]))
        rows.sort()
        res[f"{pol}_B{B}"] = rows
        print(pol, B, rows[:8], flush=True)
        best = rows[0]
        bs.PAGED_OPTS = {"num_stages": best[2], "pages_per_iter": best[1], "split_first": best[4], **({"pages_per_split": best[3]} if best[3] else {})}
        if pol == "lserve":
            pp = t(lambda i: [b[0](i) for b in built], replays=200, steps=4, per_step=True)
            res[f"{pol}_B{B}_cycle"] = pp
            print("cycle", [round(x, 1) for x in pp], "mean", round(sum(pp) / 4, 2), "bytes", built[0][2]["bytes"], flush=True)
        print("check", built[0][2]["check"](), flush=True)
        bs.PAGED_OPTS = {}
        del built; torch.cuda.empty_cache()
json.dump(res, open(f"{OUT}/sweep.json", "w"), indent=1)
