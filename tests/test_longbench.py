"""LongBench end to end: the original jsonl format through the real loader, a canned-prediction model,
task scores equal to values computed by hand; truncation; LongBench-E buckets; v2."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from sparsebench.errors import ConfigError
from sparsebench.evals.base import Completion, Runtime
from sparsebench.evals.longbench import LongBench, LongBenchConfig
from sparsebench.evals.longbench_prompts import PROMPTS
from sparsebench.models import byte_tokenizer

FIX = Path(__file__).parent / "fixtures" / "longbench"


class Arch:
    max_positions = 4096


class Model:
    name = "m"
    allow_extrapolation = False


class Canned(Runtime):
    """A 'model' that answers each sample id with a fixed text; records what it was asked."""

    def __init__(self, answers: dict[str, str], tokenizer):
        super().__init__(model=None, tokenizer=tokenizer, session=None)
        self.answers, self.calls, self.current = answers, [], None

    def generate(self, prompt_ids, max_new_tokens, stop_ids=None, min_new_tokens=0):
        self.calls.append((self.current, max_new_tokens, stop_ids, min_new_tokens))
        text = self.answers[self.current]
        return Completion(text, list(range(len(text))))


def run(answers, **cfg):
    tok = byte_tokenizer()
    task = LongBench(OmegaConf.structured(LongBenchConfig(**{"data_dir": str(FIX), **cfg})), seed=42)
    task.validate(Arch(), Model())
    rt = Canned(answers, tok)
    rows = []
    for s in task.samples(tok):
        rt.current = s.id
        rows.append({"id": s.id, **task.run_sample(s, rt)})
    return task.aggregate(rows), rows, rt


V1 = {
    "hotpotqa/hotpotqa-0": "Paris",                 # F1 1
    "hotpotqa/hotpotqa-1": "Paris, France",         # max(F1 vs Lyon = 0, vs Paris = 2/3) = 2/3
    "multifieldqa_zh/multifieldqa_zh-0": "我爱北京天安门",  # [我 爱 北京 天安门] vs [北京 天安门]: 2/3
    "multifieldqa_zh/multifieldqa_zh-1": "上海",       # 0
    "samsum/samsum-0": "\nthe cat sat on the mat\nDialogue: more",  # first line only: ROUGE-L 0.75
    "samsum/samsum-1": "C says goodbye",           # 1
    "vcsum/vcsum-0": "北京天安门",                    # ROUGE-L over jieba words: P = 1, R = 1/2 -> 2/3
    "trec/trec-0": "Location or Person\nQuestion: next",  # first line: two classes named -> 1/2
    "trec/trec-1": "Number",                       # 1
    "passage_retrieval_en/passage_retrieval_en-0": "Paragraph 2",  # 1
    "passage_retrieval_zh/passage_retrieval_zh-0": "段落1和段落2",   # [1, 2]: 1/2
    "passage_count/passage_count-0": "2 or 3",     # [2, 3]: 1/2
    "lcc/lcc-0": "# add one\nreturn x + 2",        # first code line 'return x + 2' vs 'return x + 1': 2*11/24 -> 92
}
WANT = {"hotpotqa": 100 * (1 + 2 / 3) / 2, "multifieldqa_zh": 100 * (2 / 3 + 0) / 2, "samsum": 100 * (0.75 + 1) / 2,
        "vcsum": 100 * 2 / 3, "trec": 100 * (0.5 + 1) / 2, "passage_retrieval_en": 100.0,
        "passage_retrieval_zh": 50.0, "passage_count": 50.0, "lcc": 92.0}


def test_v1_scores_equal_hand_computed():
    agg, rows, rt = run(V1, datasets=list(WANT))
    for name, want in WANT.items():
        assert agg[name] == pytest.approx(want, abs=1e-4), name
    # English categories: single-doc has no en dataset here; multi-doc = hotpotqa; summ/few-shot = samsum / (trec, samsum)
    assert agg["en/multi_doc_qa"] == pytest.approx(WANT["hotpotqa"])
    assert agg["en/few_shot"] == pytest.approx((WANT["trec"] + WANT["samsum"]) / 2)
    assert agg["en/synthetic"] == pytest.approx((WANT["passage_count"] + WANT["passage_retrieval_en"]) / 2)
    assert agg["en/code"] == agg["zh/code"] == pytest.approx(92.0)
    assert agg["zh/synthetic"] == pytest.approx(50.0)
    cats = ["multi_doc_qa", "few_shot", "synthetic", "code"]  # no English single-doc or summarization fixture
    assert "en/summarization" not in agg and "en/single_doc_qa" not in agg
    assert agg["en/average"] == pytest.approx(sum(agg[f"en/{c}"] for c in cats) / 4)
    assert agg["zh/summarization"] == pytest.approx(WANT["vcsum"])
    # generation settings: the dataset's max_new_tokens; samsum stops at a newline, never at once
    calls = {c[0]: c for c in rt.calls}
    assert calls["samsum/samsum-0"][1] == 128 and calls["samsum/samsum-0"][3] == 1
    assert 10 in calls["samsum/samsum-0"][2]  # '\n' in the byte tokenizer
    assert calls["lcc/lcc-0"][1] == 64 and calls["lcc/lcc-0"][2] is None


def test_prompts_are_the_original_templates():
    tok = byte_tokenizer()
    task = LongBench(OmegaConf.structured(LongBenchConfig(data_dir=str(FIX), datasets=["hotpotqa", "lcc"])), seed=42)
    task.validate(Arch(), Model())
    s = {x.id: x for x in task.samples(tok)}
    text = tok.decode(s["hotpotqa/hotpotqa-0"].prompt_ids)
    want = PROMPTS["hotpotqa"].format(context="Passage 1:\nThe Eiffel Tower is in Paris.", input="Where is the Eiffel Tower?")
    assert text == "<s>" + want  # no chat template in the byte tokenizer: raw prompt after BOS
    assert tok.decode(s["lcc/lcc-0"].prompt_ids) == "<s>Please complete the code given below. \ndef f(x):\n    y = x\nNext line of code:\n"


def test_middle_truncation():
    tok = byte_tokenizer()
    task = LongBench(OmegaConf.structured(LongBenchConfig(data_dir=str(FIX), datasets=["hotpotqa"], max_length=100)),
                     seed=42)
    task.validate(Arch(), Model())
    s = task.samples(tok)[0]
    full = "<s>" + PROMPTS["hotpotqa"].format(context="Passage 1:\nThe Eiffel Tower is in Paris.",
                                             input="Where is the Eiffel Tower?")
    # tokens: <s> + one per byte; keep the first 50 and the last 50 tokens, special tokens dropped
    ids = tok(full[3:])["input_ids"]
    kept = tok.decode(ids[:50], skip_special_tokens=True) + tok.decode(ids[-50:], skip_special_tokens=True)
    assert s.meta["truncated"]
    assert tok.decode(s.prompt_ids) == "<s>" + kept
    assert kept.startswith("Answer the question based on the given passages.")
    assert kept.endswith("Question: Where is the Eiffel Tower?\nAnswer:")
    assert len(s.prompt_ids) == 100  # 49 bytes + 50 bytes + <s>
    assert "Eiffel Tower is in Paris" not in kept  # the middle is gone


def test_longbench_e_length_buckets():
    answers = {"hotpotqa/hotpotqa-0": "Paris", "hotpotqa/hotpotqa-1": "no", "hotpotqa/hotpotqa-2": "Oslo",
               "hotpotqa/hotpotqa-3": "no"}
    agg, _, _ = run(answers, version="e", datasets=["hotpotqa"])
    assert agg["hotpotqa/0-4k"] == 50.0  # lengths 100 (right) and 3999 (wrong)
    assert agg["hotpotqa/4-8k"] == 0.0
    assert agg["hotpotqa/8k+"] == 100.0
    assert agg["hotpotqa"] == 50.0


def test_v2_extraction_and_accuracies():
    answers = {"v2/v2-0": "The correct answer is (B)", "v2/v2-1": "**The correct answer is C**",
               "v2/v2-2": "I am not sure"}
    agg, rows, _ = run(answers, version="v2", data_dir=str(FIX / "v2"))
    assert [r["pred"] for r in rows] == ["B", "C", None]
    assert agg["overall"] == pytest.approx(200 / 3)
    assert (agg["easy"], agg["hard"]) == (100.0, 50.0)
    assert (agg["short"], agg["medium"], agg["long"]) == (100.0, 100.0, 0.0)


def test_v2_prompt_fill():
    tok = byte_tokenizer()
    task = LongBench(OmegaConf.structured(LongBenchConfig(data_dir=str(FIX / "v2"), version="v2")), seed=42)
    task.validate(Arch(), Model())
    text = tok.decode(task.samples(tok)[0].prompt_ids)
    assert "<text>\nThe sky is blue.\n</text>" in text  # stripped context
    assert "question: Which colour?\nChoices:\n(A) red\n(B) blue" in text


def test_missing_data_is_a_config_error(tmp_path):
    task = LongBench(OmegaConf.structured(LongBenchConfig(data_dir=str(tmp_path), datasets=["hotpotqa"])), seed=42)
    with pytest.raises(ConfigError) as e:
        task.validate(Arch(), Model())
    assert e.value.key == "task.data_dir" and "hotpotqa.jsonl" in str(e.value)
    with pytest.raises(ConfigError) as e:
        LongBench(OmegaConf.structured(LongBenchConfig(data_dir=str(FIX), datasets=["nope"])), seed=1).validate(Arch(), Model())
    assert e.value.key == "task.datasets"
