"""ruler: NVIDIA RULER's 13 tasks with the original templates, needle formats and metrics.

Tasks: niah_single_1/2/3, niah_multikey_1/2/3, niah_multivalue, niah_multiquery, vt, cwe, fwe,
qa_1 (SQuAD v2 dev), qa_2 (HotpotQA dev distractor). The templates, answer prefixes, needle
sentence, noise line, key / value formats (adjective-noun words from wonderwords, 7-digit
numbers, uuid4), depth grid (40 values over 0-100), VT chains with a one-shot example, CWE
counts (10 words x 30, the rest x 3, one example), FWE's Zipf(alpha = 2) coded words (answers:
ranks 2-4) and the QA document format follow RULER (scripts/data/synthetic/*). Scores:
string_match_all (NIAH, VT, CWE, FWE) and string_match_part (QA), per task and length; a
length's score is the mean over tasks.

Length fitting: the whole prompt (the model's chat template when it has one, else the plain
template, then the answer prefix), tokenized by the model's tokenizer, plus the task's generation
budget must fit the target length. The haystack size is found by binary search once per (task,
length), then each sample is adjusted so that its size fits and one more search step would not.

Determinism: every sample has its own random generator seeded from (seed, task, length, index), so
prompts are byte-identical for the same seed and tokenizer (RULER's own runs thread one global
generator through every search probe, which no other tokenizer can reproduce).

Offline deviations (recorded in each sample): the essay haystack is prose shipped with Python
(pydoc_data) or `task.haystack_dir`, split into sentences at [.!?] + whitespace (RULER: Paul Graham
essays, nltk punkt); CWE falls back to deterministic synthetic words once the wonderwords lists
run out (RULER: an LFS word file). Below 2048 tokens, shorter than any length RULER defines, CWE's
example and word counts shrink once more (example of 12 words x2 / x1, counts x3 / x1).
"""

from __future__ import annotations

import json
import math
import random
import re
import string
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, List, Optional

from sparsebench.errors import ConfigError
from sparsebench.evals import metrics as M
from sparsebench.evals.base import TASKS, Runtime, Sample, Task, TaskConfig
from sparsebench.evals.haystack import NOISE, haystack_text
from sparsebench.evals.prompting import encode, use_chat

ALL_TASKS = ["niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2",
             "niah_multikey_3", "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe", "qa_1", "qa_2"]

NIAH = {  # haystack, key type, value type, #keys, #values, #queries
    "niah_single_1": ("noise", "words", "numbers", 1, 1, 1),
    "niah_single_2": ("essay", "words", "numbers", 1, 1, 1),
    "niah_single_3": ("essay", "words", "uuids", 1, 1, 1),
    "niah_multikey_1": ("essay", "words", "numbers", 4, 1, 1),
    "niah_multikey_2": ("needle", "words", "numbers", 1, 1, 1),
    "niah_multikey_3": ("needle", "uuids", "uuids", 1, 1, 1),
    "niah_multivalue": ("essay", "words", "numbers", 1, 4, 1),
    "niah_multiquery": ("essay", "words", "numbers", 1, 1, 4),
}

# kind -> (template, answer prefix, tokens to generate, metric)
TEMPLATES = {
    "niah": ("Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. "
             "I will quiz you about the {type_needle_v} afterwards.\n{context}\nWhat are all the special magic "
             "{type_needle_v} for {query} mentioned in the provided text?",
             " The special magic {type_needle_v} for {query} mentioned in the provided text are", 128, "all"),
    "vt": ("Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n"
           "Question: Find all variables that are assigned the value {query} in the text above.",
           " Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are "
           "assigned the value {query}, they are: ", 30, "all"),
    "cwe": ("Below is a numbered list of words. In these words, some appear more often than others. Memorize the "
            "ones that appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?",
            " Answer: The top 10 words that appear most often in the list are:", 120, "all"),
    "fwe": ("Read the following coded text and track the frequency of each coded word. Find the three most "
            "frequently appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore the "
            "dots '....'. What are the three most frequently appeared words in the above coded text?",
            " Answer: According to the coded text above, the three most frequently appeared words are:", 50, "all"),
    "qa": ("Answer the question based on the given documents. Only give me the answer and do not output any other "
           "words.\n\nThe following are given documents.\n\n{context}\n\nAnswer the question based on the given "
           "documents. Only give me the answer and do not output any other words.\n\nQuestion: {query}",
           " Answer:", 32, "part"),
}
NEEDLE = "One of the special magic {type_needle_v} for {key} is: {value}."
DEPTHS = [round(100 * i / 39) for i in range(40)]  # np.round(np.linspace(0, 100, 40)).astype(int)
QA_FILES = {"qa_1": "squad.json", "qa_2": "hotpotqa.json"}


