"""Where LServe's batch-1 decode attention spends its time (run 12, docs/benchmarks/attention.md): the attention launch
alone at 128K, 8 layers per graph, L2 evicted (clean) before each replay, for budgets of 1024-8192 tokens (16-128
pages per retrieval query head), so time = fixed + bytes / marginal rate; the same with 1 layer and L2 warm (34 MB of
pages then fit in L2: what is left without DRAM); and the attention with every retrieval page list empty.
Run on a GPU box:  OUT=/tmp python3 docs/benchmarks/probe_decode_anatomy.py      # writes $OUT/anatomy.json
"""
import json
import os
import types

import torch

from sparsebench.kernels import bench_steps as bs
from sparsebench.timing import graph_ms

OUT = os.environ.get("OUT", "/tmp")
N = 131072
_defaults = bs.defaults
res = {}


def with_budget(budget):
    def d(policy):
        p = _defaults(policy)
        if policy == "lserve":
            p = types.SimpleNamespace(**{**vars(p), "budget": budget})
        return p
    return d


def attention_us(built, layers, l2):
    return graph_ms(lambda i: [b[2]["parts"]["attention"]() for b in built], l2=l2, replays=100) / layers * 1e3


confs = {"4x3x8s": {"num_warps": 4, "num_stages": 3, "split_first": True, "pages_per_split": 8},
         "4x3x0": {"num_warps": 4, "num_stages": 3}}
for name, opts in confs.items():
    bs.PAGED_OPTS = opts
    for budget in (1024, 2048, 4096, 8192):
        bs.defaults = with_budget(budget)
        built = [bs.build_decode_step("lserve", "triton", 1, N, 32, 8, 128, torch.bfloat16) for _ in range(8)]
        built[0][2]["parts"]["selector"]()
        [b[2]["parts"]["selector"]() for b in built]
        torch.cuda.synchronize()
        nbytes = built[0][2]["bytes"]
        attn_bytes = nbytes - 4 * 2048 * 4 * 2 * 128 * 2 / 4  # minus the amortised summaries
        r = {"attn_bytes": attn_bytes, "evicted_L8": attention_us(built, 8, "evicted"),
             "warm_L1": attention_us(built[:1], 1, "warm"), "evicted_L1": attention_us(built[:1], 1, "evicted")}
        fn = built[0][2]["parts"]["attention"]
        ids = [b[2]["parts"]["attention"].__closure__[fn.__code__.co_freevars.index("ids_buf")].cell_contents
               for b in built]
        for x in ids:
            x[:, :16] = -1  # the 16 retrieval rows read nothing
        r["empty_retrieval_evicted_L8"] = attention_us(built, 8, "evicted")
        res[f"{name}/budget{budget}"] = r
        print(name, budget, {k: round(v, 2) if k != "attn_bytes" else int(v) for k, v in r.items()},
              f"{attn_bytes / r['evicted_L8'] / 1e6:.2f} TB/s", flush=True)
        del built
        torch.cuda.empty_cache()
bs.defaults = _defaults
bs.PAGED_OPTS = {}
json.dump(res, open(f"{OUT}/anatomy.json", "w"), indent=1)
print("\nconfig   budget  attn_MB  evicted_L8_us  warm_L1_us  empty_us  marginal TB/s vs previous budget")
prev = None
for k, r in res.items():
    name, b = k.split("/")
    m = ""
    if prev and prev[0] == name:
        m = f"{(r['attn_bytes'] - prev[1]['attn_bytes']) / (r['evicted_L8'] - prev[1]['evicted_L8']) / 1e6:.2f}"
    print(f"{name:8s} {b:>10s} {r['attn_bytes'] / 1e6:7.1f} {r['evicted_L8']:13.2f} {r['warm_L1']:11.2f} "
          f"{r['empty_retrieval_evicted_L8']:9.2f}  {m}")
    prev = (name, r)
