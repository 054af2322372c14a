"""The `sparsebench` command end to end: multirun records, skip on rerun, resume after a kill, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import cli

POLICIES = "full,streaming_llm,streaming_heads,quest,lserve,alisa_swa,h2o,snapkv,pyramidkv"


def records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/*/*/result.json"))]


def test_multirun_one_record_per_policy_then_rerun_skips(tmp_path):
    args = ["-m", f"policy={POLICIES}", "task=needle", "model=tiny_llama", f"paths.output_dir={tmp_path}",
            "task.lengths=[256]", "task.depths=[0,100]"]
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    recs = records(tmp_path)
    assert sorted(x["config"]["policy"]["name"] for x in recs) == sorted(POLICIES.split(","))
    assert all(x["status"] == "ok" and x["n_samples"] == 2 for x in recs)
    for x in recs:
        lines = (Path(x["record_dir"]) / "samples.jsonl").read_text().splitlines()
        assert len(lines) == 2
    t0 = time.time()
    r2 = cli(*args, cwd=tmp_path)
    elapsed = time.time() - t0
    assert r2.returncode == 0
    assert r2.stdout.count("skip (finished)") == 9
    assert elapsed < 60, elapsed  # no model loads: imports and validation only
    assert [x["finished"] for x in records(tmp_path)] == [x["finished"] for x in recs]  # untouched


def test_killed_run_resumes_from_its_last_sample(tmp_path):
    exe = Path(sys.executable).parent / "sparsebench"
    args = [str(exe), f"paths.output_dir={tmp_path}", "policy=h2o", "backend=reference", "task.lengths=[2048]",
            "task.depths=[0,25,50,75,100]", "task.samples_per_cell=3"]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    samples = None
    while time.time() < deadline:
        found = list(tmp_path.glob("runs/*/*/*/samples.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 3:
            samples = found[0]
            break
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert samples is not None
    done_at_kill = len(samples.read_text().splitlines())
    assert done_at_kill < 15
    result = json.loads((samples.parent / "result.json").read_text())
    assert result["status"] == "running"  # killed: no final record yet
    r = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads((samples.parent / "result.json").read_text())
    assert result["status"] == "ok"
    assert result["resumed_samples"] == done_at_kill
    ids = [json.loads(x)["id"] for x in samples.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 15


BAD = [
    (["policy=lserv"], "policy='lserv'", "lserve"),
    (["policy=quest", "policy.budget=abc"], "policy.budget='abc'", "Integer"),
    (["policy=quest", "policy.budget=100"], "policy.budget=100", "multiple of policy.page_size=16"),
    (["policy=lserve", "policy.budget=1000"], "policy.budget=1000", "multiple of policy.page_size=64"),
    (["policy=lserve", "policy.sparsity=1.5"], "policy.sparsity=1.5", "[0, 1]"),
    (["policy=streaming_heads", "policy.sparsity=-0.1"], "policy.sparsity=-0.1", "[0, 1]"),
    (["policy=streaming_heads", "policy.pattern={badpattern}"], "policy.pattern=", "shape [8, 4]"),
    (["task.lengths=[20000]"], "task.lengths=[20000]", "8192"),
    (["model=llama2_7b_32k", "model.path=/no/such/dir"], "model.path='/no/such/dir'", "config.json"),
    (["policy=quest", "policy.budgt=5"], "policy.budgt", "budget"),
    (["backend=sdpa", "policy=lserve"], "backend.name='sdpa'", "reference"),
    (["-m", "policy=full,nope"], "policy='nope'", "streaming_llm"),
    (["task=latency_attention", "task.decode_l2=cold"], "task.decode_l2='cold'", "evicted | flushed | warm"),
    (["task=latency_attention", "task.decode_layers=0"], "task.decode_layers=0", ">= 1"),
    (["task=latency_attention", "task.decode_configs=[4x3x8q]"], "task.decode_configs=['4x3x8q']", "split-first"),
    (["task=latency_attention", "task.decode_configs=[4x2x8ipec]"], "task.decode_configs=['4x2x8ipec']",
     "needs 'd'"),
    (["task=latency_attention", "task.decode_configs=[4x3x8ipfdeac]"], "task.decode_configs=['4x3x8ipfdeac']",
     "needs 'k'"),
    (["task=latency_attention", "task.prefill_configs=[128x64x8]"], "task.prefill_configs=['128x64x8']",
     "'t' for TMA loads"),
]


@pytest.mark.parametrize("args,key,allowed", BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_bad_input_fails_before_loading_with_one_line(tmp_path, args, key, allowed):
    bad = tmp_path / "pattern.tsv"
    bad.write_text("0.5\t0.5\t0.5\n0.1\t0.2\t0.3\n")
    args = [a.format(badpattern=bad) for a in args]
    r = cli(*args, f"paths.output_dir={tmp_path}", cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr[-1500:])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("sparsebench: error:")
    assert key in lines[0] and allowed in lines[0], lines[0]
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_allow_extrapolation_lifts_the_length_check(tmp_path):
    r = cli("task.lengths=[20000]", "model.allow_extrapolation=true", f"paths.output_dir={tmp_path}", "--cfg", "job",
            cwd=tmp_path)
    assert r.returncode == 0


def test_cfg_job_prints_the_composed_config(tmp_path):
    r = cli("--cfg", "job", "policy=lserve", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "name: lserve" in r.stdout and "budget: 4096" in r.stdout and "reuse_interval: 4" in r.stdout


def test_a_failing_cell_is_recorded_and_the_sweep_goes_on(tmp_path):
    """A checkpoint directory with a config but no weights passes validation and fails at load time."""
    from transformers import LlamaConfig

    broken = tmp_path / "broken_ckpt"
    LlamaConfig(vocab_size=260, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=2048).save_pretrained(broken)
    assert not any(broken.glob("*.safetensors"))
    out = tmp_path / "out"
    r = cli("-m", f"model.path={broken}", "model.tokenizer=byte", "model.weights=pretrained,random",
            f"paths.output_dir={out}", "task.lengths=[256]", "task.depths=[50]", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    recs = {x["config"]["model"]["weights"]: x for x in records(out)}
    assert recs["random"]["status"] == "ok"
    assert recs["pretrained"]["status"] == "failed"
    assert recs["pretrained"]["error"]["type"] and "Traceback" in recs["pretrained"]["error"]["traceback"]
    # the same failing cell alone: recorded too, and the command exits non-zero
    r1 = cli(f"model.path={broken}", "model.tokenizer=byte", "model.weights=pretrained", f"paths.output_dir={out}",
             "task.lengths=[256]", "task.depths=[50]", cwd=tmp_path)
    assert r1.returncode == 1
    assert "failed" in r1.stdout


def test_plain_override_under_a_swept_group_applies_per_cell(tmp_path):
    """`-m policy=quest,lserve policy.budget=64`: full (the default policy) has no budget, so Hydra would
    reject the override on its base config; sparsebench makes it a one-value sweep."""
    from sparsebench.cli import sweep_safe

    assert sweep_safe(["-m", "policy=quest,lserve", "policy.budget=64", "task.lengths=[256]"]) == [
        "-m", "policy=quest,lserve", "policy.budget=choice(64)", "task.lengths=[256]"]
    assert sweep_safe(["policy=quest", "policy.budget=64"]) == ["policy=quest", "policy.budget=64"]
    r = cli("-m", "policy=quest,lserve", "policy.budget=64", "model=tiny_llama", "task.lengths=[256]",
            "task.depths=[50]", f"paths.output_dir={tmp_path}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    recs = records(tmp_path)
    assert sorted(x["config"]["policy"]["name"] for x in recs) == ["lserve", "quest"]
    assert all(x["config"]["policy"]["budget"] == 64 for x in recs)