def kind(task: str) -> str:
    return "niah" if task.startswith("niah") else ("qa" if task.startswith("qa") else task)


# ---------------------------------------------------------------------------------------------- word lists
@lru_cache(maxsize=None)
def wonderwords(name: str) -> tuple[str, ...]:
    from importlib.resources import files

    text = (files("wonderwords") / "assets" / f"{name}list.txt").read_text(encoding="utf-8")
    return tuple(w.strip() for w in text.splitlines() if w.strip())


def synthetic_words(n: int, seed: int) -> list[str]:
    """n distinct pronounceable lower-case words (consonant-vowel syllables), deterministic in seed."""
    rng = random.Random(f"cwe-fallback-{seed}")
    cons, vows = "bcdfghjklmnprstvwz", "aeiou"
    out, seen = [], set()
    while len(out) < n:
        w = "".join(rng.choice(cons) + rng.choice(vows) for _ in range(rng.randint(3, 4)))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def split_sentences(text: str) -> list[str]:
    """Sentences: text split after '.', '!' or '?' followed by whitespace."""
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def zeta(alpha: float) -> float:
    if alpha == 2:
        return math.pi ** 2 / 6
    n = 100_000  # partial sum + integral tail (Euler-Maclaurin, first terms)
    return sum(k ** -alpha for k in range(1, n)) + n ** (1 - alpha) / (alpha - 1) + 0.5 * n ** -alpha


# ---------------------------------------------------------------------------------------------- config
@dataclass
class RulerConfig(TaskConfig):
    name: str = "ruler"
    tasks: List[str] = field(default_factory=lambda: list(ALL_TASKS))
    lengths: List[int] = field(default_factory=lambda: [4096, 8192, 16384, 32768, 65536, 131072])
    num_samples: int = 500
    chat_template: str = "auto"  # auto (the model's own when it has one) | none
    haystack_dir: Optional[str] = None  # .txt files for the essay haystack (default: pydoc_data prose)
    data_dir: Optional[str] = None  # squad.json (SQuAD v2 dev) and hotpotqa.json (HotpotQA dev distractor)
    source: str = "local"  # local | hub (QA data from the hub; downloads)
    remove_newline_tab: bool = False


@dataclass
class Built:
    """One generated prompt before tokenization."""

    text: str  # the task text (user message)
    answer_prefix: str
    answers: list[str]
    meta: dict


