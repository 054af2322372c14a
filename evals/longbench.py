"""longbench: THUDM LongBench v1 (21 datasets), LongBench-E (13, bucketed by length) and LongBench v2.

Data: a local directory (`task.data_dir`) holding LongBench's files as released: `{dataset}.jsonl`
(v1), `{dataset}_e.jsonl` (E), `data.json` (v2); or `task.source=hub`, which downloads the hub's
parquet mirror (only when asked). Prompts and generation lengths are the benchmark's own
(`longbench_prompts`). v1 / E: the filled prompt is truncated in the middle to `max_length`
tokens (the first and last halves, decoded separately) before the chat template; trec, triviaqa,
samsum, lsht, lcc and repobench-p run without a chat template, and trec, triviaqa, samsum and lsht
score only their first line; samsum stops at a newline. Scores: 100 x mean over items of the max
over references; category and overall averages as LongBench's tables; E's <4K / 4-8K / >8K buckets
by the record's `length`. v2: 0-shot multiple choice (or chain of thought, or no context),
"The correct answer is (X)" extracted, accuracies overall / easy / hard / short / medium / long.
Deviation, recorded in the variant: v2 decodes greedily (the original samples at temperature 0.1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from sparsebench.errors import ConfigError
from sparsebench.evals import metrics as M
from sparsebench.evals.base import TASKS, Runtime, Sample, Task, TaskConfig
from sparsebench.evals.longbench_prompts import MAX_NEW_TOKENS, PROMPTS, V2_PROMPTS
from sparsebench.evals.prompting import encode, use_chat

# dataset -> (language, category, metric)
DATASETS: dict[str, tuple[str, str, str]] = {
    "narrativeqa": ("en", "single_doc_qa", "qa_f1"),
    "qasper": ("en", "single_doc_qa", "qa_f1"),
    "multifieldqa_en": ("en", "single_doc_qa", "qa_f1"),
    "multifieldqa_zh": ("zh", "single_doc_qa", "qa_f1_zh"),
    "hotpotqa": ("en", "multi_doc_qa", "qa_f1"),
    "2wikimqa": ("en", "multi_doc_qa", "qa_f1"),
    "musique": ("en", "multi_doc_qa", "qa_f1"),
    "dureader": ("zh", "multi_doc_qa", "rouge_zh"),
    "gov_report": ("en", "summarization", "rouge"),
    "qmsum": ("en", "summarization", "rouge"),
    "multi_news": ("en", "summarization", "rouge"),
    "vcsum": ("zh", "summarization", "rouge_zh"),
    "trec": ("en", "few_shot", "classification"),
    "triviaqa": ("en", "few_shot", "qa_f1"),
    "samsum": ("en", "few_shot", "rouge"),
    "lsht": ("zh", "few_shot", "classification"),
    "passage_count": ("en", "synthetic", "count"),
    "passage_retrieval_en": ("en", "synthetic", "retrieval"),
    "passage_retrieval_zh": ("zh", "synthetic", "retrieval_zh"),
    "lcc": ("code", "code", "code_sim"),
    "repobench-p": ("code", "code", "code_sim"),
}
E_DATASETS = ["qasper", "multifieldqa_en", "hotpotqa", "2wikimqa", "gov_report", "multi_news", "trec", "triviaqa",
              "samsum", "passage_count", "passage_retrieval_en", "lcc", "repobench-p"]
NO_CHAT = {"trec", "triviaqa", "samsum", "lsht", "lcc", "repobench-p"}
FIRST_LINE = {"trec", "triviaqa", "samsum", "lsht"}
CATEGORIES = ["single_doc_qa", "multi_doc_qa", "summarization", "few_shot", "synthetic", "code"]
HUB = {"v1": "hf://datasets/THUDM/LongBench@~parquet/{config}/test/0000.parquet",
       "v2": "hf://datasets/THUDM/LongBench-v2@~parquet/default/train/0000.parquet"}
V2_MODES = {"0shot": ("0shot", 128), "cot": ("0shot_cot", 1024), "no_context": ("0shot_no_context", 128)}


@dataclass
class LongBenchConfig(TaskConfig):
    name: str = "longbench"
    version: str = "v1"  # v1 | e | v2
    datasets: Optional[List[str]] = None  # v1 / E subset; null = every dataset of the version
    source: str = "local"  # local (task.data_dir) | hub (downloads the parquet mirror)
    data_dir: Optional[str] = None
    max_length: Optional[int] = None  # prompt tokens; null = the model's maximum positions - 500 (v2: - 1024)
    num_samples: Optional[int] = None  # per dataset (null = all)
    chat_template: str = "auto"  # auto (the model's own when it has one) | none
    v2_mode: str = "0shot"  # 0shot | cot | no_context


def _first_line(text: str) -> str:
    return text.lstrip("\n").split("\n")[0]


def score_item(dataset: str, prediction: str, answers: list[str], all_classes=None) -> float:
    """LongBench's per-item score: the max over references (first line only for the few-shot tasks)."""
    if dataset in FIRST_LINE:
        prediction = _first_line(prediction)
    fn = M.LONGBENCH_METRICS[DATASETS[dataset][2]]
    return max([0.0] + [fn(prediction, gt, all_classes=all_classes) for gt in answers])


