"""Evaluations: one module per benchmark; `TASKS` maps a config name to its Task class."""

from sparsebench.evals.base import TASKS, Runtime, Sample, Task, TaskConfig  # noqa: F401
from sparsebench.evals import fidelity, latency_attention, lm_eval_bridge, longbench, needle, ppl, ruler  # noqa: F401
