"""needle: needle-in-a-haystack over a grid of context lengths x depths.

Variant `passkey` (this module; `duo` comes with the eval suite): a random 5-digit pass key
hidden in haystack text at floor(len * depth / 100) tokens (backed off to the previous
sentence end), a question at the end, exact match of the first number generated.
Outputs a depth x length table and a heatmap PNG in the run directory.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

from sparsebench.errors import ConfigError
from sparsebench.evals.base import TASKS, Runtime, Sample, Task, TaskConfig
from sparsebench.evals.haystack import haystack_ids

PREFIX = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
          "I will quiz you about the important information there.\n")
NEEDLE = " The pass key is {key}. Remember it. {key} is the pass key. "
QUESTION = "\nWhat is the pass key? The pass key is"


@dataclass
class NeedleConfig(TaskConfig):
    name: str = "needle"
    variant: str = "passkey"  # passkey
    lengths: List[int] = field(default_factory=lambda: [512, 1024])  # prompt + generation tokens
    depths: List[float] = field(default_factory=lambda: [0.0, 50.0, 100.0])  # percent
    samples_per_cell: int = 1
    haystack: str = "pydoc"  # pydoc | noise | a directory of .txt files
    sentence_boundary: bool = True  # back the needle off to the previous sentence end
    max_new_tokens: int = 8


def first_number(text: str) -> str | None:
    m = re.search(r"\d+", text)
    return m.group(0) if m else None


@TASKS.register("needle")
class Needle(Task):
    Config = NeedleConfig

    def validate(self, arch, model_cfg) -> None:
        c = self.cfg
        if c.variant != "passkey":
            raise ConfigError("task.variant", c.variant, "passkey")
        if not c.lengths or any(n < 64 for n in c.lengths):
            raise ConfigError("task.lengths", list(c.lengths), "a non-empty list of lengths >= 64 tokens")
        if any(not 0 <= d <= 100 for d in c.depths):
            raise ConfigError("task.depths", list(c.depths), "percentages in [0, 100]")
        if c.samples_per_cell < 1:
            raise ConfigError("task.samples_per_cell", c.samples_per_cell, "an integer >= 1")
        longest = self.max_context()
        if longest > arch.max_positions and not model_cfg.allow_extrapolation:
            raise ConfigError("task.lengths", list(c.lengths),
                              f"lengths <= {arch.max_positions}, the maximum positions of model {model_cfg.name} "
                              "(or model.allow_extrapolation=true)")

    def max_context(self) -> int:
        return max(self.cfg.lengths)

    def samples(self, tokenizer) -> list[Sample]:
        c = self.cfg
        enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        prefix, question = bos + enc(PREFIX), enc(QUESTION)
        hay = haystack_ids(tokenizer, c.haystack, max(c.lengths))
        period = set(enc(".")) | {i for i, t in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
                                  if t and t.endswith(".")} if c.sentence_boundary else set()
        out = []
        for length in c.lengths:
            for depth in c.depths:
                for i in range(c.samples_per_cell):
                    rng = random.Random(f"{self.seed}-{length}-{depth}-{i}")
                    key = str(rng.randint(10000, 99999))
                    needle = enc(NEEDLE.format(key=key))
                    budget = length - len(prefix) - len(needle) - len(question) - c.max_new_tokens
                    if budget < 0:
                        raise ConfigError("task.lengths", length, f"lengths of at least {length - budget} tokens")
                    at = int(budget * depth / 100)
                    if c.sentence_boundary and 0 < at < budget:
                        back = next((j for j in range(at - 1, -1, -1) if hay[j] in period), -1)
                        at = back + 1
                    ids = prefix + hay[:at] + needle + hay[at:budget] + question
                    out.append(Sample(f"L{length}-d{depth:g}-s{i}", ids, [key],
                                      {"length": length, "depth": depth, "needle_token": len(prefix) + at}))
        return out

    def run_sample(self, sample: Sample, rt: Runtime) -> dict:
        from sparsebench.generation import greedy_generate

        tok = rt.tokenizer
        stop = {tok.eos_token_id} if tok.eos_token_id is not None else set()
        gen = greedy_generate(rt.model, [sample.prompt_ids], self.cfg.max_new_tokens, stop, tok.pad_token_id or 0)
        text = tok.decode(gen.tokens[0], skip_special_tokens=True)
        score = float(first_number(text) == sample.references[0])
        return {"prediction": text, "score": score, "prefill_s": gen.prefill_s,
                "decode_s_per_token": gen.decode_s / max(gen.steps, 1), **sample.meta}

    def aggregate(self, rows: list[dict]) -> dict:
        out = super().aggregate(rows)
        for length in sorted({r["length"] for r in rows}):
            sel = [r["score"] for r in rows if r["length"] == length]
            out[f"score_L{length}"] = sum(sel) / len(sel)
        return out

    def artifacts(self, rows: list[dict], run_dir) -> dict:
        from sparsebench.plots import grid_table, heatmap

        lengths = sorted({r["length"] for r in rows})
        depths = sorted({r["depth"] for r in rows})
        grid = [[_mean([r["score"] for r in rows if r["length"] == n and r["depth"] == d]) for n in lengths]
                for d in depths]
        run_dir = Path(run_dir)
        (run_dir / "needle_table.md").write_text(grid_table(grid, depths, lengths, "depth % \\ length") + "\n")
        png = heatmap(grid, depths, lengths, run_dir / "needle_heatmap.png", title="needle (passkey)")
        return {"table": str(run_dir / "needle_table.md"), "heatmap": str(png), "grid": grid}


def _mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")
