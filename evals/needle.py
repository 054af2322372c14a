"""needle: needle-in-a-haystack over a grid of context lengths x depths.

Variants (EVALS.md):
- `passkey`: a random 5-digit pass key (or a uuid with `key: uuid`) hidden in haystack text, a
  question at the end, exact match of the first number (or uuid) generated; the variant the
  testbed model is trained for.
- `duo`: the DuoAttention / LServe needle ("Remember, the best thing to do in San Francisco is
  eat a sandwich and sit in Dolores Park on a sunny day."), the question ending with the answer
  prefix "Answer: The best thing to do in San Francisco is"; score = the fraction of the expected
  answer's words present in the response (case-insensitive word sets).
The needle goes in at floor(len * depth / 100) haystack tokens (backed off to the previous
sentence end by default). Outputs: a depth x length table and a heatmap PNG in the run directory.
Lengths count prompt + generated tokens; `lengths: null` spreads `num_lengths` lengths from 1K to
the model's maximum (EVALS.md's default).
"""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import List, Optional

from sparsebench.errors import ConfigError
from sparsebench.evals.base import TASKS, Runtime, Sample, Task, TaskConfig
from sparsebench.evals.haystack import haystack_ids

PASSKEY_PREFIX = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
                  "I will quiz you about the important information there.\n")
PASSKEY_NEEDLE = " The pass key is {key}. Remember it. {key} is the pass key. "
PASSKEY_QUESTION = "\nWhat is the pass key? The pass key is"

# DuoAttention's needle harness (LLMNeedleHaystackTester): prompt, needle and retrieval question
DUO_PREFIX = "<|im_start|> This is a very long story book: <book> "
DUO_NEEDLE = "\n\nRemember, the best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.\n\n"
DUO_QUESTION = (" </book>.\n Based on the content of the book, Question: what is the best thing to do in San Francisco?"
                "\n\nAnswer: The best thing to do in San Francisco is")
DUO_ANSWER = "eat a sandwich and sit in Dolores Park on a sunny day."


@dataclass
class NeedleConfig(TaskConfig):
    name: str = "needle"
    variant: str = "passkey"  # passkey | duo
    lengths: Optional[List[int]] = field(default_factory=lambda: [1024, 2048])  # prompt + generated tokens
    num_lengths: int = 8  # with lengths: null, lengths spread from 1K to the model's maximum
    depths: List[float] = field(default_factory=lambda: [0.0, 25.0, 50.0, 75.0, 100.0])  # percent
    samples_per_cell: int = 1
    key: str = "number"  # passkey: number (5 digits) | uuid
    haystack: str = "pydoc"  # pydoc | noise | a directory of .txt files
    sentence_boundary: bool = True  # back the needle off to the previous sentence end
    max_new_tokens: Optional[int] = None  # None: 8 for passkey (uuid: 24), 32 for duo


def word_overlap(response: str, answer: str) -> float:
    """Fraction of the answer's words (lower-cased, punctuation stripped) present in the response."""
    words = lambda s: set(re.findall(r"[a-z0-9']+", s.lower()))  # noqa: E731
    want = words(answer)
    return len(want & words(response)) / len(want) if want else 0.0


def first_match(text: str, kind: str) -> str | None:
    pat = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}" if kind == "uuid" else r"\d+"
    m = re.search(pat, text.lower())
    return m.group(0) if m else None


@lru_cache(maxsize=8)
def _sentence_end_ids(tokenizer) -> frozenset[int]:
    """Token ids whose text ends a sentence ('.', '!', '?', possibly with a leading space marker)."""
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return frozenset(i for i, t in enumerate(vocab) if t and t.rstrip("Ċ\n ").endswith((".", "!", "?")))


