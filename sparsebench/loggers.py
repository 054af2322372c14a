"""Loggers fed from the record: `none` and `wandb` (offline by default).

W&B gets the resolved config as a plain dict, every metric of the record, a per-sample table
and the task's images; the runner calls `finish` in a `finally`, so a crashed run is closed
with its exit code rather than left dangling.
"""

from __future__ import annotations

from pathlib import Path

from sparsebench.errors import ConfigError
from sparsebench.registry import Registry

LOGGERS: Registry[type["Logger"]] = Registry("logger")


class Logger:
    def __init__(self, cfg):
        self.cfg = cfg

    def start(self, config: dict, run_dir: Path, name: str) -> None:
        pass

    def log_sample(self, row: dict) -> None:
        pass

    def log_result(self, metrics: dict, images: dict[str, str]) -> None:
        pass

    def finish(self, ok: bool) -> None:
        pass


@LOGGERS.register("none")
class NoLogger(Logger):
    pass


@LOGGERS.register("wandb")
class WandbLogger(Logger):
    MODES = ("offline", "online", "disabled")

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.mode not in self.MODES:
            raise ConfigError("logger.mode", cfg.mode, "one of " + ", ".join(self.MODES))
        self.run = None
        self.rows: list[dict] = []

    def start(self, config, run_dir, name):
        import wandb

        self.run = wandb.init(
            project=self.cfg.project, entity=self.cfg.entity, group=self.cfg.group, tags=list(self.cfg.tags),
            name=name, config=config, dir=str(run_dir), mode=self.cfg.mode, reinit="finish_previous",
        )

    def log_sample(self, row):
        self.rows.append(row)

    def log_result(self, metrics, images):
        import wandb

        flat = {k: v for k, v in _flatten(metrics).items() if isinstance(v, (int, float, bool))}
        payload = dict(flat)
        if self.rows:
            cols = sorted({k for r in self.rows for k in r if isinstance(r[k], (int, float, str, bool))})
            payload["samples"] = wandb.Table(columns=cols, data=[[r.get(c) for c in cols] for r in self.rows])
        for key, path in images.items():
            payload[key] = wandb.Image(str(path))
        self.run.log(payload)
        self.run.summary.update(flat)

    def finish(self, ok):
        if self.run is not None:
            self.run.finish(exit_code=0 if ok else 1)
            self.run = None


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def make_logger(cfg) -> Logger:
    return LOGGERS.get(cfg.name)(cfg)
