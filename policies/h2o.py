"""h2o: heavy hitters + recent tokens, evicted physically as the cache fills.

Zhang et al., H2O: Heavy-Hitter Oracle for Efficient Generative Inference of LLMs,
https://arxiv.org/abs/2306.14048. Per KV head, S_j sums the attention token j received
from every past query of its query group (causal only). Prefill: S = column sums of the
causal prompt attention; if the prompt exceeds heavy + recent, keep the `recent` newest plus
the top `heavy` older tokens by S. Decode: once the cache holds heavy + recent tokens, the new
token replaces the lowest-S token outside the recent window *before* attention
(variant `evict_then_attend`: the step attends exactly the budget, the new token included;
the released code attends budget + 1 and evicts afterwards).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from sparsebench.plans import DecodePlan
from sparsebench.policies.base import (
    POLICIES,
    Policy,
    argmin_victim,
    check,
    check_positive,
    column_sums,
    group_reduce,
    held_positions,
    indices_from_topk,
)


@POLICIES.register("h2o")
@dataclass
class H2O(Policy):
    name: str = "h2o"
    budget: int = 1024  # heavy + recent
    heavy: Optional[int] = None  # None: budget - recent
    recent: Optional[int] = None  # None: budget // 2 (or budget - heavy)

    def validate(self) -> None:
        check_positive("budget", self.budget, 2)
        if self.heavy is not None:
            check_positive("heavy", self.heavy, 0)
        if self.recent is not None:
            check_positive("recent", self.recent, 1)
        if self.heavy is not None and self.recent is not None:
            check(self.heavy + self.recent == self.budget, "budget", self.budget,
                  f"policy.heavy + policy.recent = {self.heavy + self.recent} (or leave one of them null)")
        self.n_recent = self.recent if self.recent is not None else (
            self.budget - self.heavy if self.heavy is not None else self.budget // 2)
        self.n_heavy = self.budget - self.n_recent
        check(self.n_recent >= 1 and self.n_heavy >= 0, "recent", self.recent, f"in [1, {self.budget}]")

    def variant(self) -> dict:
        return {"heavy": self.n_heavy, "recent": self.n_recent, "order": "evict_then_attend"}

    def prefill_keep(self, layer, ctx, store):
        H = self.arch.n_kv_heads
        cs = group_reduce(column_sums(ctx), ctx.group, "sum")  # [B, Hkv, L]
        last = ctx.lengths.unsqueeze(1)
        recent = ctx.valid & (ctx.pos >= last - self.n_recent)
        over = ctx.lengths > self.budget  # [B]
        base = torch.where(over.unsqueeze(1), recent, ctx.valid).unsqueeze(1).expand(-1, H, -1)
        eligible = ctx.valid & ~recent
        scores = cs.masked_fill(~eligible.unsqueeze(1), float("-inf"))
        k = torch.where(over, self.n_heavy, 0).view(-1, 1).expand(-1, H)
        keep = indices_from_topk(base, scores, k)
        store.state["score"] = torch.where(keep >= 0, cs.gather(-1, keep.clamp(min=0)), torch.zeros(()))
        return keep

    def decode_slots(self, layer, store, new_pos):
        slots, pos = held_positions(store)
        score = store.state["score"]
        S = slots.shape[-1]
        if score.shape[-1] < S + 1:
            score = torch.nn.functional.pad(score, (0, S + 1 - score.shape[-1]))
        eligible = (pos >= 0) & (pos <= new_pos.view(-1, 1, 1) - self.n_recent)
        dst = argmin_victim(store, score[..., :S], eligible, self.budget)
        score.scatter_(-1, dst.unsqueeze(-1), 0.0)  # the new token starts with no attention received
        store.state["score"] = score
        return dst

    def decode_plan(self, layer, q, store):
        return DecodePlan.all_held(self.arch.n_kv_heads, want_probs=True)

    def observe(self, layer, store, plan, results, q, scaling):
        (res,) = results
        w = group_reduce(res.probs, self.arch.group, "sum")  # [B, Hkv, T]
        ok = res.slots >= 0
        store.state["score"].scatter_add_(-1, res.slots.clamp(min=0), torch.where(ok, w, torch.zeros_like(w)))
