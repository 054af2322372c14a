"""Probe (H100, run 14): StreamingLLM's short-window prefill through the warp-specialised Gluon kernel
(`sparsebench.kernels.gluon_prefill`: a producer warp feeding TMA, two consumer warp groups, persistent CTAs,
the sink as one 16-key step) against the existing Triton launch (64 x 64 tiles, 4 warps, 3 stages, TMA,
GQA-packed) and dense cuDNN (K / V expanded, the benchmark's baseline), per computed block.

    OUT=/tmp python3 docs/benchmarks/probe_prefill_gluon.py check
    OUT=/tmp python3 docs/benchmarks/probe_prefill_gluon.py time 65536,131072,32768,8192

With `nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv -lms 100` logging beside
it, each timing's wall-clock start (`start_s`) places it in the clock / power log (run 14: `data/run14_clocks.csv`).
`check`: the Gluon kernel against the reference on random inputs (outputs poisoned with NaN first): GQA 2 / 4 / 8,
D 64 / 128, odd lengths, bf16 / fp16, a model's [B, L, H, D] layout, per-head sinks and windows, no sink, a
window longer than the sequence, both key-block sizes. `time`: the timing sweep. Writes $OUT/probe_gluon_<mode>.json
(run 14: docs/benchmarks/data/run14_probe_gluon_<mode>.json)."""
import json
import math
import os
import sys
import time

import torch

from probe_inputs import prefill_inputs
from sparsebench.evals.latency_attention import _policy, computed_blocks
from sparsebench.kernels.reference import prefill_row
from sparsebench.kernels.triton_prefill import block_sparse_prefill
from sparsebench.plans import PrefillPlan
from sparsebench.timing import median_ms

CONFIGS = {  # name: window_prefill_ws keywords (BN x stages)
    "ws64x4": dict(block_n=64, stages=4),
    "ws64x3": dict(block_n=64, stages=3),
    "ws64x2": dict(block_n=64, stages=2),
    "ws128x2": dict(block_n=128, stages=2),
}


def gluon_prefill(q, k, v, plan, scale, out=None, block_n=64, stages=3):
    return block_sparse_prefill(q, k, v, plan, scale, out=out, ws=True, block_n=block_n, num_stages=stages)


def check(out_dir):
    cases = [  # (B, Hq, Hkv, L, D, dtype, sinks, windows, model layout, config)
        (2, 16, 4, 4096, 128, torch.bfloat16, (4,) * 4, (300,) * 4, False, "ws64x4"),
        (2, 16, 4, 4096, 128, torch.bfloat16, (4,) * 4, (300,) * 4, True, "ws64x4"),
        (2, 16, 4, 777, 128, torch.bfloat16, (4,) * 4, (300,) * 4, False, "ws64x3"),
        (2, 16, 4, 3000, 64, torch.bfloat16, (4,) * 4, (300,) * 4, False, "ws64x4"),
        (1, 8, 4, 2000, 128, torch.bfloat16, (4,) * 4, (1020,) * 4, False, "ws64x4"),
        (1, 32, 4, 2000, 128, torch.bfloat16, (4,) * 4, (1020,) * 4, False, "ws64x4"),
        (1, 16, 4, 2500, 128, torch.bfloat16, (4, 64, 0, 128), (300, 1000, 64, 2000), False, "ws64x4"),
        (1, 16, 4, 2500, 128, torch.bfloat16, (0,) * 4, (500,) * 4, False, "ws64x4"),
        (1, 16, 4, 1500, 128, torch.float16, (4,) * 4, (5000,) * 4, False, "ws64x2"),
        (2, 16, 4, 4096, 128, torch.bfloat16, (4,) * 4, (1020,) * 4, True, "ws128x2"),
        (1, 16, 4, 999, 128, torch.bfloat16, (4, 64, 0, 128), (300, 1000, 64, 2000), False, "ws128x2"),
    ]
    res = []
    for (B, Hq, Hkv, L, D, dt, sinks, wins, model, conf) in cases:
        g = torch.Generator(device="cuda").manual_seed(L + Hq)
        q = torch.randn(B, Hq, L, D, device="cuda", dtype=dt, generator=g)
        k = torch.randn(B, Hkv, L, D, device="cuda", dtype=dt, generator=g)
        v = torch.randn(B, Hkv, L, D, device="cuda", dtype=dt, generator=g)
        if model:
            q, k, v = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
        plan = PrefillPlan(sink=sinks, window=wins)
        scale = 1 / math.sqrt(D)
        row = {"case": [B, Hq, Hkv, L, D, str(dt), sinks, wins, model, conf]}
        try:
            out = torch.full_like(q, float("nan"))
            gluon_prefill(q, k, v, plan, scale, out=out, **CONFIGS[conf])
            torch.cuda.synchronize()
            ref = prefill_row(q.float(), k.float(), v.float(), plan, scale)
            row["nan"] = bool(torch.isnan(out).any())
            o = torch.nan_to_num(out.float())
            row["rel"] = float((o - ref).norm() / ref.norm())
            row["ok"] = (not row["nan"]) and row["rel"] < 1e-2
        except Exception as e:  # recorded; the next case runs
            row["error"] = f"{type(e).__name__}: {e}"[:400]
            row["ok"] = False
        print(row, flush=True)
        res.append(row)
        json.dump(res, open(f"{out_dir}/probe_gluon_check.json", "w"), indent=1)
    return all(r["ok"] for r in res)


