"""Evaluations: one module per benchmark; `TASKS` maps a config name to its Task class."""

from sparsebench.evals.base import TASKS, Runtime, Sample, Task, TaskConfig  # noqa: F401
from sparsebench.evals import fidelity, longbench, needle, ppl  # noqa: F401
