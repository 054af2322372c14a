"""The task contract: build samples deterministically, run each through the model, score, aggregate.

    Task(cfg)                        cfg: the task's dataclass (its Hydra schema, `Task.Config`)
    validate(arch, model_cfg)        bad input before any model loads (ConfigError)
    samples(tokenizer) -> [Sample]   deterministic from (seed, tokenizer, config)
    run_sample(sample, runtime) -> dict   one record line: prediction, references, score, ...
    aggregate(rows) -> dict          the benchmark's own metrics
    artifacts(rows, run_dir) -> dict name -> path (tables, plots)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from sparsebench.registry import Registry

TASKS: Registry[type["Task"]] = Registry("task")


@dataclass
class TaskConfig:
    name: str = ""
    limit: Optional[int] = None  # run only the first `limit` samples (quick screening)


@dataclass
class Sample:
    id: str
    prompt_ids: list[int]
    references: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt_hash(self) -> str:
        return hashlib.sha256(",".join(map(str, self.prompt_ids)).encode()).hexdigest()[:16]


@dataclass
class Runtime:
    """What a task needs to run a sample."""

    model: Any
    tokenizer: Any
    session: Any
    seed: int = 42


class Task:
    Config: ClassVar[type] = TaskConfig
    primary: ClassVar[str] = "score"  # the headline metric (higher is better unless listed in LOWER_IS_BETTER)

    def __init__(self, cfg, seed: int = 42):
        self.cfg = cfg
        self.seed = seed

    def validate(self, arch, model_cfg) -> None:
        pass

    def max_context(self) -> int:
        return 0

    def samples(self, tokenizer) -> list[Sample]:
        raise NotImplementedError

    def run_sample(self, sample: Sample, rt: Runtime) -> dict:
        raise NotImplementedError

    def aggregate(self, rows: list[dict]) -> dict:
        scores = [r["score"] for r in rows if "score" in r]
        return {"score": sum(scores) / len(scores) if scores else 0.0, "n_samples": len(rows)}

    def artifacts(self, rows: list[dict], run_dir) -> dict:
        return {}
