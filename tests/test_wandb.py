"""logger=wandb in offline mode leaves a run whose summary holds the record's metrics."""

from __future__ import annotations

import json

import wandb_log
from helpers import cli


def test_wandb_offline_run_summary_holds_metrics(tmp_path):
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true"}
    r = cli("logger=wandb", f"paths.output_dir={tmp_path}", "task.lengths=[256]", "task.depths=[50]", cwd=tmp_path,
            env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    runs = list(tmp_path.glob("**/offline-run-*"))
    assert len(runs) == 1, runs
    (log,) = runs[0].glob("run-*.wandb")
    summary = wandb_log.summary(log)
    result = json.loads(next(tmp_path.glob("runs/*/*/*/result.json")).read_text())
    assert summary["metrics/score"] == result["metrics"]["score"]
    assert summary["metrics/n_samples"] == 1
    assert summary["kv/kv_bytes_held_peak"] == result["kv"]["kv_bytes_held_peak"] > 0
    assert summary["samples/_type"] == "table-file" and summary["samples/nrows"] == 1  # the per-sample table
    assert summary["heatmap/_type"] == "image-file"
