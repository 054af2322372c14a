"""Decode fixed-cost probe behind run 7 (docs/benchmarks/attention.md, data/run7_decode_fixed_cost.json): per layer
(8 layers per CUDA graph, L2 flushed), trivial Triton kernels (the launch floor), LServe's selector split into
page scores and top-k, and the paged attention with the retrieval rows' / all page lists emptied, by pages per
split, fused or separate combine, and launch config, at 128K, batch 1 and 8. Run on a GPU box:
    OUT=/tmp python3 docs/benchmarks/probe_decode_fixed_cost.py      # writes $OUT/decomp.json
Run 7's file came from this script with the page ids preloaded per split (before pages_per_iter existed)."""
import os, json, torch, triton, triton.language as tl
from sparsebench.kernels import bench_steps as bs
from sparsebench.kernels import triton_decode as td
from sparsebench.timing import graph_ms
OUT = os.environ.get("OUT", "/tmp"); L = 8; res = {}
def t(fn, replays=100):
    return graph_ms(fn, 1, replays=replays, l2="flushed") / L * 1e3
@triton.jit
def _triv(X):
    tl.store(X + tl.program_id(0), 1.0)
@triton.jit
def _triv_load(X, Y):
    v = tl.load(X + tl.program_id(0))
    tl.store(Y + tl.program_id(0), v + 1.0)
xs = [torch.zeros(4096, device="cuda") for _ in range(L)]
ys = [torch.zeros(4096, device="cuda") for _ in range(L)]
for grid in (1, 256, 1024):
    res[f"trivial_store_{grid}"] = t(lambda i: [_triv[(grid,)](x) for x in xs])
    res[f"trivial_load_store_{grid}"] = t(lambda i: [_triv_load[(grid,)](x, y) for x, y in zip(xs, ys)])
    res[f"trivial_load_store_pdl_{grid}"] = t(lambda i: [_triv_load[(grid,)](x, y, launch_pdl=True) for x, y in zip(xs, ys)])
print({k: round(v, 2) for k, v in res.items()}, flush=True)
for B in (1, 8):
    built = [bs.build_decode_step("lserve", "triton", B, 131072, 32, 8, 128, torch.bfloat16) for _ in range(L)]
    [b[0](0) for b in built]; torch.cuda.synchronize()
    fn0 = built[0][2]["parts"]["attention"]
    cell = lambda b, name: b[2]["parts"]["attention"].__closure__[fn0.__code__.co_freevars.index(name)].cell_contents
    sfn = built[0][2]["parts"]["selector"]
    scell = lambda b, name: b[2]["parts"]["selector"].__closure__[sfn.__code__.co_freevars.index(name)].cell_contents
    # selector parts
    def scores_only(b):
        td.page_scores_triton(scell(b, "q_ret"), scell(b, "ret").kmin, scell(b, "ret").kmax, scell(b, "lp_rows"), scell(b, "ret").lpp, "none", 8, scell(b, "scores"), 2)
    def topk_only(b):
        sc = scell(b, "scores"); R, G = scell(b, "R"), scell(b, "G")
        td.top_pages(sc.view(-1, sc.shape[-1]), scell(b, "n_valid"), scell(b, "ret_base").reshape(-1), scell(b, "n_sel"), scell(b, "ids_buf"), R * G, 2 * R * G, num_warps=8)
    r = {}
    r["selector"] = t(lambda i: [b[2]["parts"]["selector"]() for b in built])
    r["scores_only"] = t(lambda i: [scores_only(b) for b in built])
    r["topk_only"] = t(lambda i: [topk_only(b) for b in built])
    for tw in (4, 16):
        r[f"topk_only_w{tw}"] = t(lambda i: [td.top_pages(scell(b, "scores").view(-1, scell(b, "scores").shape[-1]), scell(b, "n_valid"), scell(b, "ret_base").reshape(-1), scell(b, "n_sel"), scell(b, "ids_buf"), scell(b, "R") * scell(b, "G"), 2 * scell(b, "R") * scell(b, "G"), num_warps=tw) for b in built])
    r["attention"] = t(lambda i: [b[2]["parts"]["attention"]() for b in built])
    ids = [cell(b, "ids_buf") for b in built]; keep = [x.clone() for x in ids]
    for x in ids: x[:, : x.shape[1] // 2] = -1
    r["attn_empty_ret"] = t(lambda i: [b[2]["parts"]["attention"]() for b in built])
    for x in ids: x.fill_(-1)
    r["attn_all_empty"] = t(lambda i: [b[2]["parts"]["attention"]() for b in built])
    for pps in (64, 2):
        bs.PAGED_OPTS = {"pages_per_split": pps}
        r[f"attn_all_empty_pps{pps}"] = t(lambda i: [b[2]["parts"]["attention"]() for b in built])
    bs.PAGED_OPTS = {"fuse_combine": False}
    r["attn_all_empty_unfused"] = t(lambda i: [b[2]["parts"]["attention"]() for b in built])
    bs.PAGED_OPTS = {}
    for x, k in zip(ids, keep): x.copy_(k)
    # streaming only rows, 6 pages, with pps 2 (3 splits)
    for x in ids: x[:, : x.shape[1] // 2] = -1
    for pps in (2, 3, 6):
        bs.PAGED_OPTS = {"pages_per_split": pps}
        r[f"attn_empty_ret_pps{pps}"] = t(lambda i: [b[2]["parts"]["attention"]() for b in built])
    bs.PAGED_OPTS = {}
    for x, k in zip(ids, keep): x.copy_(k)
    for st, w in ((2, 4), (3, 4), (3, 8), (2, 8)):
        for pps in (0, 4, 6):
            bs.PAGED_OPTS = {"num_stages": st, "num_warps": w, **({"pages_per_split": pps} if pps else {})}
            try:
                r[f"attn_{w}x{st}x{pps}"] = t(lambda i: [b[2]["parts"]["attention"]() for b in built], 60)
            except Exception as e:
                r[f"attn_{w}x{st}x{pps}"] = repr(e)[:80]
    bs.PAGED_OPTS = {}
    res[f"B{B}"] = r
    print(f"B{B}", {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
    del built; torch.cuda.empty_cache()
json.dump(res, open(f"{OUT}/decomp.json", "w"), indent=1)
