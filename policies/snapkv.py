"""snapkv / pyramidkv: one-shot prompt compression at the end of prefill.

SnapKV (Li et al., https://arxiv.org/abs/2404.14469): if the prompt is longer than the budget
C, score every prompt key by the softmax attention of the last `window` prompt queries (causal
inside the window), summed over those queries, smoothed by 1-D pooling (max, kernel 7, stride 1,
padding kernel // 2), averaged over each KV head's query group; keep the top C - window keys
before the window, plus the window. PyramidKV (Cai et al., https://arxiv.org/abs/2406.02069):
the same with per-layer budgets decreasing linearly from the first to the last layer
(beta = 20), as its released code computes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sparsebench.policies.base import POLICIES, Policy, causal_probs, check, check_choice, check_positive, group_reduce
from sparsebench.policies.base import indices_from_topk


@POLICIES.register("snapkv")
@dataclass
class SnapKV(Policy):
    name: str = "snapkv"
    budget: int = 1024  # C: tokens kept per KV head, the window included
    window: int = 32
    kernel: int = 7
    pooling: str = "max"  # max | avg
    gqa_reduce: str = "mean"  # mean | max | sum over a KV head's query group

    def validate(self) -> None:
        check_positive("window", self.window)
        check_positive("budget", self.budget)
        check(self.budget > self.window, "budget", self.budget, f"greater than policy.window={self.window}")
        check(self.kernel >= 1 and self.kernel % 2 == 1, "kernel", self.kernel, "an odd integer >= 1")
        check_choice("pooling", self.pooling, ["max", "avg"])
        check_choice("gqa_reduce", self.gqa_reduce, ["mean", "max", "sum"])

    def prefix_budget(self, layer: int, lengths: torch.Tensor) -> torch.Tensor:
        """Prompt keys kept before the window, per row (rows not compressed get their whole prefix)."""
        return torch.full_like(lengths, self.budget - self.window)

    def prefill_keep(self, layer, ctx, store):
        over = ctx.lengths > self.budget
        if not bool(over.any()):
            return None
        L = ctx.k.shape[2]
        w = self.window
        rows = torch.arange(L - w, L, device=ctx.q.device)
        s = causal_probs(ctx, rows).sum(2)  # [B, Hq, L]
        last = ctx.lengths.view(-1, 1)
        prefix = ctx.valid & (ctx.pos < last - w)  # [B, L]
        p = prefix.unsqueeze(1)
        if self.pooling == "max":
            s = F.max_pool1d(s.masked_fill(~p, float("-inf")), self.kernel, 1, self.kernel // 2)
        else:
            s = F.avg_pool1d(s.masked_fill(~p, 0.0), self.kernel, 1, self.kernel // 2, count_include_pad=True)
        s = group_reduce(s.masked_fill(~p, float("-inf")), ctx.group, self.gqa_reduce)  # [B, Hkv, L]
        H = self.arch.n_kv_heads
        window_tok = ctx.valid & (ctx.pos >= last - w)
        base = torch.where(over.view(-1, 1), window_tok, ctx.valid).unsqueeze(1).expand(-1, H, -1)
        k = torch.where(over, self.prefix_budget(layer, ctx.lengths), 0).view(-1, 1).expand(-1, H)
        return indices_from_topk(base, s, k)


@POLICIES.register("pyramidkv")
@dataclass
class PyramidKV(SnapKV):
    name: str = "pyramidkv"
    beta: int = 20

    def validate(self) -> None:
        super().validate()
        check_positive("beta", self.beta)

    def variant(self) -> dict:
        return {"layer_budgets": "PyramidKV's released formula (uniform below 2 * (C - window) prompt tokens)"}

    def prefix_budget(self, layer, lengths):
        out = []
        total = self.budget - self.window
        n_layers = self.arch.n_layers
        for q_len in lengths.tolist():
            if q_len < 2 * total or n_layers == 1:
                out.append(total)
                continue
            lo = total // self.beta
            hi = 2 * total - lo
            if hi >= q_len - self.window:
                hi = q_len - self.window
                lo = 2 * total - hi
            steps = (hi - lo) // (n_layers - 1)
            out.append(hi - layer * steps)
        return torch.tensor(out, device=lengths.device)
