"""streaming_heads: DuoAttention's retrieval heads (full attention) + streaming heads (sink + local).

Xiao et al., DuoAttention, https://arxiv.org/abs/2410.10819. The head split comes from a
gate table (see `head_pattern`); streaming heads hold only sink + local tokens, so their
memory is constant in the context length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch

from sparsebench.errors import ConfigError
from sparsebench.plans import DENSE, AllHeld, DecodePlan, HeadGroup, PrefillPlan, Window
from sparsebench.policies.base import POLICIES, Policy, check, check_choice, check_positive, keep_indices
from sparsebench.policies.head_pattern import binarize, load_gates, pattern_file
from sparsebench.policies.streaming_llm import oldest_victim


@POLICIES.register("streaming_heads")
@dataclass
class StreamingHeads(Policy):
    name: str = "streaming_heads"
    sparsity: float = 0.5  # fraction of KV heads that stream
    sink: int = 64  # decode (and default prefill) sink tokens of streaming heads
    local: int = 256  # decode (and default prefill) local window, the newest token included
    prefill_sink: Optional[int] = None  # None = sink
    prefill_local: Optional[int] = None  # None = local; -1 = dense prefill on every head
    granularity: str = "token"  # token | page: decode window counted in tokens or whole pages
    page_size: int = 64
    pattern: str = "auto"  # auto (the model's shipped pattern) | random (uncalibrated) | PATH
    gates: Optional[List[List[float]]] = None  # inline gate table [layers][kv heads]; overrides pattern
    noise_seed: int = 42  # tie-breaking noise in the binarisation

    def validate(self) -> None:
        check(isinstance(self.sparsity, (int, float)) and 0 <= self.sparsity <= 1, "sparsity", self.sparsity,
              "a number in [0, 1]")
        check_positive("sink", self.sink, 0)
        check_positive("local", self.local, 1)
        check(self.prefill_sink is None or self.prefill_sink >= 0, "prefill_sink", self.prefill_sink, "null or >= 0")
        check(self.prefill_local is None or self.prefill_local == -1 or self.prefill_local >= 1, "prefill_local",
              self.prefill_local, "null, -1 (dense) or >= 1")
        check_choice("granularity", self.granularity, ["token", "page"])
        check_positive("page_size", self.page_size)
        if self.granularity == "page":
            check(self.local % self.page_size == 0, "local", self.local, f"a multiple of policy.page_size={self.page_size}")

    # ------------------------------------------------------------------ head split
    def setup(self, arch) -> None:
        super().setup(arch)
        shape = (arch.n_layers, arch.n_kv_heads)
        if self.gates is not None:
            gates, source = np.asarray(self.gates, dtype=np.float64), "policy.gates"
            key, value = "policy.gates", f"{len(self.gates)} rows"
        elif self.pattern == "random":
            gates, source = np.random.RandomState(self.noise_seed).uniform(size=shape), "random (uncalibrated)"
            key, value = "policy.pattern", self.pattern
        else:
            path = arch.head_pattern if self.pattern == "auto" else self.pattern
            if path is None:
                raise ConfigError("policy.pattern", self.pattern,
                                  f"a head-pattern path, 'random' or inline policy.gates: model {arch.name} ships no pattern")
            f = pattern_file(path)
            if not f.is_file():
                raise ConfigError("policy.pattern", str(path), "an existing full_attention_heads.tsv file or a directory "
                                  "holding one (or auto, random, inline policy.gates)")
            gates, source, key, value = load_gates(f), str(f), "policy.pattern", str(path)
        if gates.shape != shape:
            raise ConfigError(key, value, f"a gate table of shape {list(shape)} (layers x KV heads) for model "
                              f"{arch.name}; got {list(gates.shape)}")
        self.pattern_source = source
        self.retrieval = binarize(gates, self.sparsity, self.noise_seed).tolist()  # [layer][kv head] bool
        self.gate_values = gates

    def streaming_heads(self, layer: int) -> tuple[int, ...]:
        return tuple(h for h, r in enumerate(self.retrieval[layer]) if not r)

    def retrieval_heads(self, layer: int) -> tuple[int, ...]:
        return tuple(h for h, r in enumerate(self.retrieval[layer]) if r)

    def variant(self) -> dict:
        n = sum(not r for row in self.retrieval for r in row)
        total = sum(len(row) for row in self.retrieval)
        return {"pattern_source": self.pattern_source, "streaming_heads": n, "total_kv_heads": total,
                "decode_window": self.granularity}

    # ------------------------------------------------------------------ prefill
    def _prefill_window(self) -> tuple[int, int]:
        sink = self.sink if self.prefill_sink is None else self.prefill_sink
        local = self.local if self.prefill_local is None else self.prefill_local
        return sink, local

    def prefill_plan(self, layer: int, n: int) -> PrefillPlan:
        sink, local = self._prefill_window()
        stream = set(self.streaming_heads(layer))
        h = self.arch.n_kv_heads
        if local == -1:
            return PrefillPlan.dense(h)
        return PrefillPlan(
            sink=tuple(sink if i in stream else 0 for i in range(h)),
            window=tuple(local if i in stream else DENSE for i in range(h)),
        )

    def prefill_keep(self, layer, ctx, store):
        stream = torch.tensor([not r for r in self.retrieval[layer]], device=ctx.q.device)
        if not bool(stream.any()):
            return None
        last = ctx.lengths.unsqueeze(1)
        windowed = ctx.valid & ((ctx.pos < self.sink) | (ctx.pos >= last - self.local))  # [B, L]
        m = torch.where(stream.view(1, -1, 1), windowed.unsqueeze(1), ctx.valid.unsqueeze(1))
        return keep_indices(m)

    # ------------------------------------------------------------------ decode
    def decode_slots(self, layer, store, new_pos):
        stream = torch.tensor([not r for r in self.retrieval[layer]], device=store.device)
        if not bool(stream.any()):
            return store.n_held.clone()
        victim = oldest_victim(store, self.sink, self.sink + self.local)
        return torch.where(stream.unsqueeze(0), victim, store.n_held)

    def streaming_selection(self):
        if self.granularity == "token":
            return AllHeld()
        return Window(self.sink, self.local, self.page_size)

    def retrieval_group(self, layer: int, q, store) -> list[HeadGroup]:
        heads = self.retrieval_heads(layer)
        return [HeadGroup(heads, AllHeld())] if heads else []

    def decode_plan(self, layer, q, store):
        groups = self.retrieval_group(layer, q, store)
        stream = self.streaming_heads(layer)
        if stream:
            groups.append(HeadGroup(stream, self.streaming_selection()))
        plan = DecodePlan(groups)
        return plan
