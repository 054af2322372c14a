"""The testbed's training recipe: data (deterministic, answers weighted where the answers are), the
schedules, checkpoints, bad config, and a tiny train -> resume -> export run on the CPU."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from helpers import REPO
from sparsebench.errors import ConfigError
from sparsebench.models import resolve_asset
from sparsebench.testbed_data import NEEDLE_RE, Builder
from sparsebench.train_testbed import check_train_config, length_at, load_ckpt, load_config, lr_at, save_ckpt

CONFIG = str(REPO / "conf" / "train" / "testbed.yaml")


@pytest.fixture(scope="module")
def builder():
    from transformers import AutoTokenizer

    return Builder(AutoTokenizer.from_pretrained(resolve_asset("asset:testbed")), seed=42, lm_weight=0.1)


def spans(weights):
    """[start, end) runs of weight 1."""
    out, start = [], None
    for i, w in enumerate(list(weights) + [0.0]):
        if w == 1.0 and start is None:
            start = i
        elif w != 1.0 and start is not None:
            out.append((start, i))
            start = None
    return out


def test_batches_are_deterministic_and_exactly_L_long(builder):
    mix = {"passkey": 0.5, "niah_multikey_2": 0.5}
    a, b = builder.batch(7, 1024, 3, mix), builder.batch(7, 1024, 3, mix)
    assert a == b and builder.batch(8, 1024, 3, mix)[0] != a[0]
    ids, ws, tasks = a
    assert all(len(x) == 1024 for x in ids) and all(len(w) == 1024 for w in ws) and set(tasks) <= set(mix)


def test_passkey_answer_is_the_weighted_span_and_is_in_the_context(builder):
    tok = builder.tok
    seq = builder.sample("passkey", 2048, random.Random(3))
    (s, e), = spans(seq.weights)
    key = tok.decode(seq.ids[s:e], skip_special_tokens=True).strip(" .")
    assert len(key) == 5 and key.isdigit()
    assert f"The pass key is {key}" in tok.decode(seq.ids[:s]) and seq.ids[e - 1] == tok.eos_token_id
    assert set(seq.weights[1:s]) == {0.1}


def test_niah_dense_questions_ask_keys_of_the_context_with_their_values(builder):
    tok = builder.tok
    seq = builder.sample("niah_multikey_2", 4096, random.Random(5))
    answer_spans = spans(seq.weights)
    assert len(answer_spans) >= 3  # the asked key plus the extra questions
    context = tok.decode(seq.ids[: answer_spans[0][0]])
    pairs = {k: v for _, k, v in NEEDLE_RE.findall(context)}
    for s, e in answer_spans:
        value = tok.decode(seq.ids[s:e], skip_special_tokens=True).strip(" .")
        key = tok.decode(seq.ids[:s]).rsplit("special magic number for ", 1)[1].split(" mentioned")[0]
        assert pairs[key] == value


def test_curriculum_and_lr_schedule():
    cfg = load_config(CONFIG, [])
    t = cfg.train
    always_longest = OmegaConf.merge(cfg, {"train": {"longest_share": 1.0}})
    assert length_at(always_longest, 0.0, random.Random(0)) == t.min_len
    assert length_at(always_longest, t.curriculum_end, random.Random(0)) == t.max_len
    mid = [length_at(cfg, 0.5 * t.curriculum_end, random.Random(i)) for i in range(50)]
    assert max(mid) == 1280 and all(x % 256 == 0 for x in mid)  # 256 * 32 ** 0.5 = 1448, floored to 256s
    assert lr_at(cfg, 0.0, 10_000) == 0.0
    assert lr_at(cfg, t.warmup_frac, 10_000) == pytest.approx(t.lr)
    assert lr_at(cfg, 1.0, 10_000) == pytest.approx(t.lr * t.final_lr_frac)
    assert lr_at(cfg, t.warmup_frac, 0) == pytest.approx(t.lr / t.resume_warmup_steps)  # re-warm after resume


def test_checkpoint_round_trip_with_tied_embeddings(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    c = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, tie_word_embeddings=True)
    a, b = LlamaForCausalLM(c), LlamaForCausalLM(c)
    save_ckpt(a, tmp_path, {"step": 3}, shard_mb=0)  # one tensor per shard
    meta = load_ckpt(b, tmp_path)
    assert meta["step"] == 3 and meta["shards"] == len(list(tmp_path.glob("ckpt-*.safetensors"))) > 2
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), n
    assert b.lm_head.weight.data_ptr() == b.model.embed_tokens.weight.data_ptr()


@pytest.mark.parametrize("override,key", [("mixture.niah_single_9=0.1", "mixture.niah_single_9"),
                                          ("train.max_len=16384", "train.max_len"),
                                          ("train.lr=0", "train.lr")])
def test_bad_recipe_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_train_config(load_config(CONFIG, [override]))


def test_train_resume_export_on_cpu(tmp_path):
    exe = str(Path(sys.executable).parent / "sparsebench-train")
    tiny = ["train.total_minutes=0.2", "train.command_minutes=0.08", "train.workers=1", "train.prefetch=2",
            "train.tokens_per_batch=1024", "train.max_len=512", "train.log_every=1", "model.num_hidden_layers=2",
            "model.hidden_size=64", "model.intermediate_size=128", "model.num_attention_heads=4",
            "model.num_key_value_heads=2", "model.head_dim=16", "eval.lengths=[512]", "eval.samples=1",
            "eval.ruler_length=512", "eval.ruler_tasks=[niah_single_1]", f"out_dir={tmp_path / 'run'}",
            f"export_dir={tmp_path / 'export'}"]
    for command in (1, 2):
        r = subprocess.run([exe, "train", *tiny], capture_output=True, text=True, cwd=REPO, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        meta = json.loads((tmp_path / "run" / "meta.json").read_text())
        assert meta["commands"] == command and meta["step"] > 0
        ev = json.loads((tmp_path / "run" / f"eval_cmd{command}.json").read_text())
        assert set(ev) >= {"passkey/512", "niah_single_1/512"}
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log] == list(range(1, meta["step"] + 1))  # the second command resumed
    r = subprocess.run([exe, "export", *tiny], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(tmp_path / "export")
    assert m.dtype == torch.bfloat16 and m.config.num_hidden_layers == 2
    assert (tmp_path / "export" / "tokenizer.json").is_file() and (tmp_path / "export" / "generation_config.json").is_file()
