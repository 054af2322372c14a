"""What one launch per layer can move at the decode step's sizes (run 15, docs/benchmarks/attention.md).

The acceptance's bandwidth is the 1 GiB device copy's (read + write bytes per second). LServe's batch-1 steps read
34.3 MB (a reuse step's pages), 38.4 MB (the cycle's mean with the page summaries) or 16.8 MB (the summaries) per
layer in one launch or a few. Here the plainest kernels at those sizes, timed like the decode rows (8 layers per
CUDA graph, each its own buffer, L2 evicted before each replay, per layer):
  read      a Triton kernel summing the buffer (each program a contiguous chunk, BLOCK elements per load), the
            fastest of programs x BLOCK x warps; "read, PDL" the same launches chained as PDL dependents (each
            waits at its start, as the paged kernel's 'd' config);
  copy      torch's device copy of half the size (so the same bytes move: read + write).
Run on a GPU box:  OUT=/tmp python3 docs/benchmarks/probe_read_floor.py   # writes $OUT/read_floor.json
"""
import json
import os

import torch
import triton
import triton.language as tl

from sparsebench.kernels.triton_decode import gdc_launch_dependents, gdc_wait
from sparsebench.timing import ceilings, graph_ms

OUT = os.environ.get("OUT", "/tmp")
LAYERS = 8
SIZES = {"LServe reuse step (B1)": 34_340_864, "LServe cycle mean (B1)": 38_400_000, "page summaries (B1)": 16_777_216,
         "LServe reuse step (B8)": 274_726_912, "1 GiB": 1 << 30}
SMS = torch.cuda.get_device_properties(0).multi_processor_count
CONFIGS = [(p * SMS, blk, w) for p in (1, 2, 4, 8) for blk in (2048, 8192) for w in (4, 8)]


@triton.jit
def _read_kernel(X, OUT_, n_per_prog, BLOCK: tl.constexpr, PDL: tl.constexpr):
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
    base = tl.program_id(0).to(tl.int64) * n_per_prog
    acc = tl.zeros([BLOCK], tl.float32)
    for off in range(0, n_per_prog, BLOCK):
        idx = off + tl.arange(0, BLOCK)
        acc += tl.load(X + base + idx, mask=idx < n_per_prog, other=0.0).to(tl.float32)
    tl.store(OUT_ + tl.program_id(0), tl.sum(acc))


def read_us(nbytes, progs, blk, warps, pdl):
    n = triton.cdiv(nbytes // 2, progs * 16) * progs * 16  # bf16 elements, a multiple of 16 per program
    xs = [torch.randn(n, device="cuda", dtype=torch.bfloat16) for _ in range(LAYERS)]
    out = torch.empty(progs, device="cuda")

    def step(i):
        for x in xs:
            _read_kernel[(progs,)](x, out, n // progs, BLOCK=blk, PDL=pdl, num_warps=warps, launch_pdl=pdl)

    t = graph_ms(step, replays=100) / LAYERS * 1e3
    return t, 2 * n


def copy_us(nbytes):
    srcs = [torch.randn(nbytes // 4, device="cuda", dtype=torch.bfloat16) for _ in range(LAYERS)]
    dsts = [torch.empty_like(s) for s in srcs]
    t = graph_ms(lambda i: [d.copy_(s) for d, s in zip(dsts, srcs)], replays=100) / LAYERS * 1e3
    return t, 4 * srcs[0].numel()


def main():
    bw = ceilings()["copy_bytes_per_s"] / 1e12
    res = {"copy_bw_TBps": bw, "sizes": {}}
    print(f"copy bandwidth (1 GiB): {bw:.3f} TB/s")
    print("| what | MB | read µs | TB/s (of copy bw) | config | read, PDL µs | TB/s (of copy bw) | copy µs | "
          "TB/s (of copy bw) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, nb in SIZES.items():
        row = {}
        for pdl in (False, True):
            best = None
            for cfg in CONFIGS:
                t, moved = read_us(nb, *cfg, pdl)
                row.setdefault("read_pdl" if pdl else "read", {})[str(cfg)] = t
                if best is None or t < best[0]:
                    best = (t, moved, cfg)
            row["best_pdl" if pdl else "best"] = best
            torch.cuda.empty_cache()
        row["copy"] = copy_us(nb)
        torch.cuda.empty_cache()
        res["sizes"][name] = row
        (t, m, cfg), (tp, mp, _), (tc, mc) = row["best"], row["best_pdl"], row["copy"]
        rate = [x / y / 1e6 for x, y in ((m, t), (mp, tp), (mc, tc))]  # TB/s
        print(f"| {name} | {m / 1e6:.1f} | {t:.2f} | {rate[0]:.2f} ({rate[0] / bw:.2f}) | {cfg} | {tp:.2f} | "
              f"{rate[1]:.2f} ({rate[1] / bw:.2f}) | {tc:.2f} | {rate[2]:.2f} ({rate[2] / bw:.2f}) |", flush=True)
        json.dump(res, open(f"{OUT}/read_floor.json", "w"), indent=1)


if __name__ == "__main__":
    main()
