"""Model configs: the written-out architectures are the real ones; local checkpoints load offline."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_module

from sparsebench.config import register_configs
from sparsebench.errors import ConfigError
from sparsebench.models import byte_tokenizer, hf_config, load_model, model_arch

# parameter counts of the released checkpoints (embedding + layers + head)
PARAMS = {
    "llama3_8b_1048k": 8_030_261_248,
    "llama31_8b_instruct": 8_030_261_248,
    "llama2_7b_32k": 6_738_415_616,
    "mistral_7b_instruct_v02": 7_241_732_096,
    "qwen25_7b_instruct": 7_615_616_512,
}


def model_cfg(name, *overrides):
    register_configs()
    with initialize_config_module("sparsebench.conf", version_base="1.3"):
        return compose("config", overrides=[f"model={name}", *overrides]).model


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_architectures_match_the_released_models(name):
    from transformers import AutoModelForCausalLM

    cfg = model_cfg(name)
    with torch.device("meta"):
        m = AutoModelForCausalLM.from_config(hf_config(cfg))
    assert sum(p.numel() for p in m.parameters()) == PARAMS[name]
    arch = model_arch(cfg)
    assert arch.n_layers == m.config.num_hidden_layers and arch.n_kv_heads == m.config.num_key_value_heads


def test_byte_tokenizer_roundtrip():
    tok = byte_tokenizer()
    text = "The pass key is 71432. Ünïcödé!"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text.encode())
    assert tok.decode(ids) == text
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (256, 257, 258)


def test_tiny_llama_is_seeded_and_loads_back_from_a_local_path(tmp_path):
    cfg = model_cfg("tiny_llama", "model.device=cpu")
    m1, tok = load_model(cfg)
    m2, _ = load_model(cfg)
    ids = torch.tensor([tok("hello world")["input_ids"]])
    with torch.no_grad():
        a, b = m1(ids).logits, m2(ids).logits
    assert torch.equal(a, b)
    m1.save_pretrained(tmp_path)  # safetensors
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    local = model_cfg("tiny_llama", f"model.path={tmp_path}", "model.weights=pretrained", "model.tokenizer=null",
                      "model.device=cpu")
    m3, tok3 = load_model(local)
    with torch.no_grad():
        c = m3(ids).logits
    assert torch.equal(a, c)
    assert tok3("hello world")["input_ids"] == tok("hello world")["input_ids"]
    assert model_arch(local).n_kv_heads == 2


def test_missing_local_path_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        model_arch(model_cfg("llama2_7b_32k", "model.path=/does/not/exist"))
    assert e.value.key == "model.path"
