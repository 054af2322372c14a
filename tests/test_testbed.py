"""The embedded testbed model: what ships, that it loads offline, and that it really retrieves from long
context (smaller grids of docs/testbed.md's acceptance table, through the framework's own runner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from sparsebench.config import register_configs
from sparsebench.models import resolve_asset
from sparsebench.runner import build, run

TESTBED = Path(resolve_asset("asset:testbed"))


def test_shipped_files_and_sizes():
    weights = sorted(TESTBED.glob("*.safetensors"))
    assert weights and all(p.stat().st_size <= 16_000_000 for p in weights)
    assert sum(p.stat().st_size for p in weights) <= 24_000_000
    for name in ("config.json", "generation_config.json", "tokenizer.json", "head_pattern/full_attention_heads.tsv"):
        assert (TESTBED / name).is_file(), name
    c = json.loads((TESTBED / "config.json").read_text())
    assert c["model_type"] == "llama" and c["num_key_value_heads"] < c["num_attention_heads"]
    assert c["head_dim"] >= 32 and c["num_hidden_layers"] >= 4 and c["dtype"] == "bfloat16"


def test_loads_offline_with_auto_classes(monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = AutoModelForCausalLM.from_pretrained(TESTBED)
    tok = AutoTokenizer.from_pretrained(TESTBED)
    assert model.dtype == torch.bfloat16 and sum(p.numel() for p in model.parameters()) < 12_000_000
    assert tok.convert_ids_to_tokens(tok("12345", add_special_tokens=False)["input_ids"]) == list("12345")
    assert tok("x")["input_ids"][0] == tok.bos_token_id == 0 and tok.eos_token_id == 1


@pytest.fixture(scope="module", autouse=True)
def hydra_ctx():
    register_configs()
    with initialize_config_module("sparsebench.conf", version_base="1.3"):
        yield


def score(tmp_path, *overrides) -> dict:
    cfg = compose("config", overrides=["model.device=cpu", f"paths.output_dir={tmp_path}", *overrides])
    assert cfg.model.name == "testbed"  # the default model
    res = run(build(cfg), progress=False)
    assert res["status"] == "ok", res.get("error")
    return res["metrics"]


NEEDLE = ["task=needle", "task.depths=[0,50,100]"]


@pytest.fixture(scope="module")
def full_4k(tmp_path_factory):
    return score(tmp_path_factory.mktemp("full"), *NEEDLE, "task.lengths=[1024,4096]")


def test_full_attention_finds_every_passkey(full_4k):
    assert full_4k["score"] == 1.0


def test_streaming_window_misses_needles_outside_it(tmp_path):
    # sink 4 + window 256 at 4K: needles at depth 0 / 25 / 50 are far outside the window
    m = score(tmp_path, "task=needle", "task.lengths=[4096]", "task.depths=[0,25,50]", "policy=streaming_llm",
              "policy.window=256", "backend=reference")
    assert m["score"] <= 0.2


@pytest.mark.parametrize("policy", [["policy=quest", "policy.page_size=16", "policy.budget=512"],
                                    ["policy=lserve", "policy.page_size=64", "policy.logical_page_size=16",
                                     "policy.budget=512"],
                                    ["policy=streaming_heads", "policy.sparsity=0.5"]])
def test_sparse_policies_keep_full_accuracy_at_4k(tmp_path, full_4k, policy):
    m = score(tmp_path, *NEEDLE, "task.lengths=[4096]", "backend=reference", *policy)
    assert m["score"] >= 0.9 * full_4k["score"]


def test_ruler_niah_single_1_at_4k(tmp_path):
    m = score(tmp_path, "task=ruler", "task.tasks=[niah_single_1]", "task.lengths=[4096]", "task.num_samples=3")
    assert m["niah_single_1/4096"] >= 90
