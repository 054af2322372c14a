"""Record mechanics: the config hash, atomic writes, partial lines after a crash."""

from __future__ import annotations

import json

from sparsebench.records import RunRecord, config_hash, write_json_atomic

CFG = {"model": {"name": "m"}, "policy": {"name": "full"}, "backend": {"name": "reference"},
       "task": {"name": "needle", "lengths": [512]}, "seed": 42, "paths": {"output_dir": "a"},
       "logger": {"name": "none"}, "resume": True}


def test_hash_ignores_where_things_go_but_not_what_runs():
    h = config_hash(CFG)
    assert config_hash({**CFG, "paths": {"output_dir": "b"}, "logger": {"name": "wandb"}}) == h
    assert config_hash({**CFG, "seed": 1}) != h
    assert config_hash({**CFG, "task": {"name": "needle", "lengths": [1024]}}) != h
    assert len(h) == 12 and h == config_hash(json.loads(json.dumps(CFG)))


def test_atomic_write_leaves_no_temp_files(tmp_path):
    p = tmp_path / "result.json"
    write_json_atomic(p, {"a": 1})
    write_json_atomic(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 2}
    assert [x.name for x in tmp_path.iterdir()] == ["result.json"]


def test_partial_last_sample_line_is_dropped_on_resume(tmp_path):
    rec = RunRecord(tmp_path, CFG)
    rec.start()
    rec.append_sample({"id": "a", "score": 1.0})
    rec.append_sample({"id": "b", "score": 0.0})
    rec.close()
    with open(rec.samples_path, "a") as f:
        f.write('{"id": "c", "sco')  # a crash mid-write
    rec2 = RunRecord(tmp_path, CFG)
    assert set(rec2.load_samples()) == {"a", "b"}
    rec2.start()
    rec2.append_sample({"id": "c", "score": 1.0})
    rec2.close()
    assert set(RunRecord(tmp_path, CFG).load_samples()) == {"a", "b", "c"}
