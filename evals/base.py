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
class Completion:
    text: str
    tokens: list[int]
    prefill_s: float = 0.0
    decode_s_per_token: float = 0.0

    def timings(self) -> dict:
        return {"prefill_s": self.prefill_s, "decode_s_per_token": self.decode_s_per_token,
                "generated_tokens": len(self.tokens)}


@dataclass
class Runtime:
    """What a task needs to run a sample: the model under its policy, the tokenizer, and generation."""

    model: Any
    tokenizer: Any
    session: Any
    seed: int = 42
    run_dir: Any = None  # where a task may write files next to the record

    def generate(self, prompt_ids: list[int], max_new_tokens: int, stop_ids: set[int] | None = None,
                 min_new_tokens: int = 0) -> Completion:
        """Greedy continuation of one prompt, decoded without special tokens."""
        from sparsebench.generation import greedy_generate

        tok = self.tokenizer
        stop = default_stop_ids(tok, self.model) if stop_ids is None else stop_ids
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        gen = greedy_generate(self.model, [prompt_ids], max_new_tokens, stop, pad, min_new_tokens=min_new_tokens)
        return Completion(tok.decode(gen.tokens[0], skip_special_tokens=True), gen.tokens[0], gen.prefill_s,
                          gen.decode_s / max(gen.steps, 1))


def default_stop_ids(tokenizer, model=None) -> set[int]:
    """The tokenizer's EOS id and the model's generation-config EOS ids (e.g. Llama 3's <|eot_id|>)."""
    ids: set[int] = set()
    gen_cfg = getattr(model, "generation_config", None)
    for eos in (tokenizer.eos_token_id, getattr(gen_cfg, "eos_token_id", None)):
        if isinstance(eos, (list, tuple, set)):
            ids |= set(eos)
        elif eos is not None:
            ids.add(eos)
    return ids


class Task:
    Config: ClassVar[type] = TaskConfig
    primary: ClassVar[str] = "score"  # the headline metric (higher is better unless listed in LOWER_IS_BETTER)
    needs_model: ClassVar[bool] = True  # False: the task runs without loading a model (e.g. latency_attention)

    def __init__(self, cfg, seed: int = 42):
        self.cfg = cfg
        self.seed = seed

    def validate(self, arch, model_cfg) -> None:
        pass

    def max_context(self) -> int:
        return 0

    def samples(self, tokenizer) -> list[Sample]:
        raise NotImplementedError

    def apply_limit(self, samples: list[Sample], limit: int | None) -> list[Sample]:
        """`task.limit`: keep the first `limit` samples (quick screening)."""
        return samples[:limit] if limit else samples

    def run_sample(self, sample: Sample, rt: Runtime) -> dict:
        raise NotImplementedError

    def aggregate(self, rows: list[dict]) -> dict:
        scores = [r["score"] for r in rows if "score" in r]
        return {"score": sum(scores) / len(scores) if scores else 0.0, "n_samples": len(rows)}

    def artifacts(self, rows: list[dict], run_dir) -> dict:
        return {}
