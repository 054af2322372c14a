"""latency_attention: attention-only benchmark of every policy on every backend, against dense cuDNN.

Rows (one record line each, resumable): prefill at `prefill_lengths` and decode at `decode_lengths`,
for `batch_sizes`, in one layer of Llama-3-8B geometry (32 query / 8 KV heads, dim 128, bf16):
`full` on sdpa_cudnn, sdpa_flash, flex and triton; the sparse policies on flex and triton
(`triton` sends dense heads to cuDNN, `triton_all` runs every head in the Triton kernel).
Timing: device events, warm-up excluded, medians (sparsebench.timing); decode steps are CUDA-graph
replays of `decode_layers` layers' steps (each layer its own KV, as in a model's decode graph, so the
graph launch is amortised and one layer's pages are not in L2 for the next), with L2 emptied of the
step's data before each replay (`decode_l2`, see sparsebench.timing.L2_MODES); each position of LServe's
reuse cycle in its own graph (selector on the first), the row being the mean over the cycle, per layer. Each row reports
ms, TFLOP/s (prefill) or TB/s (decode), the fraction of the floor (FLOPs / measured matmul rate, or
bytes / measured copy bandwidth) and the speedup over dense cuDNN (prefill) / dense SDPA (decode)
of the same shapes measured in the same run (`aggregate`). Before timing, each row's output is
checked against the reference math on the same inputs (bf16 relative error < 1e-2, no NaN).

Decode state is what an engine holds: a paged pool [pages, page, D] laid out stream by stream
(so the dense baseline reads it as [B, Hkv, N, D] without a copy), streaming heads in their own
small pool (sink + window pages only), key min / max per logical page for Quest / LServe.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import List

import torch

from sparsebench.errors import ConfigError
from sparsebench.models import resolve_dtype
from sparsebench.evals.base import TASKS, Runtime, Sample, Task, TaskConfig

PREFILL_BACKENDS = {"full": ["sdpa_cudnn", "sdpa_flash", "flex", "triton_all"]}
SPARSE_BACKENDS = ["flex", "triton", "triton_all"]
DECODE_BACKENDS = {"full": ["sdpa", "triton"]}


# a decode launch config: warps x stages x pages per split, then flags (see LatencyAttentionConfig.decode_configs)
DECODE_CONFIG = r"([1-9][0-9]*)x([1-9][0-9]*)x([0-9]+)(s?i?r?p?f?d?e?k?a?c?)"
# a prefill launch config: BLOCK_M x BLOCK_N x warps x stages, then flags; or the Gluon kernel's ws BLOCK_N x stages
PREFILL_CONFIG = r"([1-9][0-9]*x){3}[1-9][0-9]*t?p?|ws[1-9][0-9]*x[1-9][0-9]*"


@dataclass
class LatencyAttentionConfig(TaskConfig):
    name: str = "latency_attention"
    phases: List[str] = field(default_factory=lambda: ["prefill", "decode"])
    prefill_lengths: List[int] = field(default_factory=lambda: [8192, 32768, 65536, 131072])
    decode_lengths: List[int] = field(default_factory=lambda: [8192, 32768, 65536, 131072])
    prefill_batch_sizes: List[int] = field(default_factory=lambda: [1])
    decode_batch_sizes: List[int] = field(default_factory=lambda: [1, 8])
    policies: List[str] = field(default_factory=lambda: ["full", "streaming_llm", "streaming_heads", "quest",
                                                         "lserve", "alisa_swa"])
    n_heads: int = 32
    n_kv_heads: int = 8
    head_dim: int = 128
    dtype: str = "bfloat16"
    alisa_score_window: int = 256  # history rows ALISA's scores sum (the paper's k is ~13K rows at 128K)
    # Triton prefill launch configs tried per row (BLOCK_M x BLOCK_N x warps x stages; then "t": Q / K / V / O
    # through TMA tensor descriptors, else plain loads; then "p": a GQA group's query heads packed in one program,
    # BLOCK_M rows = G heads x BLOCK_M / G positions, where the plan allows; or "ws" BLOCK_N x stages: the
    # warp-specialised Gluon kernel, Hopper, sink + window heads only); the fastest is kept
    prefill_configs: List[str] = field(default_factory=lambda: ["128x128x8x3t", "128x64x8x3t", "128x128x8x2t",
                                                                "64x64x4x3t", "64x32x4x4t", "128x128x8x3",
                                                                "128x64x8x3", "64x64x4x3tp", "128x32x8x3tp",
                                                                "ws64x3", "ws64x4", "ws128x2"])
    # paged decode launch configs tried per row: warps x stages x pages per split (0 = automatic), then any of, in
    # this order: "s" programs launched split-first (one row's splits side by side); "i" interleaved (strided)
    # pages: split s reads list entries s, s + n_splits, ... (else a contiguous chunk); "r" short rows (LServe: its
    # streaming rows get only the splits their pages need, one program per SM at batch 1); "p" the top-k launched
    # as a PDL dependent of the page scores (Hopper; Quest / LServe selector steps); "f" the page scores (summaries
    # read before the dependency wait) and the attention after the top-k as PDL dependents too; "d" paged launches whose
    # page lists a selection did not just write (static lists, LServe's reuse steps) as PDL dependents of the launch
    # before them (Hopper), which hides their launch behind its tail; "e" (with "d" and "c") those launches start
    # their pages, all but each row's newest, before the grid-dependency wait; "k" the top-k in CUDA
    # (kernels/cuda_topk.py: fewer, cheaper threshold passes); "a" (with "k", "f", "e") the top-k publishes each row's
    # list as it is written (a flag per row, release / acquire) and the attention after it, launched at the top-k's
    # start, starts that row's pages once it is out; "c" the CUDA kernel whose splits meet
    # in a thread-block cluster (kernels/cuda_decode.py; Hopper, bf16, pages of 64, head dim 128; warps must be 4,
    # and a row's splits <= 16, clusters of more than 8 being non-portable; "s" and "r" do not apply to it)
    decode_configs: List[str] = field(default_factory=lambda: ["4x3x0", "4x3x8", "4x3x8s", "4x3x16s", "4x3x0i",
                                                               "4x3x8si", "4x4x8si", "4x3x8sir", "4x3x8sirp",
                                                               "4x3x8sid", "4x3x8sirpd", "4x2x8ipdc", "4x2x8idc",
                                                               "4x3x8idc", "4x2x8ipfdec", "4x3x8ipfdec",
                                                               "4x3x8idec", "4x3x8ipfdekac", "4x2x8ipfdekac",
                                                               "4x2x5ipfdekac"])
    decode_l2: str = "evicted"  # evicted | flushed | warm: L2 state before each timed decode replay (timing.L2_MODES)
    decode_layers: int = 8  # layers (each its own KV) per decode graph; times are per layer
    check_correctness: bool = True
    adjacent_baseline: bool = True  # prefill: also time dense cuDNN right after each sparse row (same GPU state)
    warmup_ms: int = 25
    rep_ms: int = 100
    # prefill: every row, and every config of a Triton row's sweep, is timed after this many ms of its own launches.
    # Its first call compiles it: seconds of an idle GPU, which then runs at its top clock (H100, run 14: 1980 MHz
    # there, 1350-1680 MHz under the same launches a second later; a short launch reads up to 20 % faster than in a
    # model's prefill). 0: warmup_ms only
    prefill_heat_ms: int = 500


def decode_launch_opts(conf: str) -> tuple[dict, dict]:
    """A decode config string (LatencyAttentionConfig.decode_configs) as (bench_steps.PAGED_OPTS, SELECT_OPTS)."""
    w, st, pps, flags = re.fullmatch(DECODE_CONFIG, conf).groups()
    paged = {"num_warps": int(w), "num_stages": int(st), "split_first": "s" in flags, "strided": "i" in flags,
             "short": "r" in flags, "static_pdl": "d" in flags, "early": "e" in flags,
             **({"ready": True} if "a" in flags else {}),
             **({"fresh_pdl": True} if "f" in flags else {}),  # the selector step's attention a PDL dependent too
             **({"pages_per_split": int(pps)} if int(pps) else {}),
             **({"impl": "cuda_cluster"} if "c" in flags else {})}
    return paged, {**({"top_pdl": True} if "p" in flags else {}), **({"scores_early": True} if "f" in flags else {}),
                   **({"top_impl": "cuda"} if "k" in flags else {})}


def _policy(name: str, c: "LatencyAttentionConfig"):
    """The policy with its paper defaults on the benchmark's geometry; streaming heads: exactly half of this
    layer's KV heads."""
    from sparsebench.arch import ModelArch
    from sparsebench.policies import make_policy

    cfg = {"name": name}
    if name in ("streaming_heads", "lserve"):
        cfg["gates"] = [[float(h % 2 == 0) for h in range(c.n_kv_heads)]]
        cfg["sparsity"] = 0.5
    if name == "quest":
        cfg["dense_layers"] = []
    p = make_policy(cfg)
    p.setup(ModelArch("bench", 1, c.n_heads, c.n_kv_heads, c.head_dim, 1 << 21))
    return p


