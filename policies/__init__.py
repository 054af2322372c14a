"""Attention policies, one module per family; `POLICIES` maps a config name to its dataclass."""

from sparsebench.policies.base import POLICIES, Policy, PrefillContext  # noqa: F401
from sparsebench.policies import alisa, full, h2o, lserve, quest, snapkv, streaming_heads, streaming_llm  # noqa: F401


def make_policy(cfg: dict) -> Policy:
    """Build and validate a policy from its config dict (the `name` key picks the class)."""
    cfg = dict(cfg)
    cls = POLICIES.get(cfg.get("name", ""))
    return cls(**cfg)
