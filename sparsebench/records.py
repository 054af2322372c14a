"""Records: one directory per run, found again from the config hash.

    <paths.output_dir>/runs/<task>/<model>/<policy>-<backend>-<hash12>/
        result.json    config, config hash, status (running | ok | failed | oom) and error,
                       metrics, KV accounting, timings, environment; replaced atomically
        samples.jsonl  one line per evaluated sample (id, prompt hash, prediction,
                       references, score, ...), appended and flushed as it goes
        <artifacts>    tables and plots the task writes

A rerun with the same config hash skips a run whose status is ok and resumes any other from
the samples already written. The hash covers what changes results (model, policy, backend,
task, seed), not where things are written or logged.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SCHEMA = 1
NON_SEMANTIC = ("paths", "logger", "hydra", "resume", "run_name")


def config_hash(cfg: dict) -> str:
    semantic = {k: v for k, v in cfg.items() if k not in NON_SEMANTIC}
    blob = json.dumps(semantic, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def write_json_atomic(path: Path, obj: Any) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(s))


class RunRecord:
    def __init__(self, output_dir: str | Path, cfg: dict):
        self.cfg = cfg
        self.hash = config_hash(cfg)
        name = f"{_slug(cfg['policy']['name'])}-{_slug(cfg['backend']['name'])}-{self.hash}"
        self.dir = Path(output_dir) / "runs" / _slug(cfg["task"]["name"]) / _slug(cfg["model"]["name"]) / name
        self.result_path = self.dir / "result.json"
        self.samples_path = self.dir / "samples.jsonl"

    # ------------------------------------------------------------------ reading
    def previous(self) -> dict | None:
        try:
            return json.loads(self.result_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def finished(self) -> bool:
        prev = self.previous()
        return bool(prev and prev.get("status") == "ok" and prev.get("config_hash") == self.hash)

    def load_samples(self) -> dict[str, dict]:
        """Samples already written (a line cut short by a crash is dropped)."""
        done: dict[str, dict] = {}
        if not self.samples_path.exists():
            return done
        with open(self.samples_path) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                done[row["id"]] = row
        return done

    # ------------------------------------------------------------------ writing
    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.samples_path.exists():  # drop a partial last line left by a crash
            lines = self.samples_path.read_text().splitlines(keepends=True)
            good = [ln for ln in lines if ln.endswith("\n")]
            if len(good) != len(lines):
                self.samples_path.write_text("".join(good))
        self._samples = open(self.samples_path, "a")

    def append_sample(self, row: dict) -> None:
        self._samples.write(json.dumps(row, sort_keys=True, default=str) + "\n")
        self._samples.flush()
        os.fsync(self._samples.fileno())

    def write_result(self, result: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.result_path, {"schema": SCHEMA, "config_hash": self.hash, "config": self.cfg, **result})

    def close(self) -> None:
        f = getattr(self, "_samples", None)
        if f is not None:
            f.close()


def environment() -> dict:
    """Versions, device and git revision, for the record."""
    import importlib.metadata as md

    env: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(), "time": time.time(),
                           "host": platform.node(), "pid": os.getpid()}
    for pkg in ("sparsebench", "torch", "transformers", "triton", "hydra-core", "omegaconf", "wandb"):
        try:
            env[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            env[pkg] = None
    try:
        import torch

        env["cuda"] = torch.version.cuda
        env["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
        env["threads"] = torch.get_num_threads()
    except Exception:  # pragma: no cover - torch is a dependency
        pass
    try:
        root = Path(__file__).resolve().parent.parent
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=5)
        if sha.returncode == 0:
            env["git_sha"] = sha.stdout.strip()
            env["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return env
