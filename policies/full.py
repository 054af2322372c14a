"""full: dense causal attention, the baseline every speedup is measured against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sparsebench.policies.base import POLICIES, Policy


@POLICIES.register("full")
@dataclass
class Full(Policy):
    name: str = "full"
    dense: ClassVar[bool] = True
