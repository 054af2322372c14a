"""Where LServe's batch-1 decode cycle at 128K spends its time with the cluster kernel (run 21,
docs/benchmarks/attention.md): the kernels compiled with STAMPS (kernels/cuda_decode.py, kernels/cuda_topk.py), so each
CTA of the attention and of the CUDA top-k writes %globaltimer at its milestones; the benchmark's method otherwise
(8 layers per CUDA graph, a graph per position of the reuse cycle, L2 evicted before each replay). The stamps of the
last timed replay of each position are analysed:
- per launch (µs from the graph's first CTA entry): first entry, list compacted, past the grid-dependency wait,
  first page seen, page loop done (median / last), exit (last);
- per launch, medians over its CTAs (µs): page 0's compute, page 0 done -> page 1 seen, the gap between later pages,
  wait -> page 0 seen, list -> wait, loop done -> partial published, partial -> exit;
- per position: the pages seen per 1 µs bin as a fraction of the copy bandwidth (a page counts when thread 0 finds
  its buffer full, so a page that landed while the CTA was busy counts late), and the time with under half of it.
    OUT=/tmp python3 docs/benchmarks/probe_decode_cluster_timeline.py [config ...]   # writes $OUT/timeline<TAG>.json
Configs as in probe_decode_cluster.py (default 4x2x5ipfdekac); they must use the cluster kernel ('c').
"""
import ctypes
import json
import os
import statistics
import sys

import torch

from probe_inputs import apply_config
from sparsebench.kernels import bench_steps as bs
from sparsebench.kernels import cuda_decode, cuda_topk, nvrtc
from sparsebench.timing import graph_ms

OUT = os.environ.get("OUT", "/tmp")
# COPY_BW: the bins' scale, the H100's copy bandwidth as sparsebench.timing.ceilings measured it in every run
L, B, N, PAGE_BYTES, COPY_BW = 8, 1, 131072, 2 * 64 * 128 * 2, 3.0e12
NSTAMP = {"attn": 16, "topk": 4}

cuda_decode.SOURCE = "#define STAMPS\n" + cuda_decode.SOURCE
cuda_topk.SOURCE = "#define STAMPS\n" + cuda_topk.SOURCE
_function, _launch = nvrtc.function, nvrtc.launch
kinds, log = {}, []  # CUfunction -> kind; the launches captured, in order: (kind, stamps tensor)


def function(source, name, kernel, device, **kw):
    f = _function(source, name, kernel, device, **kw)
    kinds[f[1].value] = "attn" if kernel == "paged_decode_cluster" else "topk" if kernel.startswith("top_") else None
    return f


def launch(kernel, device, grid, block, smem, args, **kw):
    kind = kinds.get(kernel[1].value)
    if kind is not None:
        # (in a capture: torch.empty, which launches nothing; a memset in the graph would sit between the PDL launches)
        st = torch.empty(grid, NSTAMP[kind], dtype=torch.int64, device=device)
        args = list(args) + [ctypes.c_void_p(st.data_ptr())]
        if torch.cuda.is_current_stream_capturing():
            log.append((kind, st))
    return _launch(kernel, device, grid, block, smem, args, **kw)


nvrtc.function, nvrtc.launch = function, launch


def us(x, t0):
    return round((x - t0) / 1e3, 2)


