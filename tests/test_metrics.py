"""Every benchmark metric against values worked out by hand (comments show the arithmetic)."""

from __future__ import annotations

import pytest

from sparsebench.evals import metrics as M


@pytest.mark.parametrize("pred,gold,want", [
    ("The Eiffel Tower", "Eiffel Tower", 1.0),          # articles and case dropped
    ("Paris, France", "Paris", 2 / 3),                  # p = 1/2, r = 1 -> 2pr/(p+r) = 2/3
    ("", "Paris", 0.0),                                 # empty prediction
    ("!!!", "Paris", 0.0),                              # punctuation only -> no tokens
    ("a b c d", "c d e", 2 / 3),                        # 'a' is an article: {b c d} vs {c d e}: 2 shared, p = r = 2/3
    ("Café Zürich", "café ZÜRICH", 1.0),                # unicode lower-casing
    ("the the cat cat", "cat", 2 / 3),                  # multiset: 1 shared of 2 predicted
])
def test_qa_f1(pred, gold, want):
    assert M.qa_f1(pred, gold) == pytest.approx(want)


@pytest.mark.parametrize("pred,gold,want", [
    ("北京天安门", "北京天安门", 1.0),
    ("我爱北京天安门", "北京天安门", 2 / 3),             # [我 爱 北京 天安门] vs [北京 天安门]: p = 2/4, r = 1
    ("", "北京", 0.0),
    ("。！？", "北京", 0.0),                             # CJK punctuation only
    ("上海", "北京", 0.0),
    ("北京。", "北京", 1.0),                              # punctuation tokens dropped
])
def test_qa_f1_zh(pred, gold, want):
    assert M.qa_f1_zh(pred, gold) == pytest.approx(want)


@pytest.mark.parametrize("pred,gold,want", [
    ("the cat sat on the mat", "the cat sat", 0.75),    # word sets: LCS 3 of ref 3 (R = 1), hyp 5 (P = 3/5) -> 0.75
    ("the cat sat", "the cat sat", 1.0),
    ("", "the cat sat", 0.0),                           # empty hypothesis raises in `rouge`: 0
    ("...", "the cat sat", 0.0),                        # dots only: no sentence left: 0
    ("dogs bark", "the cat sat", 0.0),
    ("cat the", "the cat", 2 / 3 * 0 + 0.5),            # LCS of [cat the] vs [the cat] is 1 word: P = R = 1/2
])
def test_rouge_l(pred, gold, want):
    assert M.rouge_l(pred, gold) == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("pred,gold,want", [
    ("我爱北京天安门", "我爱北京天安门", 1.0),
    ("", "我爱北京天安门", 0.0),
    ("北京天安门", "我爱北京天安门", 2 * (1 * 0.5) / 1.5),   # words {北京 天安门} vs {我 爱 北京 天安门}: P = 1, R = 1/2
    ("上海", "北京", 0.0),
    ("。", "北京", 0.0),                                  # '。' is one word, no overlap
])
def test_rouge_l_zh(pred, gold, want):
    assert M.rouge_l_zh(pred, gold) == pytest.approx(want, abs=1e-6)


CLASSES = ["Location", "Person", "Number", "Entity"]


@pytest.mark.parametrize("pred,gold,classes,want", [
    ("Location", "Location", CLASSES, 1.0),
    ("Location or Person", "Location", CLASSES, 0.5),   # two classes named
    ("Nothing here", "Location", CLASSES, 0.0),
    ("", "Person", CLASSES, 0.0),
    # LongBench's removal while iterating: [A, AB, ABC] -> 'A' removed, 'AB' skipped -> [AB, ABC] -> 1/2
    ("ABC", "ABC", ["A", "AB", "ABC"], 0.5),
    ("体育新闻", "体育", ["体育", "新闻", "财经"], 0.5),    # Chinese labels: 体育 and 新闻 both named
])
def test_classification(pred, gold, classes, want):
    assert M.classification(pred, gold, all_classes=classes) == pytest.approx(want)


@pytest.mark.parametrize("pred,want", [
    ("Paragraph 12", 1.0), ("Paragraph 12 and Paragraph 3", 0.5), ("", 0.0), ("The answer is 120", 0.0),
    ("12 12 5 7", 0.5),
])
def test_retrieval(pred, want):
    assert M.retrieval(pred, "Paragraph 12") == pytest.approx(want)


@pytest.mark.parametrize("pred,want", [
    ("段落3", 1.0), ("段落3，段落30", 0.5), ("没有", 0.0), ("答案是段落3和3", 1.0), ("", 0.0),
])
def test_retrieval_zh(pred, want):
    assert M.retrieval_zh(pred, "段落3") == pytest.approx(want)


@pytest.mark.parametrize("pred,want", [("7", 1.0), ("There are 7 or 8", 0.5), ("seven", 0.0), ("", 0.0), ("17", 0.0)])
def test_count(pred, want):
    assert M.count(pred, "7") == pytest.approx(want)


@pytest.mark.parametrize("pred,gold,want", [
    ("return x + 1", "return x + 1", 1.0),
    ("# comment\nreturn x", "return x", 1.0),           # comment lines skipped
    ("```python\nfoo()", "foo()", 1.0),                 # fence skipped
    ("", "foo()", 0.0),                                 # no line: empty vs gold -> 0
    ("abcd", "abce", 0.75),                             # difflib: 2 * 3 matches / 8 chars = 0.75
    ("ab", "abcd", 0.67),                               # 2 * 2 / 6 = 0.667 -> round(66.7) = 67
    ("// c-style\nint x;", "int x;", 1.0),
])
def test_code_sim(pred, gold, want):
    assert M.code_sim(pred, gold) == pytest.approx(want)


def test_string_match_all_and_part():
    preds = ["The numbers are 123 and 456.", "x", "", "ÄPFEL und Birnen"]
    refs = [["123", "456"], ["y", "x"], ["1"], ["äpfel", "kiwi"]]
    # all: (2/2 + 1/2 + 0/1 + 1/2) / 4 * 100 = 50; part: (1 + 1 + 0 + 1) / 4 * 100 = 75
    assert M.string_match_all(preds, refs) == pytest.approx(50.0)
    assert M.string_match_part(preds, refs) == pytest.approx(75.0)
    assert M.string_match_all(["ab"], [["A", "B", "c"]]) == pytest.approx(200 / 3)
    assert M.string_match_part(["nothing"], [["a1"]]) == 0.0
    assert M.string_match_all(["1234567"], [["123456"]]) == 100.0  # substring, as RULER


@pytest.mark.parametrize("text,want", [
    ("The correct answer is (B)", "B"), ("**The correct answer is (C)**", "C"), ("The correct answer is D.", "D"),
    ("I think A", None), ("", None), ("The correct answer is (E)", None),
])
def test_extract_choice(text, want):
    assert M.extract_choice(text) == want
