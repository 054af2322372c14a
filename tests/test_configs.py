"""Every option of every config group composes, and every policy builds against the default (testbed) model without loading weights."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from sparsebench.config import register_configs
from sparsebench.runner import build

CONF = Path(__file__).resolve().parent.parent / "conf"


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture(scope="module", autouse=True)
def hydra_ctx():
    register_configs()
    with initialize_config_module("sparsebench.conf", version_base="1.3"):
        yield


@pytest.mark.parametrize("group", ["model", "policy", "backend", "task", "logger", "paths"])
def test_every_option_composes(group):
    assert options(group)
    for opt in options(group):
        cfg = compose("config", overrides=[f"{group}={opt}"])
        assert cfg[group] is not None


@pytest.mark.parametrize("policy", options("policy"))
def test_every_policy_builds_on_the_default_model(policy):
    spec = build(compose("config", overrides=[f"policy={policy}", "model.device=cpu"]))
    assert spec.policy.name == policy
    assert spec.backend in ("reference", "sdpa")


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes(experiment):
    cfg = compose("config", overrides=[f"experiment={experiment}"])
    assert cfg.task.name and cfg.policy.name


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local", "submitit_slurm"])
def test_launcher_configs_compose(launcher):
    cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert "_target_" in cfg.hydra.launcher
