"""ppl and fidelity against values computed independently."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from transformers import LlamaConfig, LlamaForCausalLM

from sparsebench.attention import attach
from sparsebench.evals import Runtime
from sparsebench.evals.fidelity import Fidelity, FidelityConfig
from sparsebench.evals.ppl import Perplexity, PplConfig
from sparsebench.models import byte_tokenizer
from sparsebench.policies import make_policy


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=260, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=256)
    m = LlamaForCausalLM(cfg).eval()
    m.set_attn_implementation("eager")
    return m


def run(task, model, policy):
    tok = byte_tokenizer()
    with attach(model, make_policy(policy), "reference") as s:
        rows = [task.run_sample(x, Runtime(model, tok, s)) for x in task.samples(tok)]
    return task.aggregate(rows), rows


@pytest.mark.parametrize("prefill,chunk", [(-1, 1), (100, 37), (1, 64)])
def test_ppl_under_full_equals_the_models_own_loss(model, prefill, chunk):
    t = Perplexity(OmegaConf.structured(PplConfig(length=300, num_samples=2, prefill=prefill, chunk=chunk)), seed=3)
    agg, rows = run(t, model, {"name": "full"})
    tok = byte_tokenizer()
    nll, n = 0.0, 0
    with torch.no_grad():
        for s in t.samples(tok):
            ids = torch.tensor([s.prompt_ids])
            loss = model(ids, labels=ids).loss  # mean over the 299 predicted tokens
            nll += float(loss) * (ids.shape[1] - 1)
            n += ids.shape[1] - 1
    assert agg["tokens"] == n == 2 * 299
    assert abs(agg["ppl"] - math.exp(nll / n)) / agg["ppl"] < 1e-4
    if prefill > 0:
        assert rows[0]["decode_tokens"] == 299 - prefill  # logits of decode steps predict tokens prefill+1 .. 299


def test_ppl_samples_are_deterministic_and_seeded():
    tok = byte_tokenizer()
    mk = lambda seed: Perplexity(OmegaConf.structured(PplConfig(length=128, num_samples=3)), seed=seed)  # noqa: E731
    a, b, c = mk(1).samples(tok), mk(1).samples(tok), mk(2).samples(tok)
    assert [x.prompt_ids for x in a] == [x.prompt_ids for x in b] != [x.prompt_ids for x in c]
    assert all(len(x.prompt_ids) == 128 and x.prompt_ids[0] == tok.bos_token_id for x in a)


def test_fidelity_of_full_is_perfect_and_of_a_sparse_policy_is_not(model):
    t = Fidelity(OmegaConf.structured(FidelityConfig(length=260, prefill=160, num_samples=1, chunk=33)), seed=0)
    same, _ = run(t, model, {"name": "full"})
    assert same["kl"] < 1e-9 and same["top1"] == 1.0 and same["positions"] == 100
    assert all(abs(same[f"recall_L{i}"] - 1.0) < 1e-6 for i in range(3))
    sparse, _ = run(t, model, {"name": "streaming_llm", "sink": 4, "window": 28})
    assert sparse["kl"] > 1e-4 and sparse["top1"] < 1.0
    assert 0.0 < sparse["recall_mean"] < 1.0
