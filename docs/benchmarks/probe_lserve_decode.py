"""LServe decode probe behind run 6 (docs/benchmarks/attention.md): at 128K, batch 1 and 8, 8 layers per graph, L2
flushed, it checks the selector and the fused combine, then sweeps the paged kernel's launch configs (fused and
separate combine), the selector's kernels (scores block / warps, top-k warps), times the reuse cycle and dense SDPA,
and the attention launch with the retrieval rows' page lists emptied (the fixed cost). Run on a GPU box:
    OUT=/tmp python3 docs/benchmarks/probe_lserve_decode.py      # writes $OUT/probe2.json
Run 6's figures for a one-launch selector (scores + top-k, later removed) came from this probe at that commit."""
import itertools, json, os, sys, time
import torch
from sparsebench.timing import graph_ms
from sparsebench.kernels import bench_steps as bs
from sparsebench.kernels import triton_decode as td

OUT = os.environ.get("OUT", "/tmp")
res = {}
t0 = time.time()
# the selector at the benchmark's size vs torch.topk
g = torch.Generator(device="cuda").manual_seed(0)
B, R, G, D, lpp, nphys = 1, 4, 4, 128, 4, 2048
kmin = torch.randn(B * R * nphys * lpp, D, device="cuda", dtype=torch.bfloat16, generator=g)
kmax = kmin + torch.rand(B * R * nphys * lpp, D, device="cuda", dtype=torch.bfloat16, generator=g)
q = torch.randn(B, R, G, D, device="cuda", dtype=torch.bfloat16, generator=g)
lp = torch.arange(B * R * nphys * lpp, device="cuda", dtype=torch.int32).view(B, R, -1)
nv = torch.full((B * R * G,), nphys, device="cuda"); base = torch.arange(B * R * G, device="cuda") * 5000
bad = 0
for bp, w in itertools.product((8, 16, 32), (2, 4, 8)):
    out = torch.full((B * R * G, 64), -1, dtype=torch.int32, device="cuda")
    sc = torch.empty(B * R * G, nphys, device="cuda")
    for rep in range(20):
        td.select_pages(q, kmin, kmax, lp, lpp, "none", nv, base, 64, out, block_p=bp, num_warps=w, scores=sc)
    ref = td.page_scores_triton(q.float(), kmin.float(), kmax.float(), lp, lpp, "none").view(-1, nphys)
    assert torch.allclose(sc, ref, rtol=1e-4, atol=1e-3), (bp, w)
    for r in range(B * R * G):
        want = sc[r, :-1].topk(63).indices.sort().values + base[r]
        if out[r, :63].tolist() != want.tolist() or int(out[r, 63]) != int(base[r]) + nphys - 1:
            bad += 1
print("select_pages check: bad rows", bad, flush=True)
# fused paged attention vs separate combine, random
kp = torch.randn(4096, 64, 128, device="cuda", dtype=torch.bfloat16, generator=g)
vp = torch.randn(4096, 64, 128, device="cuda", dtype=torch.bfloat16, generator=g)
qq = torch.randn(2, 32, 1, 128, device="cuda", dtype=torch.bfloat16, generator=g)
pages = torch.randint(0, 4096, (2, 32, 64), device="cuda", generator=g).int()
plen = torch.full_like(pages, 64)
for pps in (1, 2, 4, 8):
    a = td.paged_attention(qq, kp, vp, pages, plen, 0.088, pages_per_split=pps)
    for _ in range(50):
        b = td.paged_attention(qq, kp, vp, pages, plen, 0.088, pages_per_split=pps)
        assert torch.equal(a, b), pps
    c = td.paged_attention(qq, kp, vp, pages, plen, 0.088, pages_per_split=pps, fuse_combine=False)
    assert (a.float() - c.float()).abs().max().item() < 1e-2, pps
print("fused combine check ok", flush=True)

def per_pos(step, steps, layers=8, replays=100):
    return [t / layers * 1e3 for t in graph_ms(step, steps, per_step=True, replays=replays, l2="flushed")]

def t_part(built, name, replays=60):
    return graph_ms(lambda i: [b[2]["parts"][name]() for b in built], replays=replays, l2="flushed") / 8 * 1e3

