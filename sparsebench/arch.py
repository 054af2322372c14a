"""The few architecture facts policies, stores and validation need, known before any weight loads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelArch:
    name: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    max_positions: int
    head_pattern: str | None = None  # the model's shipped head-pattern file, if any

    @property
    def group(self) -> int:
        return self.n_heads // self.n_kv_heads

    @staticmethod
    def from_hf_config(cfg, name: str = "", head_pattern: str | None = None) -> "ModelArch":
        """From a transformers config object (or anything with the same attributes)."""
        n_heads = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
        return ModelArch(
            name=name or getattr(cfg, "name_or_path", "") or cfg.model_type,
            n_layers=cfg.num_hidden_layers,
            n_heads=n_heads,
            n_kv_heads=getattr(cfg, "num_key_value_heads", None) or n_heads,
            head_dim=head_dim,
            max_positions=cfg.max_position_embeddings,
            head_pattern=head_pattern,
        )
