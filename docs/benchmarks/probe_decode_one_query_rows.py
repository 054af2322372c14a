"""LServe's retrieval rows at batch 1, 128K, one launch per layer (run 16, docs/benchmarks/attention.md): 16 rows of
one query x 64 random pages of 64 tokens out of their KV head's 2048 (33.6 MB per launch), 8 layers per CUDA graph,
L2 evicted before each replay, 3 rounds. The tensor-core kernel ("old") against the one-query kernel ("oq", in
data/run16_one_query_kernel.diff) by launch setting; "contig" / "sorted": consecutive / sorted page lists;
"ret32" / "ret128": 32 / 128 pages per row at 4 / 16 pages per program (the same 128 programs), which separates the
per-page cost from the fixed one; "lso": plus LServe's streaming heads as 16 one-query rows of 6 pages.
Run on a GPU box in a checkout with the diff applied:
  git apply docs/benchmarks/data/run16_one_query_kernel.diff && pip install --no-deps -e .
  OUT=/tmp python3 docs/benchmarks/probe_decode_one_query_rows.py [variant ...]   # writes $OUT/probe_oq.json
"""
import json
import os
import sys

import torch

from sparsebench.kernels.triton_decode import paged_attention
from sparsebench.timing import graph_ms

OUT = os.environ.get("OUT", "/tmp")
L, page, D = 8, 64, 128
g = torch.Generator(device="cuda").manual_seed(0)
RET_POOL = 4 * 2048
layers = []
for _ in range(L):
    kp = torch.randn(RET_POOL + 24, page, D, device="cuda", dtype=torch.bfloat16, generator=g)
    vp = torch.randn_like(kp)
    ret = torch.stack([torch.randperm(2048, device="cuda", generator=g)[:128] + (r // 4) * 2048 for r in range(16)])
    st = (RET_POOL + torch.arange(24, device="cuda")).view(4, 6)
    q = torch.randn(1, 32, 1, D, device="cuda", dtype=torch.bfloat16, generator=g)
    layers.append((kp, vp, ret, st, q))

def rows_of(kind, ret, st):
    """(page lists [1, R, NP], number of rows) of a variant's rows."""
    if kind in ("ret", "ret32", "ret128"):
        n = {"ret": 64, "ret32": 32, "ret128": 128}[kind]
        return ret[:, :n].reshape(1, 16, n).int(), 16
    if kind == "contig":  # each row 64 consecutive pages
        return (torch.arange(16, device="cuda")[:, None] * 64 + torch.arange(64, device="cuda"))[None].int(), 16
    if kind == "contig_sorted":  # the random pages, sorted
        return ret[:, :64].sort(-1).values[None].int(), 16
    pages = torch.full((1, 32, 64), -1, dtype=torch.int32, device="cuda")  # lserve_o: + 16 streaming rows
    pages[0, :16] = ret[:, :64].int()
    pages[0, 16:, :6] = st.repeat_interleave(4, 0).int()
    return pages, 32


def build(kind, **o):
    calls = []
    for kp, vp, ret, st, q in layers:
        pages, n_rows = rows_of(kind, ret, st)
        plen = torch.where(pages >= 0, page, 0).int()
        calls.append((q[:, :n_rows], kp, vp, pages, plen, torch.empty_like(q[:, :n_rows])))

    def step(i):
        for qq, kp, vp, pages, plen, out in calls:
            paged_attention(qq, kp, vp, pages, plen, 0.088, out=out, **o)
    return step, sum(int((c[4] > 0).sum()) for c in calls[:1]) * page * D * 2 * 2  # bytes per launch (unique pages)


V = {  # name: (rows, paged_attention options); "old" = the tensor-core kernel, "oq" = the one-query kernel
    "old ret 4x3x8 si": ("ret", dict(num_warps=4, num_stages=3, pages_per_split=8, split_first=True)),
    "old ret 4x3x8 si pdl": ("ret", dict(num_warps=4, num_stages=3, pages_per_split=8, split_first=True, pdl=True)),
    "old ret 4x3x8 si pdl nofuse": ("ret", dict(num_warps=4, num_stages=3, pages_per_split=8, split_first=True,
                                                pdl=True, fuse_combine=False)),
    "old contig 4x3x8 si": ("contig", dict(num_warps=4, num_stages=3, pages_per_split=8, split_first=True)),
    "old ret32 pps4": ("ret32", dict(num_warps=4, num_stages=3, pages_per_split=4, split_first=True)),
    "old ret128 pps16": ("ret128", dict(num_warps=4, num_stages=3, pages_per_split=16, split_first=True)),
    "oq ret pps8": ("ret", dict(one_query=True, pages_per_split=8, split_first=True)),
    "oq ret pps8 pdl early": ("ret", dict(one_query=True, pages_per_split=8, split_first=True, pdl=True,
                                          early_lists=True)),
    "oq ret pps4 pdl early": ("ret", dict(one_query=True, pages_per_split=4, split_first=True, pdl=True,
                                          early_lists=True)),
    "oq ret pps8 8w pdl early": ("ret", dict(one_query=True, pages_per_split=8, split_first=True, pdl=True,
                                             early_lists=True, num_warps=8)),
    "oq contig pps8": ("contig", dict(one_query=True, pages_per_split=8, split_first=True)),
    "oq sorted pps8": ("contig_sorted", dict(one_query=True, pages_per_split=8, split_first=True)),
    "oq ret32 pps4": ("ret32", dict(one_query=True, pages_per_split=4, split_first=True)),
    "oq ret128 pps16": ("ret128", dict(one_query=True, pages_per_split=16, split_first=True)),
    "oq lso pps8 r pdl early": ("lserve_o", dict(one_query=True, pages_per_split=8, split_first=True,
                                                 short_rows=(16, 6), pdl=True, early_lists=True)),
}
sel = sys.argv[1:] or list(V)
res = {}
for rnd in range(3):
    for name in sel:
        kind, o = V[name]
        step, nbytes = build(kind, **o)
        t = graph_ms(step, l2="evicted", replays=100) / L * 1e3
        res.setdefault(name, []).append(round(t, 2))
        res.setdefault("bytes", {})[name] = nbytes
for k, v in res.items():
    if k != "bytes":  # the median round; the streaming rows' repeats count once (4 x 6 unique pages)
        nb = res["bytes"][k] - (16 - 4) * 6 * page * D * 4 * (V[k][0] == "lserve_o")
        print(f"{k:28s} {sorted(v)[1]:7.2f} us  {v}  {nb / 1e6:5.1f} MB  {nb / sorted(v)[1] / 1e6:.2f} TB/s")
json.dump(res, open(f"{OUT}/probe_oq.json", "w"), indent=1)