@TASKS.register("latency_attention")
class LatencyAttention(Task):
    Config = LatencyAttentionConfig
    needs_model = False
    primary = "rows"

    def validate(self, arch, model_cfg) -> None:
        c = self.cfg
        bad = [p for p in c.policies if p not in ("full", "streaming_llm", "streaming_heads", "quest", "lserve",
                                                  "alisa_swa")]
        if bad:
            raise ConfigError("task.policies", bad, "full, streaming_llm, streaming_heads, quest, lserve, alisa_swa")
        bad = [x for x in c.prefill_configs if not re.fullmatch(PREFILL_CONFIG, str(x))]
        if bad or not c.prefill_configs:
            raise ConfigError("task.prefill_configs", bad or c.prefill_configs,
                              "BLOCK_M x BLOCK_N x warps x stages, e.g. 128x64x8x3, then 't' for TMA loads, then 'p' "
                              "for GQA-packed programs; or 'ws' BLOCK_N x stages, e.g. ws64x3, for the "
                              "warp-specialised Gluon kernel")
        bad = [x for x in c.decode_configs if not re.fullmatch(DECODE_CONFIG, str(x))]
        if bad or not c.decode_configs:
            raise ConfigError("task.decode_configs", bad or c.decode_configs,
                              "warps x stages x pages per split, e.g. 4x3x8 (0 = automatic), then in this order any "
                              "of 's' split-first launch order, 'i' interleaved pages, 'r' short rows, 'p' top-k "
                              "as a PDL dependent, 'f' page scores and the attention after them as PDL dependents, "
                              "'d' reuse steps' attention as PDL dependents, 'e' their pages "
                              "started before the dependency wait (with 'd' and 'c'), 'k' the CUDA top-k, 'a' rows "
                              "published by the top-k to the attention (with 'k', 'f', 'e'), 'c' the CUDA cluster "
                              "kernel")
        flags = {x: set(re.fullmatch(DECODE_CONFIG, str(x)).group(4)) for x in c.decode_configs}
        bad = [x for x, f in flags.items() if "e" in f and not {"d", "c"} <= f]
        if bad:
            raise ConfigError("task.decode_configs", bad, "'e' (pages started before the dependency wait) needs 'd' "
                              "(PDL dependents) and 'c' (the cluster kernel)")
        bad = [x for x, f in flags.items() if "a" in f and not {"k", "f", "e"} <= f]
        if bad:
            raise ConfigError("task.decode_configs", bad, "'a' (rows published by the top-k) needs 'k' (the CUDA "
                              "top-k), 'f' (the attention after it a PDL dependent) and 'e' (pages started early)")
        if c.decode_layers < 1:
            raise ConfigError("task.decode_layers", c.decode_layers, "an integer >= 1")
        if c.prefill_heat_ms < 0:
            raise ConfigError("task.prefill_heat_ms", c.prefill_heat_ms, "an integer >= 0 (milliseconds)")
        from sparsebench.timing import L2_MODES

        if c.decode_l2 not in L2_MODES:
            raise ConfigError("task.decode_l2", c.decode_l2, " | ".join(L2_MODES))
        if not torch.cuda.is_available():
            raise ConfigError("task.name", c.name, "a CUDA device (task=latency_attention times GPU kernels)")

    def samples(self, tokenizer) -> list[Sample]:
        c = self.cfg
        out = []
        for phase in c.phases:
            lengths = c.prefill_lengths if phase == "prefill" else c.decode_lengths
            batches = c.prefill_batch_sizes if phase == "prefill" else c.decode_batch_sizes
            for n in lengths:
                for b in batches:
                    for pol in c.policies:
                        table = PREFILL_BACKENDS if phase == "prefill" else DECODE_BACKENDS
                        for be in table.get(pol, SPARSE_BACKENDS if phase == "prefill" else ["triton", "flex"]):
                            out.append(Sample(f"{phase}/{pol}/{be}/B{b}/L{n}", [], [],
                                              {"phase": phase, "policy": pol, "backend": be, "batch": b,
                                               "length": n}))
        return out

    def run_sample(self, sample: Sample, rt: Runtime) -> dict:
        m = sample.meta
        if not hasattr(self, "_ceil"):
            from sparsebench.timing import ceilings

            self._ceil = ceilings()
        try:
            row = (prefill_row if m["phase"] == "prefill" else decode_row)(self.cfg, m)
        except torch.cuda.OutOfMemoryError as e:
            torch.cuda.empty_cache()
            row = {"error": f"OOM: {e}"[:300]}
        except Exception as e:  # a row that cannot run is recorded; the benchmark goes on
            row = {"error": f"{type(e).__name__}: {e}"[:500]}
        torch.cuda.empty_cache()
        cb, mf = self._ceil["copy_bytes_per_s"], self._ceil["matmul_flops_per_s"]
        if "ms" in row:
            floor_s = max(row.get("flops", 0) / mf, row.get("bytes", 0) / cb)
            row["floor_fraction"] = floor_s / (row["ms"] * 1e-3) if row["ms"] > 0 else 0.0
            if row.get("flops"):
                row["tflops"] = row["flops"] / (row["ms"] * 1e-3) / 1e12
            if row.get("bytes"):
                row["tbps"] = row["bytes"] / (row["ms"] * 1e-3) / 1e12
        return {**m, **row, "copy_tbps": cb / 1e12, "matmul_tflops": mf / 1e12}

    def aggregate(self, rows: list[dict]) -> dict:
        base = {}
        for r in rows:
            if "ms" not in r:
                continue
            if (r["phase"], r["policy"], r["backend"]) in (("prefill", "full", "sdpa_cudnn"), ("decode", "full", "sdpa")):
                base[(r["phase"], r["batch"], r["length"])] = r["ms"]
        out: dict = {"rows": len(rows), "failed_rows": sum("error" in r for r in rows)}
        for r in rows:
            b = base.get((r["phase"], r["batch"], r["length"]))
            if b and "ms" in r:
                r["speedup"] = b / r["ms"]
                out[f"speedup/{r['id']}"] = r["speedup"]
                out[f"ms/{r['id']}"] = r["ms"]
                if r["phase"] == "prefill" and r.get("blocks"):
                    # ideal speedup = 1 / fraction of causal blocks computed; time per computed block vs cuDNN's
                    r["ideal_speedup"] = 1 / r["block_fraction"]
                    r["of_ideal"] = r["speedup"] / r["ideal_speedup"]
                    dense_per_block = b / r["causal_blocks"]
                    r["block_time_vs_cudnn"] = (r["ms"] / r["blocks"]) / dense_per_block
                    out[f"of_ideal/{r['id']}"] = r["of_ideal"]
                    out[f"block_time_vs_cudnn/{r['id']}"] = r["block_time_vs_cudnn"]
                    if r.get("cudnn_adjacent_ms"):  # the same against cuDNN timed right after the row
                        r["block_time_vs_adjacent_cudnn"] = (r["ms"] / r["blocks"]) / (r["cudnn_adjacent_ms"] /
                                                                                      r["causal_blocks"])
                        out[f"block_time_vs_adjacent_cudnn/{r['id']}"] = r["block_time_vs_adjacent_cudnn"]
        return out

    def artifacts(self, rows: list[dict], run_dir) -> dict:
        from pathlib import Path

        self.aggregate(rows)  # adds speedups to rows
        lines = ["| phase | policy | backend | B | L | ms | TFLOP/s | TB/s | floor frac | speedup vs dense | "
                 "of ideal | block time / cuDNN's | ... / adjacent cuDNN's | note |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            f = lambda k, fmt: (fmt.format(r[k]) if isinstance(r.get(k), (int, float)) else "-")  # noqa: E731
            err = r.get("error", "").split("\n")[0][:120]
            lines.append(f"| {r['phase']} | {r['policy']} | {r['backend']} | {r['batch']} | {r['length']} | "
                         f"{f('ms', '{:.4f}')} | {f('tflops', '{:.0f}')} | {f('tbps', '{:.2f}')} | "
                         f"{f('floor_fraction', '{:.2f}')} | {f('speedup', '{:.2f}x')} | {f('of_ideal', '{:.2f}')} | "
                         f"{f('block_time_vs_cudnn', '{:.2f}')} | {f('block_time_vs_adjacent_cudnn', '{:.2f}')} | "
                         f"{err or r.get('note', '')} |")
        path = Path(run_dir) / "attention_table.md"
        path.write_text("\n".join(lines) + "\n")
        return {"table": str(path)}


# ------------------------------------------------------------------------------------------------ prefill
def prefill_row(c: LatencyAttentionConfig, m: dict) -> dict:
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from sparsebench.kernels.bench_steps import check_close
    from sparsebench.kernels.reference import prefill_row as ref_prefill
    from sparsebench.kernels.triton_backend import TritonBackend
    from sparsebench.timing import median_ms

    B, n, D = m["batch"], m["length"], c.head_dim
    Hq, Hkv = c.n_heads, c.n_kv_heads
    dtype = resolve_dtype(c.dtype, torch.device("cuda"))
    g = torch.Generator(device="cuda").manual_seed(n + B)
    q = torch.randn(B, Hq, n, D, device="cuda", dtype=dtype, generator=g)
    k = torch.randn(B, Hkv, n, D, device="cuda", dtype=dtype, generator=g)
    v = torch.randn(B, Hkv, n, D, device="cuda", dtype=dtype, generator=g)
    scale = 1 / math.sqrt(D)
    policy = _policy(m["policy"], c)
    plan = policy.prefill_plan(0, n)
    pairs, causal = plan.pairs_computed(n)
    flops = 4 * D * (Hq // Hkv) * pairs * B
    be = m["backend"]

    def sdpa_fn(be):
        kind = SDPBackend.CUDNN_ATTENTION if be == "sdpa_cudnn" else SDPBackend.FLASH_ATTENTION
        kk, vv, gqa = k, v, True
        if be == "sdpa_cudnn":  # K / V expanded once, outside the timed region (cuDNN's native GQA: within 6 %)
            kk, vv, gqa = k.repeat_interleave(Hq // Hkv, 1), v.repeat_interleave(Hq // Hkv, 1), False

        def fn():
            with sdpa_kernel(kind):
                return F.scaled_dot_product_attention(q, kk, vv, is_causal=True, scale=scale, enable_gqa=gqa)
        return fn

    if be in ("sdpa_cudnn", "sdpa_flash"):
        fn = sdpa_fn(be)
    elif be == "flex":
        from sparsebench.kernels.flex import BLOCK, _flex_fn, make_block_mask

        n_pad = -(-n // BLOCK) * BLOCK
        assert n_pad == n, "benchmark lengths are multiples of 128"
        bm = make_block_mask(plan, n, n_pad, Hq // Hkv, q.device)
        flex = _flex_fn(q.device)

        def fn():
            return flex(q, k, v, block_mask=bm, scale=scale, enable_gqa=True)
    else:
        fns = {}
        for conf in c.prefill_configs:
            dense = "triton" if be == "triton_all" else "auto"
            if conf.startswith("ws"):
                bn, st = (int(x) for x in conf[2:].split("x"))
                backend = TritonBackend("cuda", dense_heads=dense, block_n=bn, num_stages=st, ws=True)
            else:
                bm, bn, w, st = (int(x) for x in conf.rstrip("tp").split("x"))
                backend = TritonBackend("cuda", dense_heads=dense, block_m=bm, block_n=bn, num_warps=w, num_stages=st,
                                        tma="t" in conf, pack_gqa="p" in conf, ws=False)
            fns[conf] = (lambda b=backend: b._prefill_row(q, k, v, plan, scale))

    note = ""
    if be.startswith("triton"):
        timed = {}
        for conf, f in fns.items():
            try:
                f()  # compiles
                timed[conf] = median_ms(f, max(c.warmup_ms, c.prefill_heat_ms), c.rep_ms)
            except Exception as e:  # a config that does not fit (shared memory) is skipped
                timed[conf] = float("inf")
                note += f"{conf}: {type(e).__name__}; "
        best = min(timed, key=timed.get)
        fn, ms = fns[best], timed[best]
        note += f"config {best}"
        config_ms = timed
    else:
        ms, config_ms = None, None
    if c.check_correctness and n <= 8192:
        out = fn()
        ref = ref_prefill(q.float(), k.float(), v.float(), plan, scale)
        note = (note + "; " if note else "") + check_close(out, ref)
    if ms is None:
        fn()  # flex compiles here
        ms = median_ms(fn, max(c.warmup_ms, c.prefill_heat_ms), c.rep_ms)
    extra = {"config_ms": config_ms} if config_ms else {}
    if c.adjacent_baseline and be != "sdpa_cudnn":
        # dense cuDNN on the same inputs, timed right after this row: the same clocks and power state (H100,
        # run 11: StreamingLLM at 32K timed after 20 s of dense work ran 5-9 % slower than on a cool GPU)
        extra["cudnn_adjacent_ms"] = median_ms(sdpa_fn("sdpa_cudnn"), c.warmup_ms, c.rep_ms)
    blocks, dense_blocks = computed_blocks(plan, n, Hq // Hkv)
    return {"ms": ms, "flops": flops, "density": pairs / causal, "blocks": blocks * B, "causal_blocks": dense_blocks * B,
            "block_fraction": blocks / dense_blocks, "note": note, **extra}


def computed_blocks(plan, n: int, group: int) -> tuple[int, int]:
    """128 x 128 blocks a plan visits (partial boundary blocks included), over every query head; and the
    blocks dense causal attention visits."""
    from sparsebench.kernels.flex import block_tables

    kvn, _, fn, _ = block_tables(plan, n, group, "cpu")
    nb = -(-n // 128)
    return int(kvn.sum() + fn.sum()), nb * (nb + 1) // 2 * kvn.shape[1]


# ------------------------------------------------------------------------------------------------ decode
def decode_row(c: LatencyAttentionConfig, m: dict) -> dict:
    from sparsebench.kernels import bench_steps
    from sparsebench.timing import graph_ms

    l2 = c.decode_l2
    # a graph holds the step of `decode_layers` layers, each with its own KV (as a model's decode graph does):
    # the graph launch is paid once per layers, not per layer, and a layer's pages are not in L2 for the next
    layers = c.decode_layers if m["backend"] != "flex" else 1
    dtype = resolve_dtype(c.dtype, torch.device("cuda"))

    def build():
        built = [bench_steps.build_decode_step(m["policy"], m["backend"], m["batch"], m["length"], c.n_heads,
                                               c.n_kv_heads, c.head_dim, dtype, c) for _ in range(layers)]
        return (lambda i: [b[0](i) for b in built]), built[0][1], built

    def set_conf(conf):
        bench_steps.PAGED_OPTS, bench_steps.SELECT_OPTS = decode_launch_opts(conf)

    sweep = m["backend"] == "triton" and m["policy"] != "alisa_swa"  # rows that run the paged kernel
    best_conf, config_ms = None, {}
    if sweep and len(c.decode_configs) > 1:  # the fastest launch config (the losers' KV freed before the next)
        for conf in c.decode_configs:
            set_conf(conf)
            try:
                step, steps, built = build()
                config_ms[conf] = graph_ms(step, steps, l2=l2, replays=50) / layers
            except (ValueError, RuntimeError) as e:  # e.g. 'p' off Hopper: recorded, the sweep goes on
                config_ms[conf] = f"failed: {e}"[:200]
                continue
            finally:
                step = built = None
                torch.cuda.empty_cache()
            if best_conf is None or config_ms[conf] < config_ms[best_conf]:
                best_conf = conf
        if best_conf is None:
            raise RuntimeError(f"every decode config failed: {config_ms}")
    elif sweep:
        best_conf = c.decode_configs[0]
    bench_steps.PAGED_OPTS, bench_steps.SELECT_OPTS = {}, {}
    if best_conf:
        set_conf(best_conf)
    step, steps, built = build()
    info = built[0][2]
    note = f"config {best_conf}" if best_conf else ""
    if c.check_correctness and m["length"] <= 8192 and info.get("check"):
        note = (note + "; " if note else "") + info["check"]()
    extra = {"config_ms": config_ms} if config_ms else {}
    if m["backend"] == "flex":
        from sparsebench.timing import median_ms

        ms = median_ms(lambda: [step(i) for i in range(steps)], c.warmup_ms, c.rep_ms) / steps
    else:
        per_pos = [t / layers for t in graph_ms(step, steps, l2=l2, per_step=True)]
        ms = sum(per_pos) / steps
        if steps > 1:  # where a reuse cycle's time goes: the selector step and a reuse step
            extra.update(select_step_ms=per_pos[0], reuse_step_ms=per_pos[1])
        for name in info.get("parts", {}):  # each kernel of the step alone
            extra[f"{name}_ms"] = graph_ms(lambda i, n=name: [b[2]["parts"][n]() for b in built],
                                           l2=l2) / layers
    bench_steps.PAGED_OPTS, bench_steps.SELECT_OPTS = {}, {}
    del built
    torch.cuda.empty_cache()
    return {"ms": ms, "bytes": info["bytes"], "note": note, "layers_per_graph": layers, **extra,
            **{k: v for k, v in info.items() if k not in ("bytes", "check", "parts")}}
