"""`sparsebench-train`: train the embedded testbed model from scratch (one GPU, resumable across commands).

    sparsebench-train train --config conf/train/testbed.yaml [key=value ...]    # one command's worth
    sparsebench-train export --config conf/train/testbed.yaml                   # bf16 safetensors + tokenizer
    sparsebench-train curves --config conf/train/testbed.yaml                   # loss curves PNG

Recipe (conf/train/testbed.yaml): a Llama-architecture causal LM with GQA, trained on sequences made by
the evals' own generators (sparsebench.testbed_data), with a length curriculum (contexts growing from
`min_len` to `max_len` over the first `curriculum_end` of training) and dense supervision (several
questions per context; loss 1 on answer tokens, `lm_weight` on the rest). Progress is measured in
training seconds accumulated across commands, so a run split into several time-limited commands
follows one schedule; each command stops after `command_minutes`, saving a checkpoint (fp32 weights
as safetensors shards of <= 12 MB, plus metadata; the optimizer restarts with a short warm-up on
resume). Fixed seed: every batch is a pure function of (seed, step, length).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections import defaultdict, deque
from pathlib import Path

from sparsebench.errors import ConfigError
from sparsebench.models import resolve_asset

_BUILDER = None


def _worker_init(tok_dir: str, seed: int, lm_weight: float):
    global _BUILDER
    from transformers import AutoTokenizer

    from sparsebench.testbed_data import Builder

    _BUILDER = Builder(AutoTokenizer.from_pretrained(tok_dir), seed, lm_weight)


def _make_batch(args):
    """One batch, built in a worker; arrays (not lists) so the main process unpickles and uploads it cheaply."""
    import numpy as np

    step, L, n_seq, mixture = args
    ids, ws, tasks = _BUILDER.batch(step, L, n_seq, mixture)
    return np.asarray(ids, np.int64), np.asarray(ws, np.float32), tasks


def load_config(path: str, overrides: list[str]):
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(path)
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))


def model_config(cfg):
    from omegaconf import OmegaConf
    from transformers import LlamaConfig

    return LlamaConfig(**OmegaConf.to_container(cfg.model))


def length_at(cfg, p: float, rng) -> int:
    """The curriculum: the longest context grows geometrically from min_len to max_len until `curriculum_end`;
    a step takes that length most of the time and a shorter power of two otherwise."""
    t = cfg.train
    frac = min(1.0, p / t.curriculum_end)
    cur = t.min_len * (t.max_len / t.min_len) ** frac
    cur = max(t.min_len, int(cur) // 256 * 256 or t.min_len)
    if rng.random() < t.longest_share:
        return cur
    shorter = [2 ** k for k in range(int(math.log2(t.min_len)), int(math.log2(cur)) + 1) if 2 ** k <= cur]
    return rng.choice(shorter)


def lr_at(cfg, p: float, since_resume: int) -> float:
    t = cfg.train
    if p < t.warmup_frac:
        lr = t.lr * p / t.warmup_frac
    else:
        q = (p - t.warmup_frac) / max(1e-9, 1 - t.warmup_frac)
        lr = t.lr * (t.final_lr_frac + (1 - t.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(q, 1.0))))
    if since_resume < t.resume_warmup_steps:  # the optimizer state restarted: warm it up again
        lr *= (since_resume + 1) / t.resume_warmup_steps
    return lr


# ---------------------------------------------------------------------------------------------- checkpoints
def save_ckpt(model, out: Path, meta: dict, shard_mb: int = 12):
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()  # one copy of a tied matrix
    state = {k: v.detach().float().contiguous().cpu().clone() for k, v in model.state_dict().items() if k not in tied}
    shards, cur, size = [], {}, 0
    for k, v in state.items():
        b = v.numel() * 4
        if cur and size + b > shard_mb * 2 ** 20:
            shards.append(cur)
            cur, size = {}, 0
        cur[k], size = v, size + b
    shards.append(cur)
    for old in out.glob("ckpt-*.safetensors"):
        old.unlink()
    for i, s in enumerate(shards):
        save_file(s, str(out / f"ckpt-{i:05d}.safetensors"))
    tmp = out / "meta.json.tmp"
    tmp.write_text(json.dumps({**meta, "shards": len(shards)}, indent=1))
    os.replace(tmp, out / "meta.json")


def load_ckpt(model, out: Path) -> dict | None:
    from safetensors.torch import load_file

    meta_path = out / "meta.json"
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    state = {}
    for i in range(meta["shards"]):
        state.update(load_file(str(out / f"ckpt-{i:05d}.safetensors")))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - ({"lm_head.weight"} if model.config.tie_word_embeddings else set()):
        raise SystemExit(f"checkpoint under {out} does not match the model: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    return meta


# ---------------------------------------------------------------------------------------------- quick eval
def quick_eval(model, tok, cfg) -> dict:
    """Greedy passkey / RULER accuracy of the current weights on the eval tasks' own prompts, generated the way
    the tasks generate (`Runtime.generate`: the same greedy loop and stop tokens)."""
    import torch
    from omegaconf import OmegaConf

    from sparsebench.evals import metrics as M
    from sparsebench.evals.base import Runtime
    from sparsebench.evals.needle import Needle, NeedleConfig
    from sparsebench.evals.ruler import Ruler, RulerConfig

    class _A:
        max_positions = cfg.model.max_position_embeddings

    class _Mc:
        name, allow_extrapolation = "testbed", False

    out = {}
    model.eval()
    dev = next(model.parameters()).device

    runtime = Runtime(model, tok, session=None)  # generation only: no attention session attached

    def gen(ids, n):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            return runtime.generate(ids, n).text

    nd = Needle(OmegaConf.structured(NeedleConfig(lengths=list(cfg.eval.lengths), depths=[0, 25, 50, 75, 100])), 7)
    nd.validate(_A(), _Mc())
    for s in nd.samples(tok):
        key = f"passkey/{s.meta['length']}"
        out.setdefault(key, []).append(nd.score(gen(s.prompt_ids, 8), s.references[0]))
    rt = Ruler(OmegaConf.structured(RulerConfig(tasks=list(cfg.eval.ruler_tasks), lengths=[cfg.eval.ruler_length],
                                                num_samples=cfg.eval.samples)), 7)
    rt.validate(_A(), _Mc())
    for s in rt.samples(tok):
        pred = Ruler.postprocess(gen(s.prompt_ids, s.meta["max_new_tokens"]))
        out.setdefault(f"{s.meta['task']}/{s.meta['length']}", []).append(
            M.string_match_all([pred], [s.references]) / 100)
    model.train()
    return {k: sum(v) / len(v) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------- training
def train(cfg) -> None:
    import random

    import torch
    import torch.nn.functional as F
    from multiprocessing import get_context
    from transformers import AutoTokenizer, LlamaForCausalLM

    t = cfg.train
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok_dir = resolve_asset(cfg.tokenizer)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(cfg.seed)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = LlamaForCausalLM(model_config(cfg))
    meta = load_ckpt(model, out) or {"step": 0, "train_seconds": 0.0, "commands": 0}
    model.to(dev).train()
    model.config._attn_implementation = "sdpa"
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0}],
                            lr=t.lr, betas=(0.9, 0.95), fused=dev.type == "cuda")
    total_s = t.total_minutes * 60
    step, train_s = meta["step"], meta["train_seconds"]
    print(f"[train] {n_params / 1e6:.2f}M parameters, resuming at step {step}, {train_s / 60:.1f} of "
          f"{t.total_minutes} min trained", flush=True)
    mixture = dict(cfg.mixture)
    pool = get_context("spawn").Pool(t.workers, initializer=_worker_init, initargs=(tok_dir, cfg.seed, t.lm_weight))
    plan_rng = random.Random(cfg.seed * 7 + step)
    queue: deque = deque()
    est_step_s = 0.3

    def enqueue(k: int):
        p_future = min(1.0, (train_s + len(queue) * est_step_s) / total_s)
        L = length_at(cfg, p_future, plan_rng)
        n_seq = max(1, t.tokens_per_batch // L)
        queue.append((k, L, pool.apply_async(_make_batch, ((k, L, n_seq, mixture),))))

    for k in range(t.prefetch):
        enqueue(step + k)
    log = open(out / "train_log.jsonl", "a")
    cmd_start = time.time()
    last_ckpt = time.time()
    since_resume = 0
    agg = defaultdict(list)
    while train_s < total_s and time.time() - cmd_start < t.command_minutes * 60:
        k, L, fut = queue.popleft()
        ids, ws, tasks = fut.get()
        enqueue(k + t.prefetch)
        t0 = time.time()
        x = torch.from_numpy(ids).to(dev)
        w = torch.from_numpy(ws).to(dev)
        lr = lr_at(cfg, train_s / total_s, since_resume)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            logits = model(input_ids=x).logits
        nll = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
                              reduction="none").view(x.shape[0], -1)
        wt = w[:, 1:]
        loss = (nll * wt).sum() / wt.sum().clamp(min=1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dt = time.time() - t0
        est_step_s = 0.9 * est_step_s + 0.1 * dt
        train_s += dt
        step += 1
        since_resume += 1
        ans = (wt == 1.0).float()
        n_ans = ans.sum(1)
        per_seq = ((nll * ans).sum(1) / n_ans.clamp(min=1)).tolist()
        for task, v, a in zip(tasks, per_seq, n_ans.tolist()):
            if a > 0 and task != "lm":
                agg[task].append(v)
        agg["loss"].append(loss.item())
        if step % t.log_every == 0:
            row = {"step": step, "train_min": train_s / 60, "L": L, "lr": lr, "gnorm": float(gnorm),
                   "tok_per_s": L * len(ids) / dt, **{f"{k2}": sum(v) / len(v) for k2, v in agg.items()}}
            log.write(json.dumps(row) + "\n")
            log.flush()
            print(f"[train] step {step} {train_s / 60:.2f}min L={L} loss={row['loss']:.3f} lr={lr:.2e} "
                  f"{row['tok_per_s'] / 1e3:.0f}k tok/s " + " ".join(f"{k2}={v:.2f}" for k2, v in row.items()
                                                                    if k2 in mixture), flush=True)
            agg.clear()
        if time.time() - last_ckpt > t.ckpt_every_s:
            save_ckpt(model, out, {**meta, "step": step, "train_seconds": train_s})
            last_ckpt = time.time()
    pool.terminate()
    meta = {**meta, "step": step, "train_seconds": train_s, "commands": meta.get("commands", 0) + 1}
    save_ckpt(model, out, meta)
    ev = quick_eval(model, tok, cfg)
    (out / f"eval_cmd{meta['commands']}.json").write_text(json.dumps({"step": step, "train_min": train_s / 60, **ev}, indent=1))
    print("[eval] " + " ".join(f"{k}={v:.2f}" for k, v in ev.items()), flush=True)


def export(cfg) -> Path:
    """bf16 safetensors (shards <= 16 MB), config.json, generation_config.json and the tokenizer."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaForCausalLM

    model = LlamaForCausalLM(model_config(cfg))
    meta = load_ckpt(model, Path(cfg.out_dir))
    if meta is None:
        raise SystemExit(f"no checkpoint under {cfg.out_dir}")
    model = model.to(torch.bfloat16)
    dst = Path(resolve_asset(cfg.export_dir))
    dst.mkdir(parents=True, exist_ok=True)
    for old in dst.glob("model*.safetensors*"):
        old.unlink()
    model.generation_config = GenerationConfig(bos_token_id=cfg.model.bos_token_id, eos_token_id=cfg.model.eos_token_id,
                                               pad_token_id=cfg.model.pad_token_id, do_sample=False)
    model.save_pretrained(dst, max_shard_size="16MB", safe_serialization=True)
    AutoTokenizer.from_pretrained(resolve_asset(cfg.tokenizer)).save_pretrained(dst)
    (dst / "training.json").write_text(json.dumps({"step": meta["step"], "train_minutes": meta["train_seconds"] / 60,
                                                   "commands": meta.get("commands")}, indent=1))
    total = sum(f.stat().st_size for f in dst.glob("model*.safetensors"))
    print(f"[export] {dst}: {total / 2**20:.1f} MB of bf16 weights")
    return dst


