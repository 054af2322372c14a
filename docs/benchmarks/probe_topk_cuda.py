"""Run 19 probe (docs/benchmarks/attention.md): LServe's top-k alone at 128K, batch 1 and 8 (16 / 128 score rows of
2048 pages, 63 chosen + the last page), per layer (8 layers per CUDA graph, each its own scores, as the selector
step leaves them: L2 warm), the Triton kernel (bisection, 4 / 8 warps) against the CUDA one (kernels/cuda_topk.py,
1 / 3 / 7 thresholds counted per pass); the selections compared first. On a GPU box:
    OUT=/tmp python3 docs/benchmarks/probe_topk_cuda.py      # writes $OUT/topk_cuda.json"""
import json
import os

import torch

from probe_inputs import selector_cell as cell
from sparsebench.kernels import bench_steps as bs
from sparsebench.kernels.triton_decode import top_pages
from sparsebench.timing import graph_ms

OUT, L = os.environ.get("OUT", "/tmp"), 8
res = {}
for B in (1, 8):
    built = [bs.build_decode_step("lserve", "triton", B, 131072, 32, 8, 128, torch.bfloat16) for _ in range(L)]
    [b[0](0) for b in built]
    torch.cuda.synchronize()
    args = [(cell(b, "scores"), cell(b, "n_valid"), cell(b, "ret_base").reshape(-1), cell(b, "n_sel"),
             cell(b, "ids_buf"), cell(b, "R") * cell(b, "G"), cell(b, "RO")) for b in built]
    ways = {"triton_w4": dict(num_warps=4), "triton_w8": dict(num_warps=8)}
    ways.update({f"cuda_c{c}": dict(impl="cuda", candidates=c) for c in (1, 3, 7)})
    r = {}
    want = None
    for name, kw in ways.items():
        sc, nv, base, k, ids, rpb, orpb = args[0]
        out = torch.full_like(ids, -1)
        top_pages(sc, nv, base, k, out, rpb, orpb, **kw)
        want = out if want is None else want
        r[f"same_{name}"] = bool(torch.equal(out, want))
        r[name] = graph_ms(lambda i, kw=kw: [top_pages(a[0], a[1], a[2], a[3], a[4], a[5], a[6], **kw) for a in args],
                           l2="warm", replays=300) / L * 1e3
    print(f"B{B}", {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
    res[f"B{B}"] = r
    del built
    torch.cuda.empty_cache()
json.dump(res, open(f"{OUT}/topk_cuda.json", "w"), indent=1)