# ---------------------------------------------------------------------------------------------- generators
class Generators:
    """RULER's generators. Each `build_<kind>(size, rng)` is a pure function of (size, rng's seed)."""

    def __init__(self, task_seed: int, haystack_dir: str | None, qa: dict | None, length: int, tokenizer=None):
        self.seed = task_seed
        self.haystack_dir = haystack_dir
        self.qa = qa or {}
        self.length = length
        self.tokenizer = tokenizer

    # -- keys and values
    @staticmethod
    def draw(kind_: str, rng: random.Random) -> str:
        if kind_ == "numbers":
            return str(rng.randint(10 ** 6, 10 ** 7 - 1))
        if kind_ == "uuids":
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        adj, nouns = wonderwords("adjective"), wonderwords("noun")
        i = rng.randrange(len(adj) * len(nouns))
        return f"{adj[i // len(nouns)]}-{nouns[i % len(nouns)]}"

    @lru_cache(maxsize=2)
    def essay_words(self) -> tuple[str, ...]:
        text = haystack_text(self.haystack_dir or "pydoc")
        return tuple(re.sub(r"\s+", " ", text).strip().split(" "))

    # -- NIAH
    def build_niah(self, task: str, size: int, rng: random.Random) -> Built:
        hay, tk, tv, nk, nv, nq = NIAH[task]
        nk = max(nk, nq)
        keys, values, needles = [], [], []
        for _ in range(nk):
            key = self.draw(tk, rng)
            vals = [self.draw(tv, rng) for _ in range(nv)]
            keys.append(key)
            values.append(vals)
            needles += [NEEDLE.format(type_needle_v=tv, key=key, value=v) for v in vals]
        rng.shuffle(needles)
        placed = []
        if hay == "essay":
            words = self.essay_words()
            words = (words * -(-size // len(words)))[:size]
            sents = split_sentences(" ".join(words))
            depths = sorted(rng.sample(DEPTHS, len(needles)))
            pos = [0] + [int(len(sents) * d / 100) for d in depths] + [len(sents)]
            parts = []
            for i in range(1, len(pos)):
                parts.append(" ".join(sents[pos[i - 1] : pos[i]]))
                if i - 1 < len(needles):
                    parts.append(needles[i - 1])
                    placed.append({"needle": needles[i - 1], "depth": depths[i - 1], "sentence": pos[i]})
            context = " ".join(parts)
        else:
            lines = [NOISE.strip()] * size if hay == "noise" else [
                NEEDLE.format(type_needle_v=tv, key=self.draw(tk, rng), value=self.draw(tv, rng)) for _ in range(size)]
            idx = sorted(rng.sample(range(size), len(needles)), reverse=True)
            for i, nd in zip(idx, needles):
                lines.insert(i, nd)
            for i, line in enumerate(lines):
                if line in needles:
                    placed.append({"needle": line, "depth": 100 * i / len(lines), "line": i})
            context = "\n".join(lines)
        chosen = rng.sample(range(nk), nq)
        queries = [keys[i] for i in chosen]
        answers = [a for i in chosen for a in values[i]]
        query = queries[0] if nq == 1 else ", ".join(queries[:-1]) + ", and " + queries[-1]
        template, prefix, _, _ = TEMPLATES["niah"]
        type_v = tv
        if nq * nv == 1:  # RULER's singular form when one value is asked
            template, prefix = (s.replace("Some", "A").replace("are all", "is").replace("are", "is")
                                .replace("answers", "answer") for s in (template, prefix))
            type_v = tv[:-1]
        fill = dict(type_needle_v=type_v, context=context, query=query)
        return Built(template.format(**fill), prefix.format(**fill), answers,
                     {"needles": placed, "query": query, "haystack": hay})

    # -- variable tracking
    @staticmethod
    def _chains(rng: random.Random, num_chains: int, num_hops: int, name_len: int, value: str):
        names: list[str] = []
        while len(set(names)) < (num_hops + 1) * num_chains:
            names = list(dict.fromkeys(names + ["".join(rng.choices(string.ascii_uppercase, k=name_len))
                                                for _ in range((num_hops + 1) * num_chains)]))
        names = names[: (num_hops + 1) * num_chains]
        chains, var_sets = [], []
        for c in range(num_chains):
            v = names[c * (num_hops + 1) : (c + 1) * (num_hops + 1)]
            chains.append([f"VAR {v[0]} = {value}"] + [f"VAR {v[j + 1]} = VAR {v[j]} " for j in range(num_hops)])
            var_sets.append(v)
        return chains, var_sets

    @staticmethod
    def _insert_chains(lines: list[str], chains, rng) -> str:
        for chain in chains:
            positions = sorted(rng.sample(range(len(lines)), len(chain)))
            for j, p in enumerate(positions):
                lines.insert(p + j, chain[j])
        return "\n".join(lines).replace(". \n", ".\n")

    def vt_example(self, rng: random.Random, noise_lines: int) -> str:
        """RULER's one-shot example: 3-letter names, value randomised per sample, answer after two spaces."""
        template, prefix, _, _ = TEMPLATES["vt"]
        value = str(rng.randint(10000, 99998))
        chains, names = self._chains(rng, 1, 4, 3, value)
        context = self._insert_chains([NOISE.strip()] * noise_lines, chains, rng)
        fill = dict(context=context, query=value, num_v=5)
        return template.format(**fill) + prefix.format(**fill) + " " + " ".join(names[0]) + "\n"

    @lru_cache(maxsize=2)
    def vt_example_lines(self) -> int:
        """Noise lines of the one-shot example: the most that keep it within 500 tokens (RULER fits its
        example to 500 tokens in the model's tokenizer)."""
        if self.tokenizer is None:
            return 15
        n = 5  # at least one line per chain line
        while n < 200 and len(self.tokenizer(self.vt_example(random.Random(0), n + 1))["input_ids"]) <= 500:
            n += 1
        return n

    def build_vt(self, task: str, size: int, rng: random.Random) -> Built:
        template, prefix, _, _ = TEMPLATES["vt"]
        example_lines = self.vt_example_lines()
        example = self.vt_example(rng, example_lines)
        value = str(rng.randint(10000, 99998))
        chains, names = self._chains(rng, 1, 4, 5, value)
        context = self._insert_chains([NOISE.strip()] * size, chains, rng)
        fill = dict(context=context, query=value, num_v=5)
        return Built(example + "\n" + template.format(**fill), prefix.format(**fill), names[0],
                     {"query": value, "example_lines": example_lines})

    # -- common words
    @lru_cache(maxsize=2)
    def cwe_words(self) -> tuple[str, ...]:
        words = sorted(set(wonderwords("noun") + wonderwords("adjective") + wonderwords("verb")))
        random.Random(self.seed).shuffle(words)
        return tuple(words)

    def build_cwe(self, task: str, size: int, rng: random.Random) -> Built:
        template, prefix, _, _ = TEMPLATES["cwe"]
        words = list(self.cwe_words())
        fallback = size + 40 > len(words)
        if fallback:
            words = words + synthetic_words(size + 40 - len(words), self.seed)

        def example(n, common_rep, uncommon_rep):
            chosen = rng.sample(words, n)
            common, uncommon = chosen[:10], chosen[10:]
            listed = common * common_rep + uncommon * uncommon_rep
            rng.shuffle(listed)
            return " ".join(f"{i + 1}. {w}" for i, w in enumerate(listed)), common

        # RULER: example (40 words, x10 / x3) and counts x30 / x3 from 4096 tokens, (20, x3 / x1) and x6 / x1
        # below; under 2048 tokens (shorter than any length RULER defines) sparsebench shrinks once more
        ex_shape, counts = ((40, 10, 3), (30, 3)) if self.length >= 4096 else (
            ((20, 3, 1), (6, 1)) if self.length >= 2048 else ((12, 2, 1), (3, 1)))
        ex_ctx, ex_common = example(*ex_shape)
        ctx, common = example(size, *counts)
        shot = template.format(context=ex_ctx) + prefix + " " + " ".join(f"{i + 1}. {w}" for i, w in enumerate(ex_common))
        return Built(shot + "\n" + template.format(context=ctx), prefix, common,
                     {"num_words": size, "synthetic_fallback": fallback, "cwe_counts": list(counts),
                      "cwe_example": list(ex_shape)})

    # -- frequent words
    def build_fwe(self, task: str, size: int, rng: random.Random, alpha: float = 2.0) -> Built:
        template, prefix, gen, _ = TEMPLATES["fwe"]
        vocab_size = max(4, (self.length - gen) // 50)
        vocab: set[str] = set()
        while len(vocab) < vocab_size:
            vocab.add("".join(rng.choices(string.ascii_lowercase, k=6)))
        words = sorted(vocab)
        rng.shuffle(words)
        words[0] = "..."
        z = zeta(alpha)
        stream = [w for r, w in enumerate(words, start=1) for _ in range(int(size * r ** -alpha / z))]
        rng.shuffle(stream)
        return Built(template.format(context=" ".join(stream)), prefix, words[1:4],
                     {"num_words": size, "vocab_size": vocab_size})

    # -- QA
    def build_qa(self, task: str, size: int, rng: random.Random, index: int = 0) -> Built:
        template, prefix, _, _ = TEMPLATES["qa"]
        docs, qas = self.qa[task]
        item = qas[index % len(qas)]
        curr, more = list(item["context"]), list(item.get("more_context", []))
        if size < len(docs):
            if size - len(curr) > len(more):
                rest = [i for i in range(len(docs)) if i not in set(curr) | set(more)]
                chosen = curr + more + rng.sample(rest, size - len(curr) - len(more))
            else:
                chosen = curr + rng.sample(more, max(0, size - len(curr)))
        else:
            chosen = (list(range(len(docs))) * -(-size // len(docs)))[:size]
        rng.shuffle(chosen)
        context = "\n\n".join(f"Document {i + 1}:\n{docs[d]}" for i, d in enumerate(chosen))
        return Built(template.format(context=context, query=item["query"]), prefix, list(item["outputs"]),
                     {"gold_docs": [chosen.index(c) + 1 for c in curr if c in chosen], "qa_index": index % len(qas)})


# ---------------------------------------------------------------------------------------------- QA data
def read_squad(path: Path) -> tuple[list[str], list[dict]]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    docs = sorted({p["context"] for d in data for p in d["paragraphs"]})
    index = {d: i for i, d in enumerate(docs)}
    qas = []
    for d in data:
        paras = [index[p["context"]] for p in d["paragraphs"]]
        for p in d["paragraphs"]:
            for qa in p["qas"]:
                if qa.get("is_impossible"):
                    continue
                me = index[p["context"]]
                qas.append({"query": qa["question"], "outputs": [a["text"] for a in qa["answers"]], "context": [me],
                            "more_context": [i for i in paras if i != me]})
    return docs, qas


def read_hotpotqa(path: Path) -> tuple[list[str], list[dict]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    docs = sorted({f"{t}\n{''.join(s)}" for item in data for t, s in item["context"]})
    index = {d: i for i, d in enumerate(docs)}
    qas = [{"query": item["question"], "outputs": [item["answer"]],
            "context": [index[f"{t}\n{''.join(s)}"] for t, s in item["context"]]} for item in data]
    return docs, qas


def load_qa(task: str, data_dir: str | None, source: str):
    if source == "hub":
        return _load_qa_hub(task)
    path = Path(data_dir).expanduser() / QA_FILES[task]
    return read_squad(path) if task == "qa_1" else read_hotpotqa(path)


def _load_qa_hub(task: str):
    """SQuAD v2 / HotpotQA from the hub (downloads; only with task.source=hub), in RULER's structure."""
    from datasets import load_dataset

    if task == "qa_1":
        ds = load_dataset("rajpurkar/squad_v2", split="validation")
        docs = sorted(set(ds["context"]))
        index = {d: i for i, d in enumerate(docs)}
        by_title: dict[str, set[int]] = {}
        for r in ds:
            by_title.setdefault(r["title"], set()).add(index[r["context"]])
        qas = [{"query": r["question"], "outputs": list(r["answers"]["text"]), "context": [index[r["context"]]],
                "more_context": sorted(by_title[r["title"]] - {index[r["context"]]})} for r in ds if r["answers"]["text"]]
        return docs, qas
    ds = load_dataset("hotpotqa/hotpot_qa", "distractor", split="validation")
    items = [{"question": r["question"], "answer": r["answer"],
              "context": list(zip(r["context"]["title"], r["context"]["sentences"]))} for r in ds]
    docs = sorted({f"{t}\n{''.join(s)}" for it in items for t, s in it["context"]})
    index = {d: i for i, d in enumerate(docs)}
    return docs, [{"query": it["question"], "outputs": [it["answer"]],
                   "context": [index[f"{t}\n{''.join(s)}"] for t, s in it["context"]]} for it in items]


# ---------------------------------------------------------------------------------------------- the task
SEARCH_STEP = {"essay": 500, "noise": 25, "needle": 25}


@TASKS.register("ruler")
class Ruler(Task):
    Config = RulerConfig

    def validate(self, arch, model_cfg) -> None:
        c = self.cfg
        bad = [t for t in c.tasks if t not in ALL_TASKS]
        if bad or not c.tasks:
            raise ConfigError("task.tasks", list(c.tasks), "a non-empty list of " + ", ".join(ALL_TASKS))
        if not c.lengths or any(n < 256 for n in c.lengths):
            raise ConfigError("task.lengths", list(c.lengths), "a non-empty list of lengths >= 256")
        if c.num_samples < 1:
            raise ConfigError("task.num_samples", c.num_samples, "an integer >= 1")
        if c.chat_template not in ("auto", "none"):
            raise ConfigError("task.chat_template", c.chat_template, "auto or none")
        if c.source not in ("local", "hub"):
            raise ConfigError("task.source", c.source, "local or hub")
        if max(c.lengths) > arch.max_positions and not model_cfg.allow_extrapolation:
            raise ConfigError("task.lengths", list(c.lengths), f"lengths <= {arch.max_positions}, the maximum positions "
                              f"of model {model_cfg.name} (or model.allow_extrapolation=true)")
        if c.haystack_dir and not any(Path(c.haystack_dir).expanduser().glob("*.txt")):
            raise ConfigError("task.haystack_dir", c.haystack_dir, "a directory holding .txt files")
        qa = [t for t in c.tasks if t.startswith("qa")]
        if qa and c.source == "local":
            missing = [QA_FILES[t] for t in qa if not c.data_dir or not (Path(c.data_dir).expanduser() / QA_FILES[t]).is_file()]
            if missing:
                raise ConfigError("task.data_dir", c.data_dir, f"a directory holding {', '.join(missing)} (SQuAD v2 dev / "
                                  "HotpotQA dev distractor, RULER's file names) or task.source=hub")

    def max_context(self) -> int:
        return max(self.cfg.lengths)

    # ------------------------------------------------------------------ building
    def _builder(self, task: str, length: int, gens: Generators, index: int) -> Callable[[int, int], Built]:
        k = kind(task)

        def build(size: int, sample_seed: int) -> Built:
            rng = random.Random(sample_seed)
            if k == "niah":
                return gens.build_niah(task, size, rng)
            if k == "qa":
                return gens.build_qa(task, size, rng, index)
            return getattr(gens, f"build_{k}")(task, size, rng)

        return build

    def _step(self, task: str, length: int) -> int:
        k = kind(task)
        if k == "niah":  # RULER: essay 500 words, noise / needle 25 lines (5 below 4096 tokens)
            hay = NIAH[task][0]
            if length < 4096:
                return 50 if hay == "essay" else 5  # sparsebench: 50 words below RULER's shortest length
            return SEARCH_STEP[hay]
        if k == "vt":
            return 5 if length < 4096 else 10
        if k == "fwe":
            return max(1, (length - TEMPLATES["fwe"][2]) // 32)
        return 10  # cwe, qa

    def _encode(self, tokenizer, built: Built, chat: bool) -> list[int]:
        text, prefix = built.text, built.answer_prefix
        if self.cfg.remove_newline_tab:
            text = " ".join(text.replace("\n", " ").replace("\t", " ").strip().split())
        return encode(tokenizer, text, chat, prefix)[0]

    def _fits(self, tokenizer, build, size, seed, length, gen, chat) -> tuple[bool, list[int], Built]:
        b = build(size, seed)
        ids = self._encode(tokenizer, b, chat)
        return len(ids) + gen <= length, ids, b

    def _search(self, tokenizer, build, length, gen, step, chat, probe_seed) -> int:
        """Largest size (a multiple of `step`) whose probe prompt fits, by binary search."""
        ok, ids, _ = self._fits(tokenizer, build, step, probe_seed, length, gen, chat)
        per = max(len(ids) / step, 1e-6)
        lo, hi, best = 1, max(int(length / per * 3) // step, 2), 1
        while lo <= hi:
            mid = (lo + hi) // 2
            if self._fits(tokenizer, build, mid * step, probe_seed, length, gen, chat)[0]:
                best, lo = mid, mid + 1
            else:
                hi = mid - 1
        return best * step

    def samples(self, tokenizer) -> list[Sample]:
        c = self.cfg
        chat = use_chat(c.chat_template, tokenizer)
        qa = {t: load_qa(t, c.data_dir, c.source) for t in c.tasks if t.startswith("qa")}
        out = []
        for task in c.tasks:
            _, _, gen, metric = TEMPLATES[kind(task)]
            for length in c.lengths:
                gens = Generators(self.seed, c.haystack_dir, qa, length, tokenizer)
                step = self._step(task, length)
                probe = self._builder(task, length, gens, 0)
                size0 = self._search(tokenizer, probe, length, gen, step, chat, hash_seed(self.seed, task, length, -1))
                for i in range(c.num_samples):
                    build = self._builder(task, length, gens, i)
                    seed = hash_seed(self.seed, task, length, i)
                    size = size0
                    ok, ids, b = self._fits(tokenizer, build, size, seed, length, gen, chat)
                    while not ok and size > step:  # shrink until it fits
                        size -= step
                        ok, ids, b = self._fits(tokenizer, build, size, seed, length, gen, chat)
                    while ok:  # grow while one more step still fits
                        ok2, ids2, b2 = self._fits(tokenizer, build, size + step, seed, length, gen, chat)
                        if not ok2:
                            break
                        size, ids, b = size + step, ids2, b2
                    if len(ids) + gen > length:
                        raise ConfigError("task.lengths", length, f"lengths long enough for {task} (its smallest prompt "
                                          f"takes {len(ids) + gen} tokens)")
                    out.append(Sample(f"{task}/L{length}/{i}", ids, b.answers,
                                      {"task": task, "length": length, "metric": metric, "max_new_tokens": gen,
                                       "size": size, "step": step, "seed": seed, "answer_prefix": b.answer_prefix,
                                       "template": "model" if chat else "none", **b.meta}))
        return out

    # ------------------------------------------------------------------ scoring
    @staticmethod
    def postprocess(text: str) -> str:
        return re.sub(r"[\x00-\x1f]", "\n", text.strip()).strip()

    def run_sample(self, sample: Sample, rt: Runtime) -> dict:
        out = rt.generate(sample.prompt_ids, sample.meta["max_new_tokens"])
        pred = self.postprocess(out.text)
        fn = M.string_match_all if sample.meta["metric"] == "all" else M.string_match_part
        meta = {k: v for k, v in sample.meta.items() if k not in ("needles",)}
        return {"prediction": pred, "score": fn([pred], [sample.references]) / 100, **meta, **out.timings()}

    def aggregate(self, rows: list[dict]) -> dict:
        out: dict = {"n_samples": len(rows)}
        lengths = sorted({r["length"] for r in rows})
        tasks = [t for t in self.cfg.tasks if any(r["task"] == t for r in rows)]
        for t in tasks:
            for n in lengths:
                sel = [r["score"] for r in rows if r["task"] == t and r["length"] == n]
                if sel:
                    out[f"{t}/{n}"] = 100 * sum(sel) / len(sel)
            per = [out[f"{t}/{n}"] for n in lengths if f"{t}/{n}" in out]
            out[t] = sum(per) / len(per)
        for n in lengths:
            per = [out[f"{t}/{n}"] for t in tasks if f"{t}/{n}" in out]
            out[f"avg/{n}"] = sum(per) / len(per)
        out["score"] = sum(out[f"avg/{n}"] for n in lengths) / len(lengths) if lengths else 0.0
        return out

    def artifacts(self, rows: list[dict], run_dir) -> dict:
        from sparsebench.plots import heatmap

        agg = self.aggregate(rows)
        lengths = sorted({r["length"] for r in rows})
        tasks = [t for t in self.cfg.tasks if t in agg]
        grid = [[agg.get(f"{t}/{n}", float("nan")) / 100 for n in lengths] for t in tasks]
        run_dir = Path(run_dir)
        header = "| task \\ length | " + " | ".join(map(str, lengths)) + " |"
        lines = [header, "|---" * (len(lengths) + 1) + "|"]
        lines += [f"| {t} | " + " | ".join(f"{100 * v:.1f}" for v in row) + " |" for t, row in zip(tasks, grid)]
        lines.append("| **average** | " + " | ".join(f"{agg[f'avg/{n}']:.1f}" for n in lengths) + " |")
        (run_dir / "ruler_table.md").write_text("\n".join(lines) + "\n")
        png = heatmap(grid, tasks, lengths, run_dir / "ruler_heatmap.png", title="RULER", ylabel="task")
        return {"table": str(run_dir / "ruler_table.md"), "heatmap": str(png)}


def hash_seed(seed: int, task: str, length: int, index: int) -> int:
    """A stable per-sample seed (Python's str hash is salted per process; this is not)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{seed}/{task}/{length}/{index}".encode()).digest()[:8], "little")