def default_lengths(max_positions: int, n: int) -> list[int]:
    """EVALS.md: linspace(1K, model max, n), rounded down to multiples of 64."""
    lo, hi = 1024, max_positions
    if n <= 1 or hi <= lo:
        return [min(lo, hi)]
    return sorted({int((lo + (hi - lo) * i / (n - 1)) // 64 * 64) for i in range(n)})


@TASKS.register("needle")
class Needle(Task):
    Config = NeedleConfig

    def __init__(self, cfg, seed: int = 42):
        super().__init__(cfg, seed)
        self.lengths = list(cfg.lengths) if cfg.lengths else None

    @property
    def max_new_tokens(self) -> int:
        c = self.cfg
        if c.max_new_tokens is not None:
            return c.max_new_tokens
        return 32 if c.variant == "duo" else (24 if c.key == "uuid" else 8)

    def validate(self, arch, model_cfg) -> None:
        c = self.cfg
        if c.variant not in ("passkey", "duo"):
            raise ConfigError("task.variant", c.variant, "passkey or duo")
        if c.key not in ("number", "uuid"):
            raise ConfigError("task.key", c.key, "number or uuid")
        if self.lengths is None:
            self.lengths = default_lengths(arch.max_positions, c.num_lengths)
        if not self.lengths or any(n < 64 for n in self.lengths):
            raise ConfigError("task.lengths", self.lengths, "a non-empty list of lengths >= 64 tokens (or null)")
        if any(not 0 <= d <= 100 for d in c.depths):
            raise ConfigError("task.depths", list(c.depths), "percentages in [0, 100]")
        if c.samples_per_cell < 1:
            raise ConfigError("task.samples_per_cell", c.samples_per_cell, "an integer >= 1")
        if self.max_context() > arch.max_positions and not model_cfg.allow_extrapolation:
            raise ConfigError("task.lengths", list(self.lengths),
                              f"lengths <= {arch.max_positions}, the maximum positions of model {model_cfg.name} "
                              "(or model.allow_extrapolation=true)")

    def max_context(self) -> int:
        return max(self.lengths or [0])

    def _parts(self, rng: random.Random) -> tuple[str, str, str, str]:
        """(prefix, needle, question, reference) for one sample."""
        if self.cfg.variant == "duo":
            return DUO_PREFIX, DUO_NEEDLE, DUO_QUESTION, DUO_ANSWER
        key = str(uuid.UUID(int=rng.getrandbits(128), version=4)) if self.cfg.key == "uuid" else str(rng.randint(10000, 99999))
        return PASSKEY_PREFIX, PASSKEY_NEEDLE.format(key=key), PASSKEY_QUESTION, key

    def samples(self, tokenizer) -> list[Sample]:
        c = self.cfg
        if self.lengths is None:
            raise RuntimeError("validate() sets the lengths first")
        enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        hay = haystack_ids(tokenizer, c.haystack, max(self.lengths))
        ends = _sentence_end_ids(tokenizer) if c.sentence_boundary else frozenset()
        out = []
        for length in self.lengths:
            for depth in c.depths:
                for i in range(c.samples_per_cell):
                    rng = random.Random(f"{self.seed}-{c.variant}-{length}-{depth}-{i}")
                    prefix_s, needle_s, question_s, ref = self._parts(rng)
                    prefix, needle, question = bos + enc(prefix_s), enc(needle_s), enc(question_s)
                    budget = length - len(prefix) - len(needle) - len(question) - self.max_new_tokens
                    if budget < 0:
                        raise ConfigError("task.lengths", length, f"lengths of at least {length - budget} tokens")
                    at = int(budget * depth / 100)
                    if c.sentence_boundary and 0 < at < budget:
                        at = next((j + 1 for j in range(at - 1, -1, -1) if hay[j] in ends), 0)
                    ids = prefix + hay[:at] + needle + hay[at:budget] + question
                    out.append(Sample(f"L{length}-d{depth:g}-s{i}", ids, [ref],
                                      {"length": length, "depth": depth, "needle_token": len(prefix) + at}))
        return out

    def score(self, text: str, reference: str) -> float:
        if self.cfg.variant == "duo":
            return word_overlap(text, reference)
        return float(first_match(text, self.cfg.key) == reference.lower())

    def run_sample(self, sample: Sample, rt: Runtime) -> dict:
        out = rt.generate(sample.prompt_ids, self.max_new_tokens)
        return {"prediction": out.text, "score": self.score(out.text, sample.references[0]), **out.timings(),
                **sample.meta}

    def aggregate(self, rows: list[dict]) -> dict:
        out = super().aggregate(rows)
        for length in sorted({r["length"] for r in rows}):
            sel = [r["score"] for r in rows if r["length"] == length]
            out[f"score_L{length}"] = sum(sel) / len(sel)
        for depth in sorted({r["depth"] for r in rows}):
            sel = [r["score"] for r in rows if r["depth"] == depth]
            out[f"score_d{depth:g}"] = sum(sel) / len(sel)
        return out

    def artifacts(self, rows: list[dict], run_dir) -> dict:
        from sparsebench.plots import grid_table, heatmap

        lengths = sorted({r["length"] for r in rows})
        depths = sorted({r["depth"] for r in rows})
        grid = [[_mean([r["score"] for r in rows if r["length"] == n and r["depth"] == d]) for n in lengths]
                for d in depths]
        run_dir = Path(run_dir)
        (run_dir / "needle_table.md").write_text(grid_table(grid, depths, lengths, "depth % \\ length") + "\n")
        png = heatmap(grid, depths, lengths, run_dir / "needle_heatmap.png", title=f"needle ({self.cfg.variant})")
        return {"table": str(run_dir / "needle_table.md"), "heatmap": str(png), "grid": grid}


def _mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")
