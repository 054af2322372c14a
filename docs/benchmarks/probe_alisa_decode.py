"""Where ALISA's decode step spends its time (H100): the benchmark's step (bench_steps, 8 layers per CUDA graph, L2
evicted before each replay, per layer) and each of its parts alone (select: the token top-k; attention: with the
score update, kernels/alisa_decode.py), against dense SDPA; the top-k against torch.topk on the same scores; the
step under variants of the attention's launch options (bench_steps.ALISA_OPTS; run 22's "pf_" variants ran a
form of the split kernel that loaded the next tile ahead, since removed: no change).
Writes $OUT/probe_alisa_decode.json. (Its first form, before kernels/alisa_decode.py, timed run 21's torch step and
the gathered attention alone: data/run22_probe_alisa_before.log.)
    cd docs/benchmarks && OUT=/tmp python3 probe_alisa_decode.py [B:N ...]   (default 1:8192 1:131072 8:131072)
"""
import json
import os
import sys

import torch

from sparsebench.kernels import bench_steps as bs
from sparsebench.kernels.token_topk import top_tokens
from sparsebench.timing import graph_ms

L = 8
VARIANTS = [(f"s{st}_bt{bt}_w{w}" + (f"_tps{t}" if t else "") + (f"_blk{blk}" if blk else ""),
             dict(num_stages=st, block_t=bt, num_warps=w, tok_per_split=t, **({"block": blk} if blk else {})))
            for st, bt, w, t, blk in [(3, 64, 4, None, None), (3, 128, 4, None, None), (1, 64, 4, None, None),
                                      (3, 64, 4, None, 128), (3, 64, 4, 1024, None), (3, 128, 8, None, None)]]
cells = [tuple(int(x) for x in a.split(":")) for a in sys.argv[1:]] or [(1, 8192), (1, 131072), (8, 131072)]
res = {}
for B, N in cells:
    dense = [bs.build_decode_step("full", "sdpa", B, N, 32, 8, 128, torch.bfloat16) for _ in range(L)]
    d_us = graph_ms(lambda i: [b[0](i) for b in dense]) / L * 1e3
    del dense
    built = [bs.build_decode_step("alisa_swa", "triton", B, N, 32, 8, 128, torch.bfloat16) for _ in range(L)]
    info = built[0][2]
    print(f"B{B} N{N} check: {info['check']()}", flush=True)
    row = {"dense_us": d_us, "step_us": graph_ms(lambda i: [b[0](i) for b in built]) / L * 1e3}
    for name in info["parts"]:
        row[f"{name}_us"] = graph_ms(lambda i, n=name: [b[2]["parts"][n]() for b in built]) / L * 1e3
    k = info["selected_tokens"] // 2
    # the top-k alone against torch.topk (sorted and not) on the same scores (one row per batch row, N - k columns)
    Ss = [torch.rand(B, N, device="cuda") for _ in range(L)]
    outs = [torch.empty(B, k, dtype=torch.int32, device="cuda") for _ in range(L)]
    row["top_tokens_us"] = graph_ms(lambda i: [top_tokens(S[:, : N - k], k, o) for S, o in zip(Ss, outs)]) / L * 1e3
    for sorted_ in (True, False):
        row[f"torch_topk_sorted{sorted_}_us"] = graph_ms(
            lambda i, s=sorted_: [S[:, : N - k].topk(k, dim=-1, sorted=s) for S in Ss]) / L * 1e3
    del Ss, outs
    # launch options of the attention (bench_steps.ALISA_OPTS): the whole step per variant
    for name, opts in VARIANTS:
        bs.ALISA_OPTS = opts
        try:
            row[f"step_{name}_us"] = graph_ms(lambda i: [b[0](i) for b in built]) / L * 1e3
        except Exception as e:  # noqa: BLE001 (a variant that does not compile is recorded)
            row[f"step_{name}_us"] = f"failed: {e}"[:120]
    bs.ALISA_OPTS = {}
    kv_mb = B * 8 * 2 * k * 512 / 1e6
    row.update(kv_mb=kv_mb, k=k)
    res[f"B{B}_N{N}"] = row
    print(f"B{B} N{N} k={k} KV {kv_mb:.1f} MB (at 3.0 TB/s {kv_mb / 3.0:.1f} us): dense {d_us:.1f} us, ALISA step "
          f"{row['step_us']:.1f} (select {row['select_us']:.1f}, attention {row['attention_us']:.1f}; "
          f"top_tokens {row['top_tokens_us']:.1f}, torch.topk sorted {row['torch_topk_sortedTrue_us']:.1f} / "
          f"unsorted {row['torch_topk_sortedFalse_us']:.1f})", flush=True)
    for kk, v in row.items():
        if kk.startswith("step_"):
            print(f"   {kk:40s} {v if isinstance(v, str) else f'{v:.1f}'}", flush=True)
    del built
    torch.cuda.empty_cache()
json.dump(res, open(os.path.join(os.environ.get("OUT", "."), "probe_alisa_decode.json"), "w"), indent=1)
