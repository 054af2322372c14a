"""Decode probe behind run 7 (docs/benchmarks/attention.md): the split-KV combine that loads a row's partials at once,
and programmatic dependent launch (PDL) between the decode kernels, at the benchmark's method (8 layers per CUDA
graph, L2 flushed before each replay, medians, per layer). Checks first that graphs replayed with PDL give the same
bits as eager launches without it, then times, per batch 1 / 8 at 128K: LServe's attention alone (launch configs),
the selector alone, the reuse cycle per position, dense SDPA, the attention with the retrieval rows' page lists
emptied; StreamingLLM at 8K and 128K. Run on a GPU box:
    OUT=/tmp python3 docs/benchmarks/probe_decode_pdl.py      # writes $OUT/probe_pdl.json
"""
import itertools, json, os, time

import torch

from sparsebench.kernels import bench_steps as bs
from sparsebench.timing import graph_ms

OUT = os.environ.get("OUT", "/tmp")
res = {}
t0 = time.time()
L = 8  # layers per graph


def t_graph(fn, steps=1, replays=100, per_step=False):
    r = graph_ms(fn, steps, per_step=per_step, replays=replays, l2="flushed")
    return [t / L * 1e3 for t in r] if per_step else r / L * 1e3


def built_steps(policy, B, N, backend="triton", layers=L):
    return [bs.build_decode_step(policy, backend, B, N, 32, 8, 128, torch.bfloat16) for _ in range(layers)]


# 1. PDL inside a graph gives the eager, non-PDL bits (LServe cycle: selector then three reuse steps)
bs.PAGED_OPTS, bs.SELECT_OPTS = {"pdl": False}, {"pdl": False}
one = built_steps("lserve", 2, 32768, layers=2)
for i in range(4):
    for b in one:
        b[0](i)
torch.cuda.synchronize()


def _out(b):  # the step's output buffer (the `out` cell of its attention closure)
    fn = b[2]["parts"]["attention"]
    return fn.__closure__[fn.__code__.co_freevars.index("out")].cell_contents


ref = [_out(b).clone() for b in one]
bs.PAGED_OPTS, bs.SELECT_OPTS = {"pdl": True}, {"pdl": True}
g = torch.cuda.CUDAGraph()
for i in range(4):  # warm-up compiles the PDL variants
    for b in one:
        b[0](i)
torch.cuda.synchronize()
with torch.cuda.graph(g):
    for i in range(4):
        for b in one:
            b[0](i)
for b in one:
    _out(b).fill_(float("nan"))
g.replay()
torch.cuda.synchronize()
same = all(torch.equal(_out(b), r) for b, r in zip(one, ref))
print("PDL graph replay == eager without PDL:", same, flush=True)
res["pdl_bits_equal"] = same
assert same
del one, g

# 2. timings
for B in (1, 8):
    N = 131072
    built = built_steps("lserve", B, N)
    steps, nbytes = built[0][1], built[0][2]["bytes"]
    step = lambda i: [b[0](i) for b in built]  # noqa: E731
    step(0)
    torch.cuda.synchronize()
    for pdl in (False, True):
        key = f"B{B}_pdl{int(pdl)}"
        rows = []
        for w, st, pps in itertools.product((4,), (3, 4), (0, 4, 16)):
            bs.PAGED_OPTS = {"num_warps": w, "num_stages": st, "pdl": pdl, **({"pages_per_split": pps} if pps else {})}
            rows.append((t_graph(lambda i: [b[2]["parts"]["attention"]() for b in built], replays=60), w, st, pps))
        rows.sort()
        best = rows[0]
        bs.PAGED_OPTS = {"num_warps": best[1], "num_stages": best[2], "pdl": pdl,
                         **({"pages_per_split": best[3]} if best[3] else {})}
        bs.SELECT_OPTS = {"pdl": pdl}
        sel = t_graph(lambda i: [b[2]["parts"]["selector"]() for b in built], replays=60)
        pp = t_graph(step, steps, replays=200, per_step=True)
        mean = sum(pp) / len(pp)
        r = {"attention": rows, "selector_alone": sel, "per_pos": pp, "mean_us": mean, "TBps": nbytes / mean / 1e6,
             "paged": dict(bs.PAGED_OPTS)}
        if B == 1:
            fn = built[0][2]["parts"]["attention"]
            ids = [b[2]["parts"]["attention"].__closure__[fn.__code__.co_freevars.index("ids_buf")].cell_contents
                   for b in built]
            keep = [x.clone() for x in ids]
            for x in ids:
                x[:, : x.shape[1] // 2] = -1  # retrieval rows read nothing
            r["attention_empty_retrieval"] = t_graph(lambda i: [b[2]["parts"]["attention"]() for b in built])
            for x, k in zip(ids, keep):
                x.copy_(k)
        res[key] = r
        print(f"{key}: attention {' '.join(f'{w}x{st}x{pps} {t:.1f}' for t, w, st, pps in rows)}; selector "
              f"{sel:.1f}; cycle {[round(x, 1) for x in pp]} mean {mean:.1f} us ({r['TBps']:.2f} TB/s)"
              + (f"; empty-retrieval attention {r['attention_empty_retrieval']:.1f}" if B == 1 else ""), flush=True)
    del built
    torch.cuda.empty_cache()
    dense = built_steps("full", B, N, "sdpa")
    dm = t_graph(lambda i: [d[0](i) for d in dense])
    res[f"B{B}_dense_us"] = dm
    for pdl in (False, True):
        m = res[f"B{B}_pdl{int(pdl)}"]["mean_us"]
        print(f"B{B} dense sdpa {dm:.1f} us; lserve pdl={pdl}: {dm / m:.2f}x, "
              f"{res[f'B{B}_pdl{int(pdl)}']['TBps'] / 3.0:.2f} of 3.00 TB/s", flush=True)
    del dense
    torch.cuda.empty_cache()
    for N2 in (8192, 131072):
        st = built_steps("streaming_llm", B, N2)
        for pdl in (False, True):
            bs.PAGED_OPTS = {"pdl": pdl, "num_stages": 3}
            t = t_graph(lambda i: [s[0](i) for s in st])
            res[f"B{B}_streaming_llm_{N2}_pdl{int(pdl)}"] = t
            print(f"B{B} streaming_llm {N2}: pdl={pdl} {t:.1f} us", flush=True)
        del st
    bs.PAGED_OPTS, bs.SELECT_OPTS = {}, {}
json.dump(res, open(f"{OUT}/probe_pdl.json", "w"), indent=1)
print("elapsed", round(time.time() - t0), "s")