for B in (1, 8):
    N = 131072
    built = [bs.build_decode_step("lserve", "triton", B, N, 32, 8, 128, torch.bfloat16) for _ in range(8)]
    step = lambda i: [b[0](i) for b in built]
    steps = built[0][1]
    nbytes = built[0][2]["bytes"]
    step(0); torch.cuda.synchronize()  # the selector fills the page lists before any attention is timed
    rows = []
    for w, st, pps in itertools.product((4, 8), (2, 3, 4), (0, 2, 4, 16)):
        bs.PAGED_OPTS = {"num_warps": w, "num_stages": st, "fuse_combine": True, **({"pages_per_split": pps} if pps else {})}
        try:
            rows.append((t_part(built, "attention"), w, st, pps, True))
        except Exception as e:
            print("fail", w, st, pps, repr(e)[:100])
    rows.sort()
    for t, w, st, pps, _ in rows[:4]:
        bs.PAGED_OPTS = {"num_warps": w, "num_stages": st, "fuse_combine": False, **({"pages_per_split": pps} if pps else {})}
        rows.append((t_part(built, "attention"), w, st, pps, False))
    rows.sort()
    print(f"B{B} attention alone (us): " + "; ".join(f"{w}x{st}x{pps}{'F' if fc else 'S'} {t:.1f}" for t, w, st, pps, fc in rows[:10]), flush=True)
    res[f"B{B}_attention"] = rows
    best = rows[0]
    bs.PAGED_OPTS = {"num_warps": best[1], "num_stages": best[2], "fuse_combine": best[4], **({"pages_per_split": best[3]} if best[3] else {})}
    srows = []
    for bp, w in itertools.product((8, 16, 32, 64), (2, 4, 8)):
        bs.SELECT_OPTS = {"block_p": bp, "num_warps": w, "top_warps": 4}
        try:
            srows.append((t_part(built, "selector"), False, bp, w, 4))
        except Exception as e:
            print("fail sel", bp, w, repr(e)[:100])
    srows.sort()
    bf = [r for r in srows if not r[1]][0]
    for tw in (1, 2, 8, 16):
        bs.SELECT_OPTS = {"block_p": bf[2], "num_warps": bf[3], "top_warps": tw}
        srows.append((t_part(built, "selector"), False, bf[2], bf[3], tw))
    srows.sort()
    print(f"B{B} selector alone (us): " + "; ".join(f"{'F' if f else 'S'} bp{bp}/w{w}/tw{tw} {t:.1f}" for t, f, bp, w, tw in srows[:8]), flush=True)
    print(f"B{B} selector two-launch: " + "; ".join(f"bp{bp}/w{w}/tw{tw} {t:.1f}" for t, f, bp, w, tw in srows if not f)[:300], flush=True)
    res[f"B{B}_selector"] = srows
    b0 = srows[0]
    bs.SELECT_OPTS = {"block_p": b0[2], "num_warps": b0[3], "top_warps": b0[4]}
    pp = per_pos(step, steps, replays=200)
    mean = sum(pp) / len(pp)
    print(f"B{B} 128K cycle: per position {[round(x, 1) for x in pp]} mean {mean:.1f} us, {nbytes / mean / 1e6:.2f} TB/s", flush=True)
    res[f"B{B}_cycle"] = {"per_pos": pp, "mean_us": mean, "bytes": nbytes, "paged": bs.PAGED_OPTS, "select": bs.SELECT_OPTS}
    if B == 1:
        dense = [bs.build_decode_step("full", "sdpa", B, N, 32, 8, 128, torch.bfloat16) for _ in range(8)]
        dm = per_pos(lambda i: [d[0](i) for d in dense], 1, replays=100)[0]
        print(f"B{B} dense sdpa {dm:.1f} us -> speedup {dm / mean:.2f}x", flush=True)
        res[f"B{B}_dense_us"] = dm
        del dense
        def _ids(fn):
            return fn.__closure__[fn.__code__.co_freevars.index("ids_buf")].cell_contents
        ids = [_ids(b[2]["parts"]["attention"]) for b in built]
        keep = [x.clone() for x in ids]
        for x in ids:
            x[:, : x.shape[1] // 2] = -1  # retrieval rows read nothing
        empty = t_part(built, "attention", replays=100)
        for x, k in zip(ids, keep):
            x.copy_(k)
        print(f"B1 attention with the retrieval rows' page lists empty: {empty:.1f} us (fixed cost)", flush=True)
        res["B1_attention_empty_retrieval"] = empty
    bs.PAGED_OPTS = {}; bs.SELECT_OPTS = {}
    del built; torch.cuda.empty_cache()
json.dump(res, open(f"{OUT}/probe2.json", "w"), indent=1)
print("elapsed", round(time.time() - t0), "s")
