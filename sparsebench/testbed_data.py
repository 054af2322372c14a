"""Training sequences for the testbed model, made by the same generators as the evals.

Each sequence is one sample of one task at a target length L, in the exact prompt format the eval
uses (no chat template: the testbed has none), followed by the answer and, for dense supervision,
further questions and answers about the same context:
- `lm`: a window of English prose and Python code shipped with Python (pydoc_data, the standard
  library's sources), every token weighted 1;
- `passkey`: sparsebench's needle task (5-digit key, random depth);
- RULER NIAH (single 1 / 2, multikey 1 / 2 / 3, multivalue, multiquery): RULER's template and needles;
  after the asked key, more keys of the context are asked in the same question format;
- `vt`: RULER's variable tracking with its one-shot example; the context holds 2-3 chains and each is asked;
- `cwe`: RULER's common-words extraction.
Weights: answer tokens 1, the rest of a task sequence `lm_weight` (a smaller LM loss), padding 0.
Everything is a pure function of (seed, step, index) so a batch can be rebuilt exactly.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from sparsebench.evals.haystack import haystack_ids
from sparsebench.evals.needle import PASSKEY_NEEDLE, PASSKEY_PREFIX, PASSKEY_QUESTION
from sparsebench.evals.ruler import NEEDLE, NIAH, TEMPLATES, Generators

TASK_NAMES = ["lm", "passkey", "niah_single_1", "niah_single_2", "niah_multikey_1", "niah_multikey_2",
              "niah_multikey_3", "niah_multivalue", "niah_multiquery", "vt", "cwe"]
NEEDLE_RE = re.compile(r"One of the special magic (numbers|uuids) for (.+?) is: (\S+)\.")


@dataclass
class Seq:
    ids: list[int]
    weights: list[float]
    task: str


def lm_corpus() -> str:
    """English prose (pydoc topics) and Python code (the standard library's sources), sorted, deterministic."""
    import sysconfig
    from pathlib import Path

    from pydoc_data.topics import topics

    parts = [topics[k] for k in sorted(topics)]
    for f in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        parts.append(f.read_text(encoding="utf-8", errors="replace"))
    return "\n\n".join(parts)


class Builder:
    def __init__(self, tokenizer, seed: int, lm_weight: float = 0.1):
        self.tok = tokenizer
        self.seed = seed
        self.lm_weight = lm_weight
        self.bos, self.eos, self.pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
        self.lm_ids = tokenizer(lm_corpus(), add_special_tokens=False)["input_ids"]
        self.gens: dict[int, Generators] = {}
        self.per_unit: dict[tuple[str, int], tuple[float, int]] = {}

    def enc(self, s: str) -> list[int]:
        return self.tok(s, add_special_tokens=False)["input_ids"]

    def gen(self, L: int) -> Generators:
        bucket = 4096 if L >= 4096 else (2048 if L >= 2048 else 1024)  # RULER's size-dependent choices
        if bucket not in self.gens:
            self.gens[bucket] = Generators(self.seed, None, {}, bucket, self.tok)
        return self.gens[bucket]

    # ------------------------------------------------------------------ one sequence
    def sample(self, task: str, L: int, rng: random.Random) -> Seq | None:
        """A sequence of at most L tokens for `task`, or None when the task does not fit in L."""
        if task == "lm":
            start = rng.randrange(0, len(self.lm_ids) - L)
            return Seq([self.bos] + self.lm_ids[start : start + L - 1], [1.0] * L, task)
        if task == "passkey":
            return self._passkey(L, rng)
        return self._ruler(task, L, rng)

    def _finish(self, prompt: list[int], answers: list[tuple[list[int], list[int]]], L: int, task: str) -> Seq | None:
        """prompt, then (question, answer) pairs: questions weigh lm_weight, answers 1; stop before a pair that
        would not fit (None if even the first answer does not)."""
        ids, w = list(prompt), [self.lm_weight] * len(prompt)
        for i, (q, a) in enumerate(answers):
            if len(ids) + len(q) + len(a) > L:
                if i == 0:
                    return None
                break
            ids += q + a
            w += [self.lm_weight] * len(q) + [1.0] * len(a)
        return Seq(ids, w, task)

    def _passkey(self, L: int, rng: random.Random) -> Seq | None:
        key = str(rng.randint(10000, 99999))
        prefix, needle, question = [self.bos] + self.enc(PASSKEY_PREFIX), self.enc(PASSKEY_NEEDLE.format(key=key)), \
            self.enc(PASSKEY_QUESTION)
        answer = self.enc(" " + key + ".") + [self.eos]
        budget = L - len(prefix) - len(needle) - len(question) - len(answer) - rng.randint(0, 16)
        if budget < 0:
            return None
        offset = rng.randrange(0, 50_000)
        hay = haystack_ids(self.tok, "pydoc", offset + budget)[offset : offset + budget]
        at = rng.randint(0, budget)
        return self._finish(prefix + hay[:at] + needle + hay[at:] + question, [([], answer)], L, "passkey")

    def _fit(self, task: str, L: int, build) -> tuple[int, int]:
        """(tokens per haystack unit, tokens outside the haystack) of a task, measured once per length bucket."""
        key = (task, min(L, 4096))
        if key not in self.per_unit:
            a, b = build(10), build(40)
            na, nb = len(self.enc(a.text + a.answer_prefix)), len(self.enc(b.text + b.answer_prefix))
            per = max((nb - na) / 30, 0.5)
            self.per_unit[key] = (per, int(na - 10 * per))
        return self.per_unit[key]

    def _ruler(self, task: str, L: int, rng: random.Random) -> Seq | None:
        g = self.gen(L)
        kind = "niah" if task.startswith("niah") else task
        seed = rng.getrandbits(63)

        def build(size, vt_chains=1):
            r = random.Random(seed)
            if kind == "niah":
                return g.build_niah(task, size, r)
            if kind == "vt":
                return self._vt(g, size, r, vt_chains)
            return g.build_cwe(task, size, r)

        per, overhead = self._fit(task, L, build)
        # leave room for the dense extra questions: up to 8 NIAH keys (~48 tokens each), 2 VT chains (~80)
        extra = min(L // 4, 8 * 48) if kind == "niah" else (min(L // 4, 2 * 80) if kind == "vt" else 0)
        room = L - overhead - 48 - extra - rng.randint(0, 32)
        min_units = {"cwe": 10, "vt": 5}.get(kind, 5 if NIAH.get(task, ("", ))[0] != "essay" else 30)
        size = int(room / per)
        if size < min_units:
            return None
        for _ in range(3):
            b = build(size, vt_chains=rng.randint(2, 3)) if kind == "vt" else build(size)
            prompt = [self.bos] + self.enc(b.text + b.answer_prefix)
            answers = self._answers(kind, task, b, rng)
            seq = self._finish(prompt, answers, L, task)
            if seq is not None:
                return seq
            size = int(size * 0.85)
            if size < min_units:
                return None
        return None

    def _answers(self, kind: str, task: str, b, rng: random.Random) -> list[tuple[list[int], list[int]]]:
        if kind == "cwe":
            return [([], self.enc(" " + " ".join(f"{i + 1}. {w}" for i, w in enumerate(b.answers))) + [self.eos])]
        if kind == "vt":
            first = ([], self.enc(" ".join(b.answers)) + [self.eos])
            more = []
            _, prefix, _, _ = TEMPLATES["vt"]
            for value, names in b.meta["other_chains"]:
                q = ("\nQuestion: Find all variables that are assigned the value " + value + " in the text above."
                     + prefix.format(num_v=len(names), query=value))
                more.append((self.enc(q), self.enc(" ".join(names)) + [self.eos]))
            return [first] + more
        # NIAH: the asked key(s), then more keys of the context in the same format
        type_v = NIAH[task][2]
        singular = type_v[:-1]
        first = ([], self.enc(" " + ", ".join(b.answers) + ".") + [self.eos])
        pairs = {}
        for t, k, v in NEEDLE_RE.findall(b.text):
            pairs.setdefault(k, []).append(v)
        asked = set(re.split(r", and |, ", b.meta["query"]))
        others = [k for k in pairs if k not in asked]
        rng.shuffle(others)
        more = []
        for k in others[:8]:
            vals = pairs[k]
            if len(vals) == 1:
                q = (f"\nWhat is the special magic {singular} for {k} mentioned in the provided text? "
                     f"The special magic {singular} for {k} mentioned in the provided text is")
            else:
                q = (f"\nWhat are all the special magic {type_v} for {k} mentioned in the provided text? "
                     f"The special magic {type_v} for {k} mentioned in the provided text are")
            more.append((self.enc(q), self.enc(" " + ", ".join(vals) + ".") + [self.eos]))
        return [first] + more

    def _vt(self, g: Generators, size: int, rng: random.Random, chains: int):
        """RULER's VT sample (one-shot example, the asked chain) with extra chains in the same noise."""
        from sparsebench.evals.haystack import NOISE
        from sparsebench.evals.ruler import Built

        template, prefix, _, _ = TEMPLATES["vt"]
        example = g.vt_example(rng, g.vt_example_lines())
        values = [str(rng.randint(10000, 99998)) for _ in range(chains)]
        all_chains, names = [], []
        for v in values:
            c, n = g._chains(rng, 1, 4, 5, v)
            all_chains += c
            names += n
        context = g._insert_chains([NOISE.strip()] * max(size, 5 * chains), all_chains, rng)
        fill = dict(context=context, query=values[0], num_v=5)
        return Built(example + "\n" + template.format(**fill), prefix.format(**fill), names[0],
                     {"query": values[0], "other_chains": list(zip(values[1:], names[1:]))})

    # ------------------------------------------------------------------ a batch
    def batch(self, step: int, L: int, n_seq: int, mixture: dict[str, float]):
        """n_seq sequences of exactly L tokens (right-padded): (ids [n][L], weights [n][L], task names)."""
        rng = random.Random(self.seed * 1_000_003 + step)
        names, probs = zip(*mixture.items())
        ids, ws, tasks = [], [], []
        while len(ids) < n_seq:
            task = rng.choices(names, probs)[0]
            seq = self.sample(task, L, rng)
            if seq is None:
                continue
            pad = L - len(seq.ids)
            ids.append(seq.ids + [self.pad] * pad)
            ws.append(seq.weights + [0.0] * pad)
            tasks.append(task)
        return ids, ws, tasks
