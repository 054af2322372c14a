"""RULER generators: prompts fit their target length and are within one search step of it; needles sit at
their recorded depth; answers are recoverable from the prompt; seed 42 with a fixed tokenizer gives stable
samples (golden hashes); the metrics as RULER scores them."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from transformers import AutoTokenizer

from sparsebench.evals.ruler import ALL_TASKS, NEEDLE, Ruler, RulerConfig, split_sentences

FIX = Path(__file__).parent / "fixtures" / "ruler"
TOKENIZER = Path(__file__).resolve().parent.parent / "sparsebench" / "assets" / "tokenizers" / "pydoc_bpe_2k"


class Arch:
    max_positions = 1 << 20


class Model:
    name = "m"
    allow_extrapolation = False


@lru_cache(maxsize=1)
def tok():
    return AutoTokenizer.from_pretrained(TOKENIZER)


@lru_cache(maxsize=None)
def generate(tasks: tuple, lengths: tuple, n: int = 3, seed: int = 42):
    task = Ruler(OmegaConf.structured(RulerConfig(tasks=list(tasks), lengths=list(lengths), num_samples=n,
                                                  data_dir=str(FIX))), seed=seed)
    task.validate(Arch(), Model())
    return task, task.samples(tok())


def prompt_text(s) -> str:
    return tok().decode(s.prompt_ids, skip_special_tokens=True)


@pytest.mark.parametrize("length", [1024, 2048])
def test_prompts_fit_and_are_within_one_search_step(length):
    task, samples = generate(tuple(ALL_TASKS), (length,), 2)
    assert len(samples) == 13 * 2
    for s in samples:
        m = s.meta
        assert len(s.prompt_ids) + m["max_new_tokens"] <= length, s.id
        # the same sample with one more search step of haystack no longer fits
        build = task._builder(m["task"], length, _gens(task, length), int(s.id.rsplit("/", 1)[1]))
        fits, ids, _ = task._fits(tok(), build, m["size"] + m["step"], m["seed"], length, m["max_new_tokens"], False)
        assert not fits, (s.id, len(ids))
        rebuilt = task._fits(tok(), build, m["size"], m["seed"], length, m["max_new_tokens"], False)[1]
        assert rebuilt == s.prompt_ids  # a pure function of (seed, size)


def _gens(task, length):
    from sparsebench.evals.ruler import Generators, load_qa

    qa = {t: load_qa(t, str(FIX), "local") for t in ("qa_1", "qa_2")}
    return Generators(task.seed, None, qa, length, tok())


def test_needles_sit_at_their_recorded_depth():
    _, samples = generate(("niah_single_2", "niah_multikey_1", "niah_single_1", "niah_multikey_3"), (4096,), 3)
    for s in samples:
        text = prompt_text(s)
        context = text.split("afterwards.\n", 1)[1].rsplit("\nWhat ", 1)[0]
        for nd in s.meta["needles"]:
            assert nd["needle"] in context
            before = context[: context.index(nd["needle"])]
            if s.meta["haystack"] == "essay":
                assert nd["depth"] in [round(100 * i / 39) for i in range(40)]
                # exactly `sentence` haystack sentences come before the needle (other needles excluded)
                hay_before = [x for x in split_sentences(before) if not x.startswith("One of the special magic")]
                assert len(hay_before) == nd["sentence"], (s.id, nd)
            else:
                assert before.count("\n") == nd["line"]
                assert context.split("\n")[nd["line"]] == nd["needle"]


def test_niah_answers_are_in_the_prompt_under_the_queried_key():
    _, samples = generate(("niah_single_1", "niah_single_3", "niah_multikey_1", "niah_multikey_2", "niah_multivalue",
                           "niah_multiquery"), (2048,), 3)
    for s in samples:
        text = prompt_text(s)
        kinds = "uuids" if s.meta["task"] == "niah_single_3" else "numbers"
        keys = [k.strip() for k in re.split(r", and |, ", s.meta["query"])]
        found = [v for k in keys for v in re.findall(re.escape(f"One of the special magic {kinds} for {k} is: ")
                                                      + r"([^\s]+)\.", text)]
        assert sorted(found) == sorted(s.references), s.id
        singular = s.meta["task"] not in ("niah_multivalue", "niah_multiquery")
        assert text.endswith(f" The special magic {kinds[:-1] if singular else kinds} for {s.meta['query']} mentioned "
                             f"in the provided text {'is' if singular else 'are'}")


def test_vt_chain_is_recoverable():
    _, samples = generate(("vt",), (2048,), 3)
    for s in samples:
        task_part = prompt_text(s).split("\n\nMemorize and track", 1)[1]  # after the one-shot example
        value = s.meta["query"]
        direct = dict(re.findall(r"VAR (\w+) = (\d+)", task_part))
        links = dict(re.findall(r"VAR (\w+) = VAR (\w+)", task_part))
        chain = [v for v, x in direct.items() if x == value]
        while True:
            nxt = [a for a, b in links.items() if b == chain[-1]]
            if not nxt:
                break
            chain += nxt
        assert chain == s.references and len(chain) == 5
        assert "they are:  " in prompt_text(s)  # the example's answer after two spaces, as RULER


def test_cwe_and_fwe_answers_are_the_most_frequent_words():
    # 8192: RULER's full counts (x30 / x3) take ~8 tokens per numbered word in the 2K-token test tokenizer
    _, samples = generate(("cwe", "fwe"), (8192,), 2)
    for s in samples:
        text = prompt_text(s)
        if s.meta["task"] == "cwe":
            listing = text.rsplit("Memorize the ones that appear most often.\n", 1)[1].split("\nQuestion:")[0]
            counts = Counter(re.findall(r"\d+\. (\S+)", listing))
            assert {w for w, c in counts.items() if c == 30} == set(s.references)
            assert set(counts.values()) == {30, 3}
        else:
            coded = text.split("coded words. ", 1)[1].split("\nQuestion:")[0].split()
            ranked = [w for w, _ in Counter(w for w in coded if w != "...").most_common(3)]
            assert ranked == s.references


def test_qa_documents_hold_the_answer():
    _, samples = generate(("qa_1", "qa_2"), (1024,), 3)
    for s in samples:
        text = prompt_text(s)
        docs = dict(re.findall(r"Document (\d+):\n(.*?)(?=\n\nDocument \d+:|\n\nAnswer the question)", text, re.S))
        gold = " ".join(docs[str(i)] for i in s.meta["gold_docs"])
        assert any(a in gold for a in s.references), s.id
    # SQuAD: unanswerable questions are skipped; the three answerable ones come in file order
    assert [s.references[0] for s in samples if s.meta["task"] == "qa_1"] == ["The Nile", "The Amazon", "Mount Everest"]


def test_same_seed_same_prompts_other_seed_other_prompts():
    a = [s.prompt_ids for s in generate(("niah_single_1", "vt"), (1024,), 2, 42)[1]]
    b = [s.prompt_ids for s in Ruler(OmegaConf.structured(RulerConfig(tasks=["niah_single_1", "vt"], lengths=[1024],
                                                                      num_samples=2)), seed=42).samples(tok())]
    c = [s.prompt_ids for s in generate(("niah_single_1", "vt"), (1024,), 2, 7)[1]]
    assert a == b and a != c


# seed 42, the shipped 2K BPE tokenizer, 1024 tokens: generated once; a change to any generator changes them
GOLDEN_HASHES = {
    'niah_single_1/L1024/0': 'bec7113049010aa8',
    'niah_single_2/L1024/0': 'fe98956a121ff356',
    'niah_single_3/L1024/0': 'cd37c37475bfd981',
    'niah_multikey_1/L1024/0': 'f62295b6282787aa',
    'niah_multikey_2/L1024/0': '999ad77187d0a561',
    'niah_multikey_3/L1024/0': 'e5cc756830487518',
    'niah_multivalue/L1024/0': '9a331a372c802827',
    'niah_multiquery/L1024/0': '2c5a978583916cde',
    'vt/L1024/0': '3d2805c53f14c8ea',
    'cwe/L1024/0': '76dcd34c635e18af',
    'fwe/L1024/0': '9bf94a19f004e4eb',
    'qa_1/L1024/0': 'bd1c5e712de4f64d',
    'qa_2/L1024/0': 'd985e9521bd55caf',
}


def test_golden_sample_hashes():
    _, samples = generate(tuple(ALL_TASKS), (1024,), 1)
    got = {s.id: hashlib.sha256(",".join(map(str, s.prompt_ids)).encode()).hexdigest()[:16] for s in samples}
    assert got == GOLDEN_HASHES


def test_postprocess_and_scores():
    assert Ruler.postprocess("  1234567\x00abc\t\n ") == "1234567\nabc"
    task, samples = generate(("niah_multivalue",), (1024,), 1)
    s = samples[0]

    class RT:
        def generate(self, ids, n):
            from sparsebench.evals.base import Completion

            return Completion(" " + ", ".join(s.references[:3]) + " and more", [1])

    row = task.run_sample(s, RT())
    assert row["score"] == pytest.approx(0.75)  # 3 of 4 values
    agg = task.aggregate([{**row, "task": "niah_multivalue", "length": 1024}])
    assert agg["niah_multivalue/1024"] == pytest.approx(75.0) and agg["score"] == pytest.approx(75.0)


def test_quick_screen_command_runs(tmp_path):
    """The issue's CI screen: five tasks at 1K, four samples each, on tiny_llama through the CLI."""
    import json

    from helpers import cli

    r = cli("task=ruler", "task.tasks=[niah_single_1,niah_multikey_2,vt,cwe,fwe]", "task.lengths=[1024]",
            "task.num_samples=4", "model=tiny_llama", f"paths.output_dir={tmp_path}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (res,) = [json.loads(p.read_text()) for p in tmp_path.glob("runs/ruler/*/*/result.json")]
    assert res["status"] == "ok" and res["n_samples"] == 20
    for t in ("niah_single_1", "niah_multikey_2", "vt", "cwe", "fwe"):
        assert f"{t}/1024" in res["metrics"]
    assert (Path(res["record_dir"]) / "ruler_table.md").exists()
