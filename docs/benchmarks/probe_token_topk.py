"""The token top-k (kernels/token_topk.py) at ALISA's sizes (H100): the whole select per launch variant (digit
bits per pass, columns per program, warps) and each of its launches alone, 8 selects per CUDA graph (as 8 layers),
L2 evicted before each replay, per select; torch.topk on the same scores beside it. Writes
$OUT/probe_token_topk.json.
    cd docs/benchmarks && OUT=/tmp python3 probe_token_topk.py
"""
import json
import os

import torch

from sparsebench.kernels import token_topk
from sparsebench.timing import graph_ms

L = 8
CELLS = [(1, 7373, 819), (1, 117965, 13107), (8, 117965, 13107)]  # ALISA r = 0.2 at 8K and 128K: N - k, k
VARIANTS = [dict(digit=d, block=b, warps=w) for d in (8, 4) for b in (None, 1024, 2048, 4096, 8192) for w in (4, 8)]
res = {}
for B, n, k in CELLS:
    Ss = [torch.rand(B, n, device="cuda") for _ in range(L)]
    outs = [torch.empty(B, k, dtype=torch.int32, device="cuda") for _ in range(L)]
    row = {"torch_topk_unsorted_us": graph_ms(lambda i: [S.topk(k, sorted=False) for S in Ss]) / L * 1e3}
    for v in VARIANTS:
        name = f"d{v['digit']}_b{v['block']}_w{v['warps']}"
        try:
            row[name] = graph_ms(lambda i: [token_topk.top_tokens(S, k, o, **v) for S, o in zip(Ss, outs)]) / L * 1e3
        except Exception as e:  # noqa: BLE001 (a variant that does not compile is recorded)
            row[name] = f"failed: {e}"[:100]
    best = min((x for x in row.items() if not isinstance(x[1], str) and x[0].startswith("d")), key=lambda x: x[1])
    d, b, w = best[0][1:].split("_")
    opts = dict(digit=int(d), block=None if b == "bNone" else int(b[1:]), warps=int(w[1:]))
    ls = [token_topk.launches(S, k, o, **opts) for S, o in zip(Ss, outs)]
    row["best"] = best[0]
    row["launches_us"] = [graph_ms(lambda i, j=j: [x[j]() for x in ls]) / L * 1e3 for j in range(len(ls[0]))]
    res[f"B{B}_n{n}_k{k}"] = row
    print(f"B{B} n={n} k={k}: torch.topk unsorted {row['torch_topk_unsorted_us']:.1f} us; best {best[0]} "
          f"{best[1]:.1f} us; its launches {[round(x, 1) for x in row['launches_us']]}", flush=True)
    print("   " + "  ".join(f"{a}={c if isinstance(c, str) else round(c, 1)}" for a, c in row.items()
                            if a.startswith("d")), flush=True)
json.dump(res, open(os.path.join(os.environ.get("OUT", "."), "probe_token_topk.json"), "w"), indent=1)
