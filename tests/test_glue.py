"""The attention glue on a real transformers model: plain forward, generate, batch with left padding, detach."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from sparsebench.attention import attach
from sparsebench.kv_store import SparseKVCache
from sparsebench.policies import make_policy


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=8,
                      num_key_value_heads=2, max_position_embeddings=1024)
    m = LlamaForCausalLM(cfg).eval()
    m.set_attn_implementation("eager")
    return m


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 97, (2, 41), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :9] = 0  # row 1: 9 tokens of left padding
    return ids, mask


def test_full_policy_equals_native_attention_forward(model):
    ids, _ = batch()
    with torch.no_grad():
        want = model(ids).logits
        with attach(model, make_policy({"name": "full"}), "reference"):
            got = model(ids).logits
    assert (got - want).abs().max().item() < 1e-5


def test_generate_with_left_padding_matches_native(model):
    ids, mask = batch(1)
    kw = dict(attention_mask=mask, max_new_tokens=12, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        want = model.generate(ids, **kw)
        with attach(model, make_policy({"name": "full"}), "reference") as session:
            got = model.generate(ids, **kw)
    assert torch.equal(got, want)
    assert session.stats.sequences == 1
    assert session.stats.decode_layer_steps == 11 * 3  # 11 decode steps x 3 layers


def test_padded_row_equals_the_same_row_alone(model):
    """Padding is never stored: row 1 of a left-padded batch gives what it gives alone."""
    ids, mask = batch(2)
    pol = make_policy({"name": "h2o", "budget": 16})
    with torch.no_grad(), attach(model, pol, "reference"):
        both = model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0)
        alone = model.generate(ids[1:, 9:], attention_mask=mask[1:, 9:], max_new_tokens=8, do_sample=False,
                               pad_token_id=0)
    assert torch.equal(both[1, -8:], alone[0, -8:])


def test_cache_is_a_transformers_cache_and_detach_restores(model):
    from transformers.cache_utils import Cache

    ids, _ = batch()
    before = model.config._attn_implementation
    with torch.no_grad(), attach(model, make_policy({"name": "quest", "budget": 16, "page_size": 4}), "reference"):
        out = model(ids, use_cache=True)
        assert isinstance(out.past_key_values, SparseKVCache)
        assert isinstance(out.past_key_values, Cache)
        assert out.past_key_values.get_seq_length() == ids.shape[1]
    assert model.config._attn_implementation == before
    with torch.no_grad():
        out = model(ids, use_cache=True)
    assert not isinstance(out.past_key_values, SparseKVCache)


def test_sparse_policy_changes_generation_only_when_sparse(model):
    """A StreamingLLM window covering the prompt equals full; a small one does not (on this random model)."""
    ids, mask = batch(3)
    kw = dict(attention_mask=mask, max_new_tokens=10, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        with attach(model, make_policy({"name": "full"}), "reference"):
            full = model.generate(ids, output_logits=True, return_dict_in_generate=True, **kw)
        with attach(model, make_policy({"name": "streaming_llm", "sink": 4, "window": 1000}), "reference"):
            wide = model.generate(ids, output_logits=True, return_dict_in_generate=True, **kw)
        with attach(model, make_policy({"name": "streaming_llm", "sink": 2, "window": 6}), "reference"):
            narrow = model.generate(ids, output_logits=True, return_dict_in_generate=True, **kw)
    d_wide = max((a - b).abs().max().item() for a, b in zip(full.logits, wide.logits))
    d_narrow = max((a - b).abs().max().item() for a, b in zip(full.logits, narrow.logits))
    assert d_wide < 1e-5 and d_narrow > 1e-3


def test_streaming_llm_cache_positions_through_generate(model):
    """attach hands the model's RoPE frequencies to the backend: with a window covering the whole sequence the
    cache index equals the position (no re-rotation: equal to full); a small window runs and differs."""
    ids, mask = batch(4)
    kw = dict(attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0, output_logits=True,
              return_dict_in_generate=True)
    with torch.no_grad():
        with attach(model, make_policy({"name": "full"}), "reference"):
            full = model.generate(ids, **kw)
        with attach(model, make_policy({"name": "streaming_llm", "window": 1000, "positions": "cache"}), "reference") as s:
            wide = model.generate(ids, **kw)
            assert s.backend.rope_inv_freq is not None
        with attach(model, make_policy({"name": "streaming_llm", "sink": 2, "window": 8, "positions": "cache"}),
                    "reference"):
            narrow = model.generate(ids, **kw)
        with attach(model, make_policy({"name": "streaming_llm", "sink": 2, "window": 8}), "reference"):
            narrow_orig = model.generate(ids, **kw)
    assert max((a - b).abs().max().item() for a, b in zip(full.logits, wide.logits)) < 1e-4
    assert max((a - b).abs().max().item() for a, b in zip(narrow.logits, narrow_orig.logits)) > 1e-3