def truncate_middle(tokenizer, prompt: str, max_length: int) -> tuple[str, bool]:
    """LongBench: keep the first and last int(max_length / 2) tokens, decoded separately, joined."""
    ids = tokenizer(prompt)["input_ids"]
    if len(ids) <= max_length:
        return prompt, False
    half = int(max_length / 2)
    return (tokenizer.decode(ids[:half], skip_special_tokens=True)
            + tokenizer.decode(ids[-half:], skip_special_tokens=True)), True


def fill_v2(template: str, item: dict, cot: str = "") -> str:
    out = template.replace("$DOC$", item["context"].strip()).replace("$Q$", item["question"].strip())
    for c in "ABCD":
        out = out.replace(f"$C_{c}$", item[f"choice_{c}"].strip())
    return out.replace("$COT$", cot)


@TASKS.register("longbench")
class LongBench(Task):
    Config = LongBenchConfig

    def __init__(self, cfg, seed: int = 42):
        super().__init__(cfg, seed)
        self.max_length = cfg.max_length

    # ------------------------------------------------------------------ config
    @property
    def dataset_names(self) -> list[str]:
        c = self.cfg
        if c.version == "v2":
            return ["v2"]
        allowed = E_DATASETS if c.version == "e" else list(DATASETS)
        return list(c.datasets) if c.datasets else allowed

    def _file(self, name: str) -> Path:
        d = Path(self.cfg.data_dir).expanduser()
        if self.cfg.version == "v2":
            return d / "data.json"
        return d / (f"{name}_e.jsonl" if self.cfg.version == "e" else f"{name}.jsonl")

    def validate(self, arch, model_cfg) -> None:
        c = self.cfg
        if c.version not in ("v1", "e", "v2"):
            raise ConfigError("task.version", c.version, "v1, e or v2")
        allowed = E_DATASETS if c.version == "e" else list(DATASETS)
        bad = [d for d in (c.datasets or []) if d not in allowed]
        if bad:
            raise ConfigError("task.datasets", bad, f"datasets of LongBench {c.version}: {', '.join(allowed)}")
        if c.v2_mode not in V2_MODES:
            raise ConfigError("task.v2_mode", c.v2_mode, "one of " + ", ".join(V2_MODES))
        if c.chat_template not in ("auto", "none"):
            raise ConfigError("task.chat_template", c.chat_template, "auto or none")
        if c.source not in ("local", "hub"):
            raise ConfigError("task.source", c.source, "local or hub")
        if c.source == "local":
            if not c.data_dir:
                raise ConfigError("task.data_dir", None, "a directory with LongBench's data files (or task.source=hub)")
            missing = [str(self._file(n)) for n in self.dataset_names if not self._file(n).is_file()]
            if missing:
                raise ConfigError("task.data_dir", c.data_dir, f"a directory holding {', '.join(missing)}")
        if self.max_length is None:
            self.max_length = arch.max_positions - (1024 if c.version == "v2" else 500)
        if self.max_length < 16:
            raise ConfigError("task.max_length", self.max_length, "an integer >= 16")

    def max_context(self) -> int:
        return self.max_length or 0

    # ------------------------------------------------------------------ data
    def records(self, name: str) -> list[dict]:
        c = self.cfg
        if c.source == "hub":
            from datasets import load_dataset

            url = HUB["v2"] if c.version == "v2" else HUB["v1"].format(config=f"{name}_e" if c.version == "e" else name)
            rows = list(load_dataset("parquet", data_files=url, split="train"))
        else:
            f = self._file(name)
            if c.version == "v2":
                text = f.read_text(encoding="utf-8")
                rows = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines() if x.strip()]
            else:
                rows = [json.loads(x) for x in f.read_text(encoding="utf-8").splitlines() if x.strip()]
        return rows[: c.num_samples] if c.num_samples else rows

    def samples(self, tokenizer) -> list[Sample]:
        chat = use_chat(self.cfg.chat_template, tokenizer)
        out = []
        for name in self.dataset_names:
            for i, rec in enumerate(self.records(name)):
                out.append(self._v2_sample(tokenizer, rec, i, chat) if name == "v2" else
                           self._v1_sample(tokenizer, name, rec, i, chat))
        return out

    def _v1_sample(self, tokenizer, name, rec, i, chat) -> Sample:
        prompt, truncated = truncate_middle(tokenizer, PROMPTS[name].format(**rec), self.max_length)
        ids, template = encode(tokenizer, prompt, chat and name not in NO_CHAT)
        meta = {"dataset": name, "length": rec.get("length"), "all_classes": rec.get("all_classes"),
                "truncated": truncated, "template": template}
        return Sample(f"{name}/{rec.get('_id', i)}", ids, list(rec["answers"]), meta)

    def _v2_sample(self, tokenizer, item, i, chat) -> Sample:
        template, _ = V2_MODES[self.cfg.v2_mode]
        text = fill_v2(V2_PROMPTS[template], item)
        ids = tokenizer(text)["input_ids"]
        truncated = len(ids) > self.max_length
        if truncated:
            ids = ids[: self.max_length // 2] + ids[-(self.max_length // 2):]
            text = tokenizer.decode(ids, skip_special_tokens=True)
        ids, tmpl = encode(tokenizer, text, chat)
        meta = {"dataset": "v2", "difficulty": item["difficulty"], "length": item["length"],
                "domain": item.get("domain"), "truncated": truncated, "template": tmpl, "item": item}
        return Sample(f"v2/{item.get('_id', i)}", ids, [item["answer"]], meta)

    # ------------------------------------------------------------------ run
    def run_sample(self, sample: Sample, rt: Runtime) -> dict:
        name = sample.meta["dataset"]
        meta = {k: v for k, v in sample.meta.items() if k != "item"}
        if name == "v2":
            return {**meta, **self._run_v2(sample, rt)}
        stop, min_new = None, 0
        if name == "samsum":  # LongBench stops samsum at the first newline (and never at once)
            from sparsebench.evals.base import default_stop_ids

            stop = default_stop_ids(rt.tokenizer, rt.model) | {rt.tokenizer.encode("\n", add_special_tokens=False)[-1]}
            min_new = 1
        out = rt.generate(sample.prompt_ids, MAX_NEW_TOKENS[name], stop, min_new)
        score = score_item(name, out.text, sample.references, sample.meta.get("all_classes"))
        return {"prediction": out.text, "score": score, **meta, **out.timings()}

    def _run_v2(self, sample: Sample, rt: Runtime) -> dict:
        out = rt.generate(sample.prompt_ids, V2_MODES[self.cfg.v2_mode][1])
        response, extra = out.text.strip(), {}
        if self.cfg.v2_mode == "cot":  # second pass: the answer, given the reasoning (context omitted)
            text = fill_v2(V2_PROMPTS["0shot_cot_ans"], sample.meta["item"], cot=response)
            ids, _ = encode(rt.tokenizer, text, use_chat(self.cfg.chat_template, rt.tokenizer))
            extra = {"response_cot": response}
            out = rt.generate(ids, 128)
            response = out.text.strip()
        pred = M.extract_choice(response)
        return {"prediction": response, "pred": pred, "score": float(pred == sample.references[0]), **extra,
                **out.timings()}

    # ------------------------------------------------------------------ scores
    def aggregate(self, rows: list[dict]) -> dict:
        if self.cfg.version == "v2":
            return self._aggregate_v2(rows)
        out: dict = {"n_samples": len(rows)}
        per: dict[str, float] = {}
        for name in self.dataset_names:
            sc = [r["score"] for r in rows if r["dataset"] == name]
            if sc:
                per[name] = 100 * sum(sc) / len(sc)
                out[name] = per[name]
            if self.cfg.version == "e":
                for bucket, lo, hi in (("0-4k", 0, 4000), ("4-8k", 4000, 8000), ("8k+", 8000, float("inf"))):
                    b = [r["score"] for r in rows if r["dataset"] == name and lo <= (r["length"] or 0) < hi]
                    if b:
                        out[f"{name}/{bucket}"] = 100 * sum(b) / len(b)
        for lang in ("en", "zh"):
            cats = {}
            for cat in CATEGORIES:
                members = [d for d, (lg, c, _) in DATASETS.items() if c == cat and lg in (lang, "code") and d in per]
                if members:
                    cats[cat] = sum(per[d] for d in members) / len(members)
                    out[f"{lang}/{cat}"] = cats[cat]
            if cats:
                out[f"{lang}/average"] = sum(cats.values()) / len(cats)
        out["score"] = sum(per.values()) / len(per) if per else 0.0  # mean over the datasets run
        return out

    def _aggregate_v2(self, rows: list[dict]) -> dict:
        def acc(sel):
            return 100 * sum(r["score"] for r in sel) / len(sel) if sel else float("nan")

        return {"overall": acc(rows), "easy": acc([r for r in rows if r["difficulty"] == "easy"]),
                "hard": acc([r for r in rows if r["difficulty"] != "easy"]),
                "short": acc([r for r in rows if r["length"] == "short"]),
                "medium": acc([r for r in rows if r["length"] == "medium"]),
                "long": acc([r for r in rows if r["length"] not in ("short", "medium")]),
                "score": acc(rows), "n_samples": len(rows)}