def time_sweep(out_dir, lengths):
    res = []
    for n in lengths:
        c, q, k, v, scale, cudnn = prefill_inputs(n)
        Hq, Hkv = c.n_heads, c.n_kv_heads
        plan = _policy("streaming_llm", c).prefill_plan(0, n)
        blocks, causal_blocks = computed_blocks(plan, n, Hq // Hkv)
        ref = block_sparse_prefill(q, k, v, plan, scale, ws=False)
        fns = {"64x64x4x3tp": lambda: block_sparse_prefill(q, k, v, plan, scale, ws=False)}
        for conf, kw in CONFIGS.items():
            fns[conf] = lambda kw=kw: gluon_prefill(q, k, v, plan, scale, **kw)
        row = {"n": n, "plan": "streaming_llm", "blocks": blocks, "causal_blocks": causal_blocks, "ms": {},
               "ratio": {}, "max_abs_diff": {}, "cudnn_ms": [], "start_s": {}}
        for rep in range(2):  # cuDNN timed before each pass (its time moves with the GPU's power state)
            row["start_s"].setdefault("cudnn", []).append(time.time())  # wall clock: to match a clock / power log
            cud = median_ms(cudnn, 20, 60)
            row["cudnn_ms"].append(cud)
            per = cud / causal_blocks
            for conf, fn in fns.items():
                try:
                    o = fn()
                    row["max_abs_diff"][conf] = float((o.float() - ref.float()).abs().max())
                    row["start_s"].setdefault(conf, []).append(time.time())
                    ms = median_ms(fn, 20, 60)
                    row["ms"].setdefault(conf, []).append(ms)
                    row["ratio"].setdefault(conf, []).append(round(ms / blocks / per, 3))
                except Exception as e:
                    row["ms"][conf] = f"failed: {type(e).__name__}: {e}"[:300]
        res.append(row)
        print(f"{n:>6} cudnn {row['cudnn_ms'][0]:7.3f} ms | " + " ".join(
            f"{k_}={v_}({row['ms'][k_][0]:.3f}ms,d{row['max_abs_diff'][k_]:.0e})" for k_, v_ in row["ratio"].items()),
            flush=True)
        json.dump(res, open(f"{out_dir}/probe_gluon_time.json", "w"), indent=1)


def main():
    out_dir = os.environ.get("OUT", "/tmp")
    what = sys.argv[1]
    if what == "check":
        sys.exit(0 if check(out_dir) else 1)
    time_sweep(out_dir, [int(x) for x in sys.argv[2].split(",")])


if __name__ == "__main__":
    main()
