"""lm_eval: any lm-evaluation-harness task under a sparse policy.

Two routes, one model wrapper (`lm_eval_model`):
- in the Hydra app: `sparsebench task=lm_eval task.tasks=[hellaswag] policy=lserve` runs
  `lm_eval.simple_evaluate` on the model sparsebench already runs under the policy and stores
  lm-eval's results (and per-document samples) in the record;
- from lm-eval's own command line: `sparsebench-lm-eval --model sparsebench --model_args
  model=llama31_8b_instruct,policy=lserve,policy.budget=2048 --tasks ...` (lm-eval has no plugin
  discovery, so this wrapper registers the model class, then runs lm-eval's CLI).
Local tasks: YAML files under `task.include_path` (lm-eval's `--include_path`), e.g. with
`dataset_path: json` and local data files. Hub datasets download only when a task asks for them.
Loglikelihood requests are one prefill (prefill plans apply); generate_until requests decode.
Batches are size 1 by default: lm-eval right-pads loglikelihood batches without a mask, which
policies that look at the prompt's last tokens (SnapKV, H2O) would read as content.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from sparsebench.errors import ConfigError
from sparsebench.evals.base import TASKS, Runtime, Sample, Task, TaskConfig


@dataclass
class LmEvalConfig(TaskConfig):
    name: str = "lm_eval"
    tasks: List[str] = field(default_factory=list)  # lm-eval task (or group) names
    include_path: Optional[str] = None  # a directory of task YAML files
    include_defaults: bool = True  # index lm-eval's ~15k built-in tasks too (takes seconds)
    num_fewshot: Optional[int] = None
    batch_size: int = 1
    max_length: Optional[int] = None  # null: min(model maximum positions, 32768)
    bootstrap_iters: int = 0
    apply_chat_template: bool = False
    log_samples: bool = True  # lm-eval's per-document samples, saved next to the record


@TASKS.register("lm_eval")
class LmEval(Task):
    Config = LmEvalConfig

    def validate(self, arch, model_cfg) -> None:
        c = self.cfg
        if not c.tasks:
            raise ConfigError("task.tasks", list(c.tasks), "a non-empty list of lm-eval task names")
        if c.include_path and not Path(c.include_path).expanduser().is_dir():
            raise ConfigError("task.include_path", c.include_path, "a directory of lm-eval task YAML files")
        if c.batch_size < 1:
            raise ConfigError("task.batch_size", c.batch_size, "an integer >= 1")
        self.max_length = c.max_length or min(arch.max_positions, 32768)

    def max_context(self) -> int:
        return self.max_length

    def apply_limit(self, samples: list[Sample], limit: int | None) -> list[Sample]:
        return samples  # `limit` is lm-eval's (documents per task), passed to simple_evaluate

    def samples(self, tokenizer) -> list[Sample]:
        return [Sample(t, [], [], {"task": t}) for t in self.cfg.tasks]

    def run_sample(self, sample: Sample, rt: Runtime) -> dict:
        import lm_eval
        from lm_eval.tasks import TaskManager

        from sparsebench.evals.lm_eval_model import AttachedHFLM

        c = self.cfg
        lm = AttachedHFLM(rt.model, rt.tokenizer, batch_size=c.batch_size, max_length=self.max_length,
                          info={"policy": rt.session.policy.name, "backend": rt.session.backend.name})
        tm = TaskManager(include_path=str(Path(c.include_path).expanduser()) if c.include_path else None,
                         include_defaults=c.include_defaults)
        res = lm_eval.simple_evaluate(model=lm, tasks=[sample.id], task_manager=tm, num_fewshot=c.num_fewshot,
                                      limit=c.limit, bootstrap_iters=c.bootstrap_iters, log_samples=c.log_samples,
                                      apply_chat_template=c.apply_chat_template, random_seed=self.seed,
                                      numpy_random_seed=self.seed, torch_random_seed=self.seed,
                                      fewshot_random_seed=self.seed)
        results = {t: {k: v for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                   for t, r in res["results"].items()}
        if c.log_samples and rt.run_dir is not None:
            for t, docs in res.get("samples", {}).items():
                with open(Path(rt.run_dir) / f"lm_eval_samples_{t}.jsonl", "w") as f:
                    for d in docs:
                        f.write(json.dumps(d, default=str) + "\n")
        main = results.get(sample.id, {})
        headline = next((v for k, v in main.items() if "stderr" not in k), float("nan"))
        return {"results": results, "n_samples": res.get("n-samples", {}), "versions": res.get("versions", {}),
                "score": headline}

    def aggregate(self, rows: list[dict]) -> dict:
        out: dict = {}
        for r in rows:
            for t, metrics in r["results"].items():
                for k, v in metrics.items():
                    out[f"{t}/{k}"] = v
        scores = [r["score"] for r in rows]
        out["score"] = sum(scores) / len(scores) if scores else float("nan")
        out["n_samples"] = len(rows)
        return out


def cli(argv: list[str] | None = None) -> None:
    """`sparsebench-lm-eval`: lm-eval's command line with `--model sparsebench` available."""
    import sparsebench.evals.lm_eval_model  # noqa: F401  (registers "sparsebench" with lm-eval)
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = ["sparsebench-lm-eval", *argv]
    cli_evaluate()
