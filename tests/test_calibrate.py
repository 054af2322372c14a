"""DuoAttention gate calibration: the streaming mask and its fast kernel, the data, the schedule, and the
gated forward (gates 1 = the full model exactly; gates 0 = a streaming-only model computed independently)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import REPO
from sparsebench.calibrate import (ORDINALS, CalibrationConfig, Calibrator, lr_factor, make_sample, streaming_attention,
                                   streaming_mask)
from sparsebench.errors import ConfigError
from sparsebench.models import resolve_asset
from sparsebench.policies.head_pattern import load_gates


def test_streaming_mask_by_hand():
    m = streaming_mask(6, sink=1, recent=2, device="cpu").int().tolist()
    assert m == [[1, 0, 0, 0, 0, 0],
                 [1, 1, 0, 0, 0, 0],
                 [1, 1, 1, 0, 0, 0],
                 [1, 0, 1, 1, 0, 0],
                 [1, 0, 0, 1, 1, 0],
                 [1, 0, 0, 0, 1, 1]]


@pytest.mark.parametrize("L,sink,recent,block", [(1000, 64, 256, 64), (777, 4, 100, 32), (1301, 300, 128, 64),
                                                 (200, 64, 256, 64), (513, 0, 64, 16)])
def test_streaming_attention_equals_dense_masked(L, sink, recent, block):
    g = torch.Generator().manual_seed(L)
    q, k, v = (torch.randn(2, h, L, 16, generator=g) for h in (6, 2, 2))
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=streaming_mask(L, sink, recent, "cpu"), scale=0.25,
                                         enable_gqa=True)
    got = streaming_attention(q, k, v, sink, recent, 0.25, block)
    assert torch.allclose(got, ref, atol=1e-5)


def test_lr_schedule_is_duoattentions():
    # steps 10: warm-up over 2 steps, decay over the last 2, floor 0.1
    assert [lr_factor(s, 10) for s in range(10)] == [0.5, 1, 1, 1, 1, 1, 1, 1, 1, 0.5]
    assert lr_factor(0, 100) == pytest.approx(0.1)  # (0 + 1) / 20 = 0.05, floored at 0.1


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_asset("asset:testbed"))


def test_sample_holds_the_passkeys_in_order_and_supervises_the_answers(tok):
    cfg = CalibrationConfig(context_min=300, context_max=600, passkeys=4, passkey_words=5)
    s = make_sample(tok, cfg, 3)
    assert s.ids == make_sample(tok, cfg, 3).ids and s.ids != make_sample(tok, cfg, 4).ids
    text = tok.decode(s.ids, skip_special_tokens=True)
    keys = [text.split(f"it's the {o} passkey to the vault: ")[1].split("\n")[0] for o in ORDINALS[:4]]
    assert all(len(k.split()) == 5 for k in keys)
    assert [text.index(f"the {o} passkey to the vault: ") for o in ORDINALS[:4]] == sorted(
        text.index(f"the {o} passkey to the vault: ") for o in ORDINALS[:4])
    answers = tok.decode([s.ids[i] for i in s.supervised])
    assert answers.replace("\n", " ").split() == " ".join(keys).split()  # answers only (and their "\n\n")
    tail = CalibrationConfig(context_min=300, context_max=600, passkeys=4, passkey_words=5, supervise="qa_tail")
    assert len(make_sample(tok, tail, 3).supervised) > len(s.supervised)


def _tiny(tmp_path, tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=4096, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
                      bos_token_id=0, eos_token_id=1, pad_token_id=2)
    model = LlamaForCausalLM(cfg).eval()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    return model


def test_gates_one_is_the_full_model_and_gates_zero_a_streaming_model(tmp_path, tok):
    model = _tiny(tmp_path, tok)
    cfg = CalibrationConfig(context_min=500, context_max=500, passkeys=3, passkey_words=4, sink=8, recent=64,
                            full_source="student")
    s = make_sample(tok, cfg, 0)
    cal = Calibrator(model, cfg)
    loss, distill = cal.loss(s)
    assert distill == 0.0 and loss.item() == pytest.approx(cfg.l1)  # mean |alpha| = 1
    # gates 0: the student is the model with every head streaming; compute it independently with a 4D mask
    ids = torch.tensor([s.ids])
    with torch.no_grad():
        cal.gates.zero_()
        cal.state.mode = "student"
        import sparsebench.calibrate as C

        model.set_attn_implementation(C.ATTN_NAME)
        C._ACTIVE = cal.state
        got = model.base_model(input_ids=ids, use_cache=False).last_hidden_state
        C._ACTIVE = None
        model.set_attn_implementation("eager")
        mask = torch.zeros(1, 1, len(s.ids), len(s.ids))
        mask.masked_fill_(~streaming_mask(len(s.ids), 8, 64, "cpu"), float("-inf"))
        ref = model.base_model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        full = model.base_model(input_ids=ids, use_cache=False).last_hidden_state
    assert torch.allclose(got, ref, atol=1e-4)
    assert not torch.allclose(got, full, atol=1e-2)  # the streaming model really differs on 500+ tokens


def test_one_adam_step_moves_every_gate_by_lr(tmp_path, tok):
    """At gates 1 the distillation gradient is 0 (student == teacher); only the L1 term pushes, so Adam's
    first step moves each gate by exactly lr (steps=3: no warm-up below 1)."""
    model = _tiny(tmp_path, tok)
    cfg = CalibrationConfig(context_min=300, context_max=300, passkeys=2, passkey_words=3, sink=4, recent=32, steps=1)
    cal = Calibrator(model, cfg)
    cal.fit(tok, tmp_path / "pattern")
    assert np.allclose(cal.gates.detach().numpy(), 1 - cfg.lr, atol=1e-5)
    g = load_gates(tmp_path / "pattern")
    assert g.shape == (3, 2) and np.allclose(g, 1 - cfg.lr, atol=1e-5)
    meta = json.loads((tmp_path / "pattern" / "config.json").read_text())
    assert meta["sink_size"] == 4 and meta["recent_size"] == 32 and meta["full_source"] == "teacher"


def test_cli_calibrates_a_local_checkpoint_and_rejects_bad_keys(tmp_path, tok):
    import subprocess
    import sys
    from pathlib import Path

    _tiny(tmp_path / "m", tok)
    exe = str(Path(sys.executable).parent / "sparsebench-train")
    args = [exe, "calibrate", f"calibrate.model={tmp_path / 'm'}", f"calibrate.out_dir={tmp_path / 'p'}",
            "calibrate.steps=4", "calibrate.context_min=200", "calibrate.context_max=400", "calibrate.passkeys=2",
            "calibrate.passkey_words=4", "calibrate.sink=4", "calibrate.recent=32"]
    r = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    g = load_gates(tmp_path / "p")
    assert g.shape == (3, 2) and (g >= 0).all() and (g <= 1).all() and (g < 1).all()
    assert "retrieval head at sparsity 0.5" in r.stdout
    bad = subprocess.run(args + ["calibrate.supervise=tokens"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode != 0 and "calibrate.supervise" in bad.stderr and "answers or qa_tail" in bad.stderr


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="calibrate.full_source"):
        CalibrationConfig(full_source="both").check()
    with pytest.raises(ConfigError, match="calibrate.context_max"):
        CalibrationConfig(context_max=8000).check(max_positions=8192)
