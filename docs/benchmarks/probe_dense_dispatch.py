"""Probe (H100, run 11): where to send a plan's dense heads when only some heads are dense (streaming heads:
half the KV heads), SDPA / cuDNN (gather their query heads, scatter the output back) or our kernel (one launch),
by length, timed alternately; and whether a GPU heated by seconds of dense work times a kernel slower.
    OUT=/tmp python3 docs/benchmarks/probe_dense_dispatch.py   -> $OUT/probe_dense_dispatch.json"""
import json
import math
import os
import subprocess
import time

import torch

from sparsebench.evals.latency_attention import LatencyAttentionConfig, _policy
from sparsebench.kernels.triton_backend import TritonBackend, dense_sdpa
from sparsebench.timing import median_ms

OUT = os.environ.get("OUT", "/tmp")
c = LatencyAttentionConfig()
res = {"dispatch": [], "thermal": []}


def inputs(n):
    g = torch.Generator(device="cuda").manual_seed(n)
    return [torch.randn(1, h, n, 128, device="cuda", dtype=torch.bfloat16, generator=g) for h in (32, 8, 8)]


def gpu_state():
    q = "clocks.sm,power.draw,temperature.gpu"
    return subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"], capture_output=True,
                          text=True).stdout.strip()


plan_sh = _policy("streaming_heads", c).prefill_plan(0, 1)
for n in (8192, 12288, 16384, 24576, 32768):
    q, k, v = inputs(n)
    fns = {mode: (lambda b=TritonBackend("cuda", dense_heads=mode, ws=False):
                  b._prefill_row(q, k, v, plan_sh, 1 / math.sqrt(128))) for mode in ("sdpa", "triton")}
    t = {m: [] for m in fns}
    for _ in range(3):  # alternately
        for m, f in fns.items():
            t[m].append(median_ms(f, 20, 60))
    row = {"n": n, **{m: sorted(v)[1] for m, v in t.items()}, "all": t}
    res["dispatch"].append(row)
    print(f"streaming heads {n:>6}: dense heads on sdpa {row['sdpa']:.3f} ms, in our kernel {row['triton']:.3f} ms",
          flush=True)

# thermal: StreamingLLM at 32K (our kernel) and dense cuDNN at 32K, alternately, on a cool GPU, then right after
# ~20 s of dense cuDNN at 128K
n = 32768
q, k, v = inputs(n)
kk, vv = k.repeat_interleave(4, 1), v.repeat_interleave(4, 1)
plan = _policy("streaming_llm", c).prefill_plan(0, n)
be = TritonBackend("cuda", block_m=64, block_n=64, num_warps=4, num_stages=3, tma=True, pack_gqa=True, ws=False)
sllm = lambda: be._prefill_row(q, k, v, plan, 1 / math.sqrt(128))  # noqa: E731
cud = lambda: dense_sdpa(q, kk, vv, 1 / math.sqrt(128))  # noqa: E731
qb, kb, vb = inputs(131072)
heat = lambda: dense_sdpa(qb, kb, vb, 1 / math.sqrt(128))  # noqa: E731
for phase in ("cool", "hot", "after 30 s idle"):
    if phase == "cool":
        time.sleep(15)
    if phase == "hot":
        t0 = time.time()
        while time.time() - t0 < 20:
            heat()
        torch.cuda.synchronize()
    if phase.startswith("after"):
        time.sleep(30)
    state = gpu_state()
    a, b = [], []
    for _ in range(3):
        a.append(median_ms(sllm, 10, 60))
        b.append(median_ms(cud, 10, 60))
    res["thermal"].append({"phase": phase, "gpu": state, "sllm_ms": a, "cudnn_ms": b})
    print(f"{phase:16s} [{state}] streaming_llm 32K {a} ms, cuDNN 32K {b} ms", flush=True)
json.dump(res, open(f"{OUT}/probe_dense_dispatch.json", "w"), indent=1)
