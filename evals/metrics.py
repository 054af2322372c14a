"""Benchmark metrics, as the benchmarks' own evaluation code computes them.

LongBench (THUDM/LongBench, LongBench/metrics.py): qa_f1 (normalised token F1), qa_f1_zh
(jieba tokens), rouge_l / rouge_l_zh (the `rouge` package 1.0.1, ROUGE-L F; jieba for Chinese),
classification, retrieval (en / zh), count, code_sim (first non-comment line, fuzzywuzzy's
`fuzz.ratio` semantics on difflib). RULER (NVIDIA/RULER): string_match_all / string_match_part.
LongBench v2: answer extraction. Every function takes (prediction, ground_truth) strings.
"""

from __future__ import annotations

import difflib
import re
import string
from collections import Counter

# ------------------------------------------------------------------------------ normalisation
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CN_PUNCT = ("！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿"
             "–—‘’‛“”„‟…‧﹏.")


def normalize_answer(s: str) -> str:
    """Lower-case, drop ASCII punctuation, drop articles, collapse whitespace (SQuAD style)."""
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    return " ".join(_ARTICLES.sub(" ", s).split())


def normalize_zh_answer(s: str) -> str:
    """Lower-case, drop ASCII and CJK punctuation, drop all whitespace."""
    drop = set(string.punctuation + _CN_PUNCT)
    return "".join("".join(ch for ch in s.lower() if ch not in drop).split())


def _jieba(text: str) -> list[str]:
    import jieba

    jieba.setLogLevel(60)  # no "Building prefix dict" chatter
    return list(jieba.cut(text, cut_all=False))


# ------------------------------------------------------------------------------ token F1
def f1_tokens(pred: list[str], gold: list[str]) -> float:
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    p, r = same / len(pred), same / len(gold)
    return 2 * p * r / (p + r)


def qa_f1(prediction: str, ground_truth: str, **_) -> float:
    return f1_tokens(normalize_answer(prediction).split(), normalize_answer(ground_truth).split())


def qa_f1_zh(prediction: str, ground_truth: str, **_) -> float:
    pred = [t for t in (normalize_zh_answer(x) for x in _jieba(prediction)) if t]
    gold = [t for t in (normalize_zh_answer(x) for x in _jieba(ground_truth)) if t]
    return f1_tokens(pred, gold)


# ------------------------------------------------------------------------------ ROUGE-L
def rouge_l(prediction: str, ground_truth: str, **_) -> float:
    """ROUGE-L F of the `rouge` package 1.0.1 (sentences split on '.', union LCS over word sets);
    0 when it raises (empty hypothesis, recursion on very long sentences), as LongBench does."""
    from rouge import Rouge

    try:
        return float(Rouge().get_scores([prediction], [ground_truth], avg=True)["rouge-l"]["f"])
    except Exception:  # LongBench's bare except: any failure scores 0
        return 0.0


def rouge_l_zh(prediction: str, ground_truth: str, **_) -> float:
    return rouge_l(" ".join(_jieba(prediction)), " ".join(_jieba(ground_truth)))


# ------------------------------------------------------------------------------ classification, retrieval, count
def classification(prediction: str, ground_truth: str, all_classes=None, **_) -> float:
    """1 / (#classes matched) if the gold class is among the classes named in the prediction.
    Matches contained in the gold label are dropped as LongBench drops them (removing from the list
    being iterated, which skips the element after each removal)."""
    matches = [c for c in (all_classes or []) if c in prediction]
    for term in matches:
        if term in ground_truth and term != ground_truth:
            matches.remove(term)
    return 1.0 / len(matches) if ground_truth in matches else 0.0


def _id_fraction(prediction: str, target: str) -> float:
    numbers = re.findall(r"\d+", prediction)
    return sum(n == target for n in numbers) / len(numbers) if numbers else 0.0


def retrieval(prediction: str, ground_truth: str, **_) -> float:
    return _id_fraction(prediction, re.findall(r"Paragraph (\d+)", ground_truth)[0])


def retrieval_zh(prediction: str, ground_truth: str, **_) -> float:
    return _id_fraction(prediction, re.findall(r"段落(\d+)", ground_truth)[0])


def count(prediction: str, ground_truth: str, **_) -> float:
    return _id_fraction(prediction, str(ground_truth))


# ------------------------------------------------------------------------------ code
def fuzz_ratio(a: str, b: str) -> int:
    """fuzzywuzzy's fuzz.ratio without python-Levenshtein: identical -> 100, an empty side -> 0,
    else round(100 * difflib ratio) (Python's round)."""
    if a == b:
        return 100
    if not a or not b:
        return 0
    return int(round(100 * difflib.SequenceMatcher(None, a, b).ratio()))


def code_sim(prediction: str, ground_truth: str, **_) -> float:
    """Similarity of the first prediction line that is not a comment or a code fence."""
    first = next((ln for ln in prediction.lstrip("\n").split("\n")
                  if "`" not in ln and "#" not in ln and "//" not in ln), "")
    return fuzz_ratio(first, ground_truth) / 100


# ------------------------------------------------------------------------------ RULER
def string_match_all(preds: list[str], refs: list[list[str]]) -> float:
    """100 * mean over samples of the fraction of references contained in the prediction (case-insensitive)."""
    return 100 * sum(sum(r.lower() in p.lower() for r in rs) / len(rs) for p, rs in zip(preds, refs)) / len(preds)


def string_match_part(preds: list[str], refs: list[list[str]]) -> float:
    """100 * mean over samples of whether any reference is contained in the prediction (case-insensitive)."""
    return 100 * sum(max(r.lower() in p.lower() for r in rs) for p, rs in zip(preds, refs)) / len(preds)


# ------------------------------------------------------------------------------ LongBench v2
def extract_choice(response: str) -> str | None:
    """'The correct answer is (X)' (or without parentheses), asterisks removed; None if absent."""
    response = response.replace("*", "")
    m = re.search(r"The correct answer is \(([A-D])\)", response) or re.search(r"The correct answer is ([A-D])", response)
    return m.group(1) if m else None


LONGBENCH_METRICS = {
    "qa_f1": qa_f1, "qa_f1_zh": qa_f1_zh, "rouge": rouge_l, "rouge_zh": rouge_l_zh,
    "classification": classification, "retrieval": retrieval, "retrieval_zh": retrieval_zh, "count": count,
    "code_sim": code_sim,
}
