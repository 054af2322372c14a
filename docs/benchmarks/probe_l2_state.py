"""Which L2 state a decode replay starts from, and what it costs (run 12, docs/benchmarks/attention.md).

Modes (sparsebench.timing.L2_MODES): `flushed` zero-fills a 256 MB buffer before each replay (do_bench's way), which
leaves L2 full of dirty lines that the replay's own reads evict, i.e. ~50 MB written back to DRAM inside the timed
region; `evicted` reads the buffer instead (L2 holds clean, unrelated lines, as after the other layers' KV reads);
`warm` does nothing. Measured alternately, 3 rounds:
  1. a 32 MB read (`x.sum()`) per mode: warm should be served from L2, evicted / flushed from DRAM;
  2. LServe's decode cycle at 128K (8 layers per graph, budget 4096, pages 64/16, reuse 4) and dense SDPA decode,
     batch 1, per mode; then batch 8 once per mode.
Run on a GPU box:  OUT=/tmp python3 docs/benchmarks/probe_l2_state.py      # writes $OUT/l2_state.json
"""
import json
import os
import statistics

import torch

from sparsebench.kernels import bench_steps as bs
from sparsebench.timing import L2_MODES, graph_ms

OUT = os.environ.get("OUT", "/tmp")
L, N = 8, 131072
res = {"read_32mb_us": {m: [] for m in L2_MODES}}
x = torch.randn(16 << 20, device="cuda", dtype=torch.bfloat16)
for _ in range(3):
    for mode in L2_MODES:
        res["read_32mb_us"][mode].append(graph_ms(lambda i: x.sum(), l2=mode, replays=100) * 1e3)
print("32 MB read, us:", {m: [round(v, 1) for v in t] for m, t in res["read_32mb_us"].items()}, flush=True)
del x


def cycle(built, mode, replays):
    per = graph_ms(lambda i: [b[0](i) for b in built], built[0][1], l2=mode, per_step=True, replays=replays)
    return [t / L * 1e3 for t in per]


for B, rounds in ((1, 3), (8, 1)):
    bs.PAGED_OPTS = {"num_warps": 4, "num_stages": 3, "split_first": True, "pages_per_split": 8} if B == 1 else {}
    sparse = [bs.build_decode_step("lserve", "triton", B, N, 32, 8, 128, torch.bfloat16) for _ in range(L)]
    dense = [bs.build_decode_step("full", "sdpa", B, N, 32, 8, 128, torch.bfloat16) for _ in range(L)]
    print("check", sparse[0][2]["check"](), dense[0][2]["check"](), flush=True)
    rows = {m: {"select_us": [], "reuse_us": [], "mean_us": [], "dense_us": [], "attention_us": []} for m in L2_MODES}
    for _ in range(rounds):
        for mode in L2_MODES:
            per = cycle(sparse, mode, 200)
            d = cycle(dense, mode, 60)[0]
            att = graph_ms(lambda i: [b[2]["parts"]["attention"]() for b in sparse], l2=mode, replays=100) / L * 1e3
            r = rows[mode]
            r["select_us"].append(per[0])
            r["reuse_us"].append(statistics.mean(per[1:]))
            r["mean_us"].append(statistics.mean(per))
            r["dense_us"].append(d)
            r["attention_us"].append(att)
            print(f"B{B} {mode:8s} select {per[0]:6.2f} reuse {statistics.mean(per[1:]):6.2f} "
                  f"mean {statistics.mean(per):6.2f} attention {att:6.2f} dense {d:7.2f} "
                  f"speedup {d / statistics.mean(per):5.2f}x  {sparse[0][2]['bytes'] / statistics.mean(per) / 1e6:.2f} TB/s",
                  flush=True)
    res[f"B{B}"] = rows
    res[f"B{B}_bytes"] = sparse[0][2]["bytes"]
    del sparse, dense
    torch.cuda.empty_cache()
bs.PAGED_OPTS = {}
json.dump(res, open(f"{OUT}/l2_state.json", "w"), indent=1)
print("\nmode      B  mean_us  dense_us  speedup (median over rounds)")
for B in (1, 8):
    for mode in L2_MODES:
        r = res[f"B{B}"][mode]
        mu, du = statistics.median(r["mean_us"]), statistics.median(r["dense_us"])
        print(f"{mode:8s} {B:2d} {mu:8.2f} {du:9.2f} {du / mu:8.2f}x")
