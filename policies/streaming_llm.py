"""streaming_llm: attention sinks + a recent window, everything else evicted (memory bounded).

Xiao et al., Efficient Streaming Language Models with Attention Sinks, https://arxiv.org/abs/2309.17453
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsebench.plans import PrefillPlan
from sparsebench.policies.base import (
    POLICIES,
    Policy,
    argmin_victim,
    check_choice,
    check_positive,
    held_positions,
    keep_indices,
)


def sink_window_keep(ctx, sink: int, window: int, n_heads: int) -> torch.Tensor:
    """Chunk tokens with position < sink or among the row's last `window`: [B, n_heads, K]."""
    last = ctx.lengths.unsqueeze(1)
    m = ctx.valid & ((ctx.pos < sink) | (ctx.pos >= last - window))
    return keep_indices(m.unsqueeze(1).expand(-1, n_heads, -1))


def oldest_victim(store, sink: int, capacity: int) -> torch.Tensor:
    """Append until `capacity` tokens are held, then replace the oldest non-sink token: [B, Hkv]."""
    _, pos = held_positions(store)
    return argmin_victim(store, pos.float(), pos >= sink, capacity)


@POLICIES.register("streaming_llm")
@dataclass
class StreamingLLM(Policy):
    """Every head keeps the first `sink` tokens and the last `window` (the newest included)."""

    name: str = "streaming_llm"
    sink: int = 4
    window: int = 1020
    positions: str = "original"  # original | cache (re-assign positions inside the cache)

    def validate(self) -> None:
        check_positive("sink", self.sink, 0)
        check_positive("window", self.window, 1)
        check_choice("positions", self.positions, ["original", "cache"])

    def variant(self) -> dict:
        return {"positions": self.positions}

    def prefill_plan(self, layer: int, n: int) -> PrefillPlan:
        h = self.arch.n_kv_heads
        return PrefillPlan(sink=(self.sink,) * h, window=(self.window,) * h, cache_positions=self.positions == "cache")

    def decode_plan(self, layer, q, store):
        plan = super().decode_plan(layer, q, store)
        plan.cache_positions = self.positions == "cache"
        return plan

    def prefill_keep(self, layer, ctx, store):
        return sink_window_keep(ctx, self.sink, self.window, self.arch.n_kv_heads)

    def decode_slots(self, layer, store, new_pos):
        return oldest_victim(store, self.sink, self.sink + self.window)
