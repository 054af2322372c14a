"""One run: validate everything, then skip / resume / run, and always leave a record.

`build(cfg)` makes the policy, checks the backend, the model and the task against each other
and raises `ConfigError` on bad input; it loads no weights, so the CLI calls it for every cell
of a sweep before anything runs. `run(cfg)` executes a built run and writes its record.
"""

from __future__ import annotations

import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sparsebench.arch import ModelArch
from sparsebench.errors import ConfigError


@dataclass
class RunSpec:
    cfg: DictConfig
    plain: dict
    arch: ModelArch
    policy: Any
    backend: str
    task: Any


def plain_config(cfg: DictConfig) -> dict:
    d = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    d.pop("hydra", None)
    return d


def build(cfg: DictConfig) -> RunSpec:
    from sparsebench.evals import TASKS
    from sparsebench.kernels import backend_names, resolve_backend_name
    from sparsebench.loggers import make_logger
    from sparsebench.models import model_arch, resolve_device
    from sparsebench.policies import make_policy

    plain = plain_config(cfg)
    arch = model_arch(cfg.model)
    policy = make_policy(plain["policy"])
    policy.setup(arch)
    name = cfg.backend.name
    if name not in backend_names():
        raise ConfigError("backend.name", name, "one of " + ", ".join(backend_names()))
    backend = resolve_backend_name(name, policy, resolve_device(cfg.model.device))
    task = TASKS.get(cfg.task.name)(cfg.task, seed=cfg.seed)
    task.validate(arch, cfg.model)
    make_logger(cfg.logger)  # checks the logger's fields
    return RunSpec(cfg, plain, arch, policy, backend, task)


def run(spec: RunSpec, progress: bool = True) -> dict:
    import torch
    from tqdm import tqdm

    from sparsebench.attention import attach
    from sparsebench.evals import Runtime
    from sparsebench.loggers import make_logger
    from sparsebench.models import load_model
    from sparsebench.records import RunRecord, environment

    cfg = spec.cfg
    rec = RunRecord(cfg.paths.output_dir, spec.plain)
    if cfg.resume and rec.finished():
        print(f"[sparsebench] skip (finished): {rec.dir}")
        return rec.previous()
    if not cfg.resume and rec.samples_path.exists():
        rec.samples_path.unlink()
    rec.start()
    started = time.time()
    base = {"status": "running", "started": started, "backend_resolved": spec.backend,
            "policy_variant": spec.policy.variant(), "env": environment(), "record_dir": str(rec.dir)}
    rec.write_result(base)
    logger = make_logger(cfg.logger)
    logger.start(spec.plain, rec.dir, cfg.run_name or rec.dir.name)
    status, error, metrics, kv, artifacts, timings = "ok", None, {}, {}, {}, {}
    rows: list[dict] = []
    resumed = 0
    try:
        t0 = time.perf_counter()
        needs_model = spec.task.needs_model
        model, tok = load_model(cfg.model) if needs_model else (None, None)
        timings["load_s"] = time.perf_counter() - t0
        with (attach(model, spec.policy, spec.backend, arch=spec.arch) if needs_model else nullcontext()) as session:
            samples = spec.task.apply_limit(spec.task.samples(tok), cfg.task.get("limit"))
            done = rec.load_samples()
            rt = Runtime(model, tok, session, cfg.seed, rec.dir)
            t1 = time.perf_counter()
            new_tokens = 0
            bar = tqdm(samples, desc=f"{cfg.task.name} {spec.policy.name}/{spec.backend}", disable=not progress,
                       unit="sample")
            for s in bar:
                if s.id in done:
                    rows.append(done[s.id])
                    resumed += 1
                    continue
                row = {"id": s.id, "prompt_hash": s.prompt_hash, "prompt_tokens": len(s.prompt_ids),
                       "references": s.references, **spec.task.run_sample(s, rt)}
                rec.append_sample(row)
                logger.log_sample(row)
                rows.append(row)
                new_tokens += len(s.prompt_ids)
                bar.set_postfix(score=f"{sum(r.get('score', 0) for r in rows) / len(rows):.3f}")
            wall = time.perf_counter() - t1
            n_new = len(rows) - resumed
            timings.update({"eval_s": wall, "samples_per_s": n_new / wall if wall > 0 else 0.0,
                            "prompt_tokens_per_s": new_tokens / wall if wall > 0 else 0.0})
            for key in ("prefill_s", "decode_s_per_token"):
                vals = [r[key] for r in rows if key in r]
                if vals:
                    timings[f"mean_{key}"] = sum(vals) / len(vals)
            metrics = spec.task.aggregate(rows)
            kv = session.stats.summary(spec.arch.n_layers) if session is not None else {}
            artifacts = spec.task.artifacts(rows, rec.dir)
    except torch.cuda.OutOfMemoryError as e:
        status, error = "oom", {"type": type(e).__name__, "message": str(e), "traceback": traceback.format_exc()}
    except Exception as e:  # a failed cell is recorded; the caller decides whether to stop
        status, error = "failed", {"type": type(e).__name__, "message": str(e), "traceback": traceback.format_exc()}
    finally:
        if metrics and spec.task.primary in metrics:
            metrics["primary"] = spec.task.primary
        result = {**base, "status": status, "error": error, "metrics": metrics, "kv": kv, "timings": timings,
                  "finished": time.time(), "n_samples": len(rows), "resumed_samples": resumed,
                  "artifacts": {k: v for k, v in artifacts.items() if isinstance(v, str)}}
        rec.write_result(result)
        rec.close()
        try:
            if status == "ok":
                images = {k: v for k, v in result["artifacts"].items() if v.endswith(".png")}
                logger.log_result({"metrics": metrics, "kv": kv, "timings": timings}, images)
        finally:
            logger.finish(status == "ok")
    _print_summary(spec, result)
    return result


def _print_summary(spec: RunSpec, result: dict) -> None:
    m = result.get("metrics") or {}
    kv = result.get("kv") or {}
    key = spec.task.primary
    line = (f"[sparsebench] {result['status']}: task={spec.cfg.task.name} model={spec.cfg.model.name} "
            f"policy={spec.policy.name} backend={spec.backend} {key}={m.get(key, float('nan')):.4f} "
            f"density_decode={kv.get('density_decode', float('nan')):.3f} "
            f"kv_held_peak_MB={kv.get('kv_bytes_held_peak', 0) / 2**20:.3f} -> {result['record_dir']}")
    print(line)
    if result["status"] != "ok" and result.get("error"):
        print(f"[sparsebench] error: {result['error']['type']}: {result['error']['message']}")


def record_failure(cfg: DictConfig, err: Exception) -> None:
    """A sweep cell whose config is invalid still gets a record saying so."""
    from sparsebench.records import RunRecord

    try:
        plain = plain_config(cfg)
        rec = RunRecord(cfg.paths.output_dir, plain)
    except Exception:  # nothing usable to name the record by
        return
    rec.write_result({"status": "failed", "error": {"type": type(err).__name__, "message": str(err)},
                      "finished": time.time(), "record_dir": str(rec.dir)})
