"""Probe (H100, run 14): StreamingLLM's short-window prefill through the warp-specialised Gluon kernel
(`sparsebench.kernels.gluon_prefill`: a producer warp feeding TMA, two consumer warp groups, persistent CTAs,
the sink as one 16-key step) against the existing Triton launch (64 x 64 tiles, 4 warps, 3 stages, TMA,
GQA-packed) and dense cuDNN (K / V expanded, the benchmark's baseline), per computed block.

    OUT=/tmp python3 docs/benchmarks/probe_prefill_gluon.py time 65536,131072,32768,8192

With `nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv -lms 100` logging beside
it, each timing's wall-clock start (`start_s`) places it in the clock / power log (run 14: `data/run14_clocks.csv`).
Writes $OUT/probe_gluon_time.json (run 14: docs/benchmarks/data/run14_probe_gluon_time*.json). The kernel's checks
against the reference are the `gpu` tests (`tests/test_gpu_kernels.py::test_gluon_window_prefill`, the cases of this
probe's first form, whose output is `data/run14_probe_gluon_check.json`)."""
import json
import os
import sys
import time

from probe_inputs import prefill_inputs
from sparsebench.evals.latency_attention import _policy, computed_blocks
from sparsebench.kernels.triton_prefill import block_sparse_prefill
from sparsebench.timing import median_ms

CONFIGS = {  # name: window_prefill_ws keywords (BN x stages)
    "ws64x4": dict(block_n=64, stages=4),
    "ws64x3": dict(block_n=64, stages=3),
    "ws64x2": dict(block_n=64, stages=2),
    "ws128x2": dict(block_n=128, stages=2),
}


def gluon_prefill(q, k, v, plan, scale, block_n=64, stages=3):
    return block_sparse_prefill(q, k, v, plan, scale, ws=True, block_n=block_n, num_stages=stages)


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
    time_sweep(out_dir, [int(x) for x in sys.argv[2].split(",")])


if __name__ == "__main__":
    main()
