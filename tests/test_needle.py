"""The passkey needle task: deterministic prompts, the needle where the record says, lengths respected."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from sparsebench.evals.needle import NEEDLE, Needle, NeedleConfig
from sparsebench.models import byte_tokenizer


def make(**kw):
    return Needle(OmegaConf.structured(NeedleConfig(**kw)), seed=42)


def test_prompts_are_deterministic_and_fit():
    tok = byte_tokenizer()
    t = make(lengths=[512, 1024], depths=[0, 33, 100], samples_per_cell=2)
    a, b = t.samples(tok), t.samples(tok)
    assert [s.prompt_ids for s in a] == [s.prompt_ids for s in b]
    assert len(a) == 12 and len({s.id for s in a}) == 12
    for s in a:
        n = len(s.prompt_ids) + t.cfg.max_new_tokens
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
    a = Needle(OmegaConf.structured(NeedleConfig()), seed=1).samples(tok)
    b = Needle(OmegaConf.structured(NeedleConfig()), seed=2).samples(tok)
    assert [s.references for s in a] != [s.references for s in b]
