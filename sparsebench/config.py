"""Config schemas, stored in Hydra's ConfigStore so a typo or a wrong type fails at composition.

Groups: model/ policy/ backend/ task/ logger/ paths/ (+ experiment/, hydra/launcher/).
Each YAML file under `conf/<group>/` starts from its schema through its defaults list
(`- schema_<name>` for policies and tasks, `- schema` otherwise). Policy and task schemas are
the policy / task dataclasses themselves: one class holds the fields, their defaults and
their checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING


@dataclass
class ArchitectureConfig:
    """The transformers config fields of a model, written out so random-weight runs need no download."""

    model_type: str = "llama"
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: Optional[int] = None
    head_dim: Optional[int] = None
    max_position_embeddings: int = 4096
    rope_parameters: Optional[Dict[str, Any]] = None
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    bos_token_id: Optional[int] = None
    eos_token_id: Optional[Any] = None
    pad_token_id: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict)  # any other config field of the model type


@dataclass
class ModelConfig:
    name: str = MISSING
    hub_id: Optional[str] = None  # loaded from the hub only with weights=pretrained and no path
    path: Optional[str] = None  # a local checkpoint directory (offline)
    weights: str = "pretrained"  # pretrained | random
    tokenizer: Optional[str] = None  # None = the checkpoint's; "byte" = sparsebench's byte tokenizer
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16
    device: str = "auto"
    seed: int = 0  # random-weight initialisation
    allow_extrapolation: bool = False  # allow contexts longer than max_position_embeddings
    trust_remote_code: bool = False
    head_pattern: Optional[str] = None  # a head-pattern directory shipped with the model
    architecture: ArchitectureConfig = field(default_factory=ArchitectureConfig)


@dataclass
class BackendConfig:
    name: str = "auto"  # auto | reference | sdpa (| flex | triton on GPU)
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass
class NoLoggerConfig:
    name: str = "none"


@dataclass
class WandbConfig:
    name: str = "wandb"
    mode: str = "offline"  # offline | online | disabled
    project: str = "sparsebench"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)


@dataclass
class PathsConfig:
    output_dir: str = "outputs"  # records under <output_dir>/runs, Hydra logs under <output_dir>/hydra
    data_dir: Optional[str] = None  # local datasets
    haystack_dir: Optional[str] = None  # local .txt files for haystacks


@dataclass
class RootConfig:
    model: ModelConfig = MISSING
    policy: Any = MISSING
    backend: BackendConfig = MISSING
    task: Any = MISSING
    logger: Any = MISSING
    paths: PathsConfig = MISSING
    experiment: Optional[Any] = None
    seed: int = 42
    resume: bool = True  # skip finished runs with the same config hash; continue partial ones
    run_name: Optional[str] = None


_stored = False


def register_configs() -> None:
    """Put every schema in Hydra's ConfigStore (idempotent)."""
    global _stored
    if _stored:
        return
    from hydra.core.config_store import ConfigStore

    from sparsebench.evals import TASKS
    from sparsebench.policies import POLICIES

    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=RootConfig)
    cs.store(group="model", name="schema", node=ModelConfig)
    cs.store(group="backend", name="schema", node=BackendConfig)
    cs.store(group="paths", name="schema", node=PathsConfig)
    cs.store(group="logger", name="schema_none", node=NoLoggerConfig)
    cs.store(group="logger", name="schema_wandb", node=WandbConfig)
    for name in POLICIES.names():
        cs.store(group="policy", name=f"schema_{name}", node=POLICIES.get(name))
    for name in TASKS.names():
        cs.store(group="task", name=f"schema_{name}", node=TASKS.get(name).Config)
    _stored = True


def is_schema(option: str) -> bool:
    return option.startswith("schema")
