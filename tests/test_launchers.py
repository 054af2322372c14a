"""A 2-job multirun under the joblib and submitit_local launchers: each job writes its own record."""

from __future__ import annotations

import json

import pytest

from helpers import cli


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_two_job_multirun(tmp_path, launcher):
    r = cli("-m", f"hydra/launcher={launcher}", "policy=full,h2o", f"paths.output_dir={tmp_path}",
            "task.lengths=[256]", "task.depths=[50]", cwd=tmp_path, timeout=900)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    recs = [json.loads(p.read_text()) for p in tmp_path.glob("runs/*/*/*/result.json")]
    assert sorted(x["config"]["policy"]["name"] for x in recs) == ["full", "h2o"]
    assert all(x["status"] == "ok" for x in recs)
    pids = {x["env"].get("pid") for x in recs}
    assert None not in pids and len(pids) == 2  # two processes
