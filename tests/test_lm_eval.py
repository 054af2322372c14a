"""The lm-eval bridge: a local YAML task (json data files) through the Hydra route and through lm-eval's own
command line with `--model sparsebench`; both give the same results for the same model and policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import cli

FIX = Path(__file__).parent / "fixtures" / "lm_eval"
POLICY = {"policy": "quest", "policy.budget": 16, "policy.page_size": 4, "policy.dense_layers": "[]"}

MC = """task: sb_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

GEN = """task: sb_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{context}}}} Q: {{{{question}}}} A:"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 12
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


@pytest.fixture
def tasks_dir(tmp_path):
    d = tmp_path / "lm_tasks"
    d.mkdir()
    (d / "sb_mc.yaml").write_text(MC.format(data=FIX / "mc.jsonl"))
    (d / "sb_gen.yaml").write_text(GEN.format(data=FIX / "gen.jsonl"))
    return d


def env(tmp_path):
    return {"HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def test_both_routes_run_a_local_task_and_agree(tmp_path, tasks_dir):
    out = tmp_path / "out"
    r = cli("task=lm_eval", "task.tasks=[sb_mc,sb_gen]", f"task.include_path={tasks_dir}",
            "task.include_defaults=false", "model=tiny_llama", *[f"{k}={v}" for k, v in POLICY.items()],
            f"paths.output_dir={out}", cwd=tmp_path, env=env(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    (res,) = [json.loads(p.read_text()) for p in out.glob("runs/lm_eval/*/*/result.json")]
    assert res["status"] == "ok" and res["backend_resolved"] == "reference"
    m = res["metrics"]
    assert 0.0 <= m["sb_mc/acc,none"] <= 1.0 and 0.0 <= m["sb_gen/exact_match,none"] <= 1.0
    rows = [json.loads(x) for x in (Path(res["record_dir"]) / "samples.jsonl").read_text().splitlines()]
    assert [x["id"] for x in rows] == ["sb_mc", "sb_gen"]
    docs = (Path(res["record_dir"]) / "lm_eval_samples_sb_mc.jsonl").read_text().splitlines()
    assert len(docs) == 4  # one line per document
    assert res["kv"]["decode_steps"] > 0  # the generate task decoded under the policy

    exe = Path(sys.executable).parent / "sparsebench-lm-eval"
    margs = json.dumps({"model": "tiny_llama", **POLICY})
    p = subprocess.run([str(exe), "--model", "sparsebench", "--model_args", margs, "--tasks", "sb_mc,sb_gen",
                        "--include_path", str(tasks_dir), "--output_path", str(tmp_path / "lm_out"), "--device", "cpu"],
                       cwd=tmp_path, env={**os.environ, **env(tmp_path)}, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    (results_file,) = (tmp_path / "lm_out").glob("**/results_*.json")
    cli_res = json.loads(results_file.read_text())["results"]
    assert cli_res["sb_mc"]["acc,none"] == m["sb_mc/acc,none"]
    assert cli_res["sb_gen"]["exact_match,none"] == m["sb_gen/exact_match,none"]


def test_missing_tasks_is_a_config_error(tmp_path):
    r = cli("task=lm_eval", f"paths.output_dir={tmp_path}", cwd=tmp_path)
    assert r.returncode == 2 and "task.tasks" in r.stderr