def curves(cfg, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(x) for x in (Path(cfg.out_dir) / "train_log.jsonl").read_text().splitlines() if x.strip()]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    x = [r["train_min"] for r in rows]
    axes[0].plot(x, [r["loss"] for r in rows], lw=1)
    axes[0].set_xlabel("training minutes (H100)")
    axes[0].set_ylabel("weighted loss")
    axes[0].set_yscale("log")
    ax2 = axes[0].twinx()
    ax2.plot(x, [r["L"] for r in rows], color="gray", lw=0.6, alpha=0.6)
    ax2.set_ylabel("context length (curriculum)")
    for task in cfg.mixture:
        if task == "lm":
            continue
        pts = [(r["train_min"], r[task]) for r in rows if task in r]
        if pts:
            axes[1].plot(*zip(*pts), lw=1, label=task)
    axes[1].set_xlabel("training minutes (H100)")
    axes[1].set_ylabel("answer-token loss")
    axes[1].set_yscale("log")
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    pattern = Path(resolve_asset(cfg.calibrate.out_dir)) if "calibrate" in cfg else None
    if pattern is not None and (pattern / "calibration_log.jsonl").exists():
        gates_png(pattern, str(Path(png).with_name("gates.png")))


def gates_png(pattern: Path, png: str) -> None:
    """The calibrated gates (layers x KV heads, retrieval heads at sparsity 0.5 outlined) and the calibration loss."""
    import matplotlib.pyplot as plt
    import numpy as np

    from sparsebench.policies.head_pattern import binarize, load_gates

    g = np.clip(load_gates(pattern), 0, 1)
    keep = binarize(g, 0.5)
    rows = [json.loads(x) for x in (pattern / "calibration_log.jsonl").read_text().splitlines() if x.strip()]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1.6]})
    im = axes[0].imshow(g, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for (i, j), v in np.ndenumerate(g):
        axes[0].text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black",
                     fontweight="bold" if keep[i, j] else "normal")
    axes[0].set_xlabel("KV head")
    axes[0].set_ylabel("layer")
    axes[0].set_title("gates (bold: retrieval heads at sparsity 0.5)", fontsize=9)
    fig.colorbar(im, ax=axes[0])
    steps = [r["step"] for r in rows]
    axes[1].plot(steps, [r["distill"] for r in rows], lw=1, label="distillation MSE")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("calibration step")
    ax2 = axes[1].twinx()
    ax2.plot(steps, [r["mean_gate"] for r in rows], color="C1", lw=1, label="mean gate")
    ax2.set_ylabel("mean gate")
    axes[1].legend(loc="upper left", fontsize=8)
    ax2.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def calibrate(cfg) -> None:
    """DuoAttention gate calibration (sparsebench.calibrate) with the `calibrate:` section of the config."""
    from omegaconf import OmegaConf

    from sparsebench.calibrate import CalibrationConfig, run

    known = set(CalibrationConfig.__dataclass_fields__)
    section = OmegaConf.to_container(cfg.get("calibrate") or OmegaConf.create({}))
    for k in section:
        if k not in known:
            raise ConfigError(f"calibrate.{k}", section[k], f"a known key ({', '.join(sorted(known))})")
    c = CalibrationConfig(**section)
    c.check()
    run(c)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train / export the sparsebench testbed model.")
    ap.add_argument("command", choices=["train", "export", "curves", "calibrate"])
    ap.add_argument("--config", default=None, help="default: the package's conf/train/testbed.yaml")
    ap.add_argument("--png", default="docs/testbed_loss.png")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    if args.config is None:
        import sparsebench.conf

        args.config = str(Path(sparsebench.conf.__file__).parent / "train" / "testbed.yaml")
    cfg = load_config(args.config, args.overrides)
    try:
        _dispatch(args, cfg)
    except ConfigError as err:
        raise SystemExit(err.one_line().replace("sparsebench:", "sparsebench-train:", 1))