def analyse(launches):
    """launches: [(kind, stamps [grid, n] int64 cpu)] of one graph (one position, 8 layers)."""
    t0 = min(int(st[:, 0].min()) for _, st in launches)
    rows, landed = [], []
    for kind, st in launches:
        s = st.tolist()
        if kind == "topk":
            rows.append({"kind": kind, "entry": us(min(r[0] for r in s), t0),
                         "wait": us(statistics.median(r[1] for r in s), t0),
                         "searched": us(statistics.median(r[2] for r in s), t0),
                         "published_last": us(max(r[3] for r in s), t0)})
            continue
        ran = [r for r in s if r[7] > 0]  # CTAs with pages
        firsts = [r[8] for r in ran]
        for r in ran:
            landed += [r[8 + i] for i in range(min(r[7], 6))]
        two = [r for r in ran if r[7] >= 2]
        med = lambda xs: round(statistics.median(xs) / 1e3, 3) if xs else None  # noqa: E731
        rows.append({"kind": kind, "ctas": len(s), "with_pages": len(ran), "pages": sum(r[7] for r in ran),
                     "entry_first": us(min(r[0] for r in s), t0), "entry_last": us(max(r[0] for r in s), t0),
                     "list_median": us(statistics.median(r[1] for r in s), t0),
                     "wait_first": us(min(r[2] for r in s), t0),
                     "wait_median": us(statistics.median(r[2] for r in s), t0),
                     "page0_median": us(statistics.median(firsts), t0) if firsts else None,
                     "loop_median": us(statistics.median(r[3] for r in s), t0),
                     "loop_last": us(max(r[3] for r in s), t0),
                     "partial_last": us(max(r[4] for r in s), t0), "exit_last": us(max(r[5] for r in s), t0),
                     "sms": len({r[6] for r in s}),
                     # per CTA, µs: page 0's compute (seen -> every warp done), page 0 done -> page 1 seen, page 1
                     # seen -> page 2 seen, loop done -> partial published, partial -> exit
                     "page0_compute": med([r[14] - r[8] for r in ran]),
                     "page1_after": med([r[9] - r[14] for r in two]),
                     "page_gap": med([r[10 + j] - r[9 + j] for r in ran for j in range(min(r[7], 6) - 2)]),
                     "wait_to_page0": med([r[8] - r[2] for r in ran]), "list_to_wait": med([r[2] - r[1] for r in s]),
                     "loop_to_partial": med([r[4] - r[3] for r in s]), "partial_to_exit": med([r[5] - r[4] for r in s]),
                     "raw": [[x - t0 if j not in (6, 7) else x for j, x in enumerate(r)] for r in s]})
    end = max(int(st[:, 5].max()) if k == "attn" else int(st[:, 3].max()) for k, st in launches)
    nb = int((end - t0) // 1000) + 1
    bins = [0] * nb
    for x in landed:
        bins[int((x - t0) // 1000)] += PAGE_BYTES
    frac = [round(b / 1e-6 / COPY_BW, 2) for b in bins]
    return {"span_us": us(end, t0), "per_layer_us": round((end - t0) / 1e3 / L, 3), "launches": rows,
            "bw_frac_per_us": frac, "us_under_half": sum(f < 0.5 for f in frac)}


res = {}
for conf in sys.argv[1:] or ["4x2x5ipfdekac"]:
    trigger = apply_config(conf)
    if bs.PAGED_OPTS.get("impl") != "cuda_cluster":
        raise SystemExit(f"{conf}: not a cluster-kernel config")
    log.clear()
    steps = [bs.build_decode_step("lserve", "triton", B, N, 32, 8, 128, torch.bfloat16) for _ in range(L)]
    per = graph_ms(lambda i: [b[0](i) for b in steps], 4, l2="evicted", per_step=True, replays=50)
    torch.cuda.synchronize()
    graphs, cur, n_attn = [], [], 0
    for kind, st in log:  # capture order: position 0 (top-k + attention per layer), then 1, 2, 3 (attention)
        cur.append((kind, st.cpu()))
        n_attn += kind == "attn"
        if n_attn == L:
            graphs.append(cur)
            cur, n_attn = [], 0
    out = {"event_us_per_layer": [round(t / L * 1e3, 3) for t in per], "positions": [analyse(g) for g in graphs]}
    for a in out["positions"]:  # raw stamps (ns from the graph's start; slots as in cuda_decode) of layers 3, 4 only
        for j, r in enumerate(x for x in a["launches"] if x["kind"] == "attn"):
            if j not in (3, 4):
                r.pop("raw")
    res[conf] = out
    print(f"{conf}: event timing per layer {out['event_us_per_layer']}", flush=True)
    for p, a in enumerate(out["positions"]):
        print(f"  position {p}: span {a['span_us']} us ({a['per_layer_us']} per layer), {a['us_under_half']} of "
              f"{len(a['bw_frac_per_us'])} us under half the copy bandwidth", flush=True)
        print("    pages seen per us (fraction of copy bw):", a["bw_frac_per_us"], flush=True)
        keys = ["entry_first", "entry_last", "list_median", "wait_first", "wait_median", "page0_median", "loop_median",
                "loop_last", "partial_last", "exit_last"]
        print("    attn " + " ".join(f"{k:>12s}" for k in keys), flush=True)
        keys2 = ["page0_compute", "page1_after", "page_gap", "wait_to_page0", "list_to_wait", "loop_to_partial",
                 "partial_to_exit"]
        for r in a["launches"]:
            if r["kind"] == "attn":
                print("    L   " + " ".join(f"{r[k] if r[k] is not None else '-':>12}" for k in keys) +
                      f"  ({r['with_pages']}/{r['ctas']} CTAs, {r['pages']} pages, {r['sms']} SMs)", flush=True)
                print("         " + " ".join(f"{k}={r[k]}" for k in keys2), flush=True)
            else:
                print(f"    topk entry {r['entry']} wait {r['wait']} searched {r['searched']} "
                      f"published {r['published_last']}", flush=True)
    cuda_decode.PDL_TRIGGER = trigger
    steps = None
    torch.cuda.empty_cache()
    json.dump(res, open(f"{OUT}/timeline{os.environ.get('TAG', '')}.json", "w"), indent=1)
