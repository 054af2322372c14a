"""The passkey needle task: deterministic prompts, the needle where the record says, lengths respected."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from sparsebench.evals.needle import DUO_ANSWER, PASSKEY_NEEDLE as NEEDLE, Needle, NeedleConfig, word_overlap
from sparsebench.models import byte_tokenizer


class _Arch:
    max_positions = 16384


class _Model:
    allow_extrapolation = False
    name = "m"


def make(seed=42, **kw):
    t = Needle(OmegaConf.structured(NeedleConfig(**kw)), seed=seed)
    t.validate(_Arch(), _Model())
    return t


def test_prompts_are_deterministic_and_fit():
    tok = byte_tokenizer()
    t = make(lengths=[512, 1024], depths=[0, 33, 100], samples_per_cell=2)
    a, b = t.samples(tok), t.samples(tok)
    assert [s.prompt_ids for s in a] == [s.prompt_ids for s in b]
    assert len(a) == 12 and len({s.id for s in a}) == 12
    for s in a:
        n = len(s.prompt_ids) + t.max_new_tokens
        assert n <= s.meta["length"] and n >= s.meta["length"] - 1
        text = tok.decode(s.prompt_ids)
        needle = NEEDLE.format(key=s.references[0])
        assert needle in text
        at = s.meta["needle_token"]
        assert tok.decode(s.prompt_ids[at : at + len(needle.encode())]) == needle


@pytest.mark.parametrize("depth", [0, 50, 100])
def test_needle_depth(depth):
    tok = byte_tokenizer()
    t = make(lengths=[2048], depths=[depth], sentence_boundary=False)
    (s,) = t.samples(tok)
    prefix_len = s.meta["needle_token"]
    span = len(s.prompt_ids) - len(NEEDLE.format(key=s.references[0]).encode())
    frac = prefix_len / span
    assert abs(frac - depth / 100) < 0.08


def test_seed_changes_keys():
    tok = byte_tokenizer()
    a = make(seed=1).samples(tok)
    b = make(seed=2).samples(tok)
    assert [s.references for s in a] != [s.references for s in b]


def test_uuid_keys_and_scoring():
    tok = byte_tokenizer()
    t = make(key="uuid", lengths=[512], depths=[50])
    (s,) = t.samples(tok)
    key = s.references[0]
    assert len(key) == 36 and key.count("-") == 4
    assert t.score(f" {key.upper()}. Done", key) == 1.0
    assert t.score(" 12345", key) == 0.0


def test_duo_variant_prompt_and_word_overlap_score():
    tok = byte_tokenizer()
    t = make(variant="duo", lengths=[1024], depths=[25])
    (s,) = t.samples(tok)
    text = tok.decode(s.prompt_ids)
    assert text.startswith("<s><|im_start|> This is a very long story book: <book> ")
    assert text.endswith("Answer: The best thing to do in San Francisco is")
    assert "Remember, the best thing to do in San Francisco is eat a sandwich" in text
    # 11 distinct answer words: eat a sandwich and sit in dolores park on sunny day
    assert word_overlap(" eat a sandwich and sit in Dolores Park on a sunny day.", DUO_ANSWER) == 1.0
    assert word_overlap(" EAT A SANDWICH", DUO_ANSWER) == 3 / 11
    assert word_overlap(" go to the beach", DUO_ANSWER) == 0.0
    assert word_overlap("", DUO_ANSWER) == 0.0
    assert word_overlap(" sit in the park on a sunny afternoon", DUO_ANSWER) == 6 / 11


def test_default_lengths_follow_evals_md():
    t = make(lengths=None, num_lengths=4)
    assert t.lengths == [1024, 6144, 11264, 16384]


def test_heatmap_png_has_the_grid_shape(tmp_path):
    import matplotlib.image as mpimg

    t = make(lengths=[512, 1024, 2048], depths=[0, 50, 100])
    rows = [{"length": n, "depth": d, "score": float((n + d) % 3 == 0)} for n in (512, 1024, 2048) for d in (0, 50, 100)]
    art = t.artifacts(rows, tmp_path)
    img = mpimg.imread(art["heatmap"])
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50  # decodes as an image
    assert len(art["grid"]) == 3 and all(len(r) == 3 for r in art["grid"])  # depths x lengths
    assert art["grid"][0][0] == rows[0]["score"]
    table = (tmp_path / "needle_table.md").read_text().splitlines()
    assert len(table) == 2 + 3 and table[0].count("|") == 5