def check_train_config(cfg) -> None:
    """Bad input in the training recipe, before any data or model is built."""
    from sparsebench.testbed_data import TASK_NAMES

    t = cfg.train
    for task, share in cfg.mixture.items():
        if task not in TASK_NAMES:
            raise ConfigError(f"mixture.{task}", share, f"a task of {', '.join(TASK_NAMES)}")
        if share < 0:
            raise ConfigError(f"mixture.{task}", share, "a share >= 0")
    if sum(cfg.mixture.values()) <= 0:
        raise ConfigError("mixture", dict(cfg.mixture), "at least one task with a positive share")
    if not 1 <= t.min_len <= t.max_len <= cfg.model.max_position_embeddings:
        raise ConfigError("train.max_len", t.max_len, f"min_len ({t.min_len}) <= max_len <= "
                          f"model.max_position_embeddings ({cfg.model.max_position_embeddings})")
    for key in ("total_minutes", "command_minutes", "lr", "tokens_per_batch", "workers", "prefetch"):
        if t[key] <= 0:
            raise ConfigError(f"train.{key}", t[key], "a positive number")
    if not 0 < t.curriculum_end <= 1 or not 0 <= t.longest_share <= 1:
        raise ConfigError("train.curriculum_end", t.curriculum_end, "in (0, 1], with train.longest_share in [0, 1]")


def _dispatch(args, cfg) -> None:
    if args.command == "train":
        check_train_config(cfg)
        train(cfg)
    elif args.command == "export":
        export(cfg)
    elif args.command == "calibrate":
        calibrate(cfg)
    else:
        curves(cfg, args.png)


if __name__ == "__main__":
    main()
