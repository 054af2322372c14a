"""LServe's retrieval rows at batch 1, 128K, through the cluster kernel alone (run 17, docs/benchmarks/attention.md):
16 rows of one query x 32 / 64 / 128 random pages of 64 tokens out of their KV head's 2048, always 8 splits per row
(4 / 8 / 16 pages per CTA), and the same launch with every list empty; 8 layers per CUDA graph, L2 evicted before
each replay, 3 rounds; with and without PDL between the layers. The time against pages per CTA separates what a
launch pays whatever it reads from what each page costs.
    OUT=/tmp python3 docs/benchmarks/probe_decode_cluster_rows.py   # writes $OUT/cluster_rows.json
"""
import json
import os
import statistics

import torch

from sparsebench.kernels.triton_decode import paged_attention
from sparsebench.timing import graph_ms

OUT = os.environ.get("OUT", "/tmp")
L, page, D = 8, 64, 128
g = torch.Generator(device="cuda").manual_seed(0)
layers = []
for _ in range(L):
    kp = torch.randn(4 * 2048, page, D, device="cuda", dtype=torch.bfloat16, generator=g)
    vp = torch.randn_like(kp)
    ret = torch.stack([torch.randperm(2048, device="cuda", generator=g)[:128] + (r // 4) * 2048 for r in range(16)])
    q = torch.randn(1, 16, 1, D, device="cuda", dtype=torch.bfloat16, generator=g)
    layers.append((kp, vp, ret, q))


def build(n_pages: int, pdl: bool, impl: str):
    calls = []
    for kp, vp, ret, q in layers:
        pages = ret[:, :max(n_pages, 8)].reshape(1, 16, -1).int().contiguous()
        if n_pages == 0:
            pages.fill_(-1)
        plen = torch.where(pages >= 0, page, 0).int()
        calls.append((q, kp, vp, pages, plen, torch.empty_like(q)))
    opts = {"pages_per_split": max(n_pages, 8) // 8, "pdl": pdl, "impl": impl, "num_stages": 2}
    if impl == "triton":
        opts.update(num_stages=3, split_first=True)

    def step(i):
        for qq, kp_, vp_, pages, plen, out in calls:
            paged_attention(qq, kp_, vp_, pages, plen, 0.088, out=out, **opts)
    return step


res = {}
variants = [(n, pdl, impl) for impl in ("cuda_cluster", "triton") for pdl in (False, True) for n in (0, 32, 64, 128)]
for rnd in range(3):
    for n, pdl, impl in variants:
        key = f"{impl} pages/row {n} {'pdl' if pdl else 'plain'}"
        res.setdefault(key, []).append(graph_ms(build(n, pdl, impl), l2="evicted", replays=200) / L * 1e3)
out = {k: {"us": v, "median": statistics.median(v)} for k, v in res.items()}
json.dump(out, open(f"{OUT}/cluster_rows.json", "w"), indent=1)
for k, v in out.items():
    n = int(k.split()[2])
    mb = 16 * n * page * D * 2 * 2 / 1e6
    print(f"{k:40s} {v['median']:7.2f} us  {mb:5.1f} MB  {mb / v['median']:5.2f} TB/s", flush=True)
