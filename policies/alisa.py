"""alisa_swa: ALISA's Sparse Window Attention (local window + global top-k by accumulated attention).

Zhao et al., ALISA: Accelerating Large Language Model Inference via Sparsity-Aware KV Caching,
https://arxiv.org/abs/2403.17312 (no official code was released).

At each decode step with n cached tokens (the new one included) and caching ratio r:
k = max(1, round(n * r / 2)) (round half up); the local set is the k newest tokens; S_j sums,
over the last `score_window` (default k) query steps and over all heads, the attention
weight those queries put on token j (unnormalised); the global set is the top-k tokens by S
outside the local set. Attention is dense over local + global. One set per layer shared by
every head (`per_head` gives each KV head its own, summing its query group). SWA deletes
nothing. `history=sparse` accumulates the rows actually computed; `dense` accumulates dense
rows (an upper bound, for analysis). Prefill is dense and its last `score_window` queries seed S.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from sparsebench.kernels.base import decode_with_gather
from sparsebench.plans import DecodePlan, HeadGroup, Slots
from sparsebench.kv_store import StoreSpec
from sparsebench.policies.base import POLICIES, Policy, causal_probs, check, check_choice, check_positive, group_reduce


def local_k(n: torch.Tensor, ratio: float) -> torch.Tensor:
    """k = max(1, floor(n * r / 2 + 0.5)) per row."""
    return torch.clamp(torch.floor(n.double() * ratio / 2 + 0.5).long(), min=1)


@POLICIES.register("alisa_swa")
@dataclass
class AlisaSWA(Policy):
    name: str = "alisa_swa"
    caching_ratio: float = 0.2  # r; KV sparsity is 1 - r
    score_window: Optional[int] = None  # query steps summed into S; None = k
    history: str = "sparse"  # sparse | dense
    per_head: bool = False
    kv_bits: int = 16  # 16 | 8 (channel-wise asymmetric min-max INT8 for keys and values)
    page_size: int = 64  # store page; with kv_bits=8 also the quantization group (tokens per scale)

    def validate(self) -> None:
        check(isinstance(self.caching_ratio, (int, float)) and 0 < self.caching_ratio <= 1, "caching_ratio",
              self.caching_ratio, "a number in (0, 1]")
        check(self.score_window is None or self.score_window >= 1, "score_window", self.score_window, "null or >= 1")
        check_choice("history", self.history, ["sparse", "dense"])
        check_choice("kv_bits", self.kv_bits, [16, 8])
        check_positive("page_size", self.page_size)

    def store_spec(self) -> StoreSpec:
        return StoreSpec(page_size=self.page_size, kv_bits=self.kv_bits)

    def variant(self) -> dict:
        return {"k": "max(1, round_half_up(n * r / 2))", "score_rows": self.history,
                "sets": "per KV head" if self.per_head else "one per layer",
                "kv_int8": f"per-channel min-max over each full page of {self.page_size} tokens; open page full precision"
                if self.kv_bits == 8 else None}

    def _window(self, k: torch.Tensor) -> torch.Tensor:
        return k if self.score_window is None else torch.full_like(k, self.score_window)

    # ------------------------------------------------------------------ scores
    def _reduce(self, probs: torch.Tensor) -> torch.Tensor:
        """[B, Hq, T] -> [B, Hs, T] (Hs = 1 shared, or Hkv per head)."""
        if self.per_head:
            return group_reduce(probs, self.arch.group, "sum")
        return probs.sum(1, keepdim=True)

    def prefill_keep(self, layer, ctx, store):
        L = ctx.k.shape[2]
        k = local_k(ctx.lengths, self.caching_ratio)
        w = self._window(k)  # [B] rows of history to seed per row
        rows = torch.arange(max(0, L - int(w.max())), L, device=ctx.q.device)
        probs = causal_probs(ctx, rows)  # [B, Hq, nq, L]
        # the last w[b] real queries of row b (padding is on the left, so they are the last columns)
        use = (rows.unsqueeze(0) >= L - w.unsqueeze(1)) & ctx.valid[:, rows]  # [B, nq]
        slots = torch.where(ctx.valid, ctx.pos, torch.full_like(ctx.pos, -1))  # chunk token -> slot
        hs = 1 if not self.per_head else self.arch.n_kv_heads
        hist = []
        for i in range(rows.numel()):
            wts = self._reduce(probs[:, :, i]) * use[:, i].view(-1, 1, 1)
            hist.append((slots.unsqueeze(1).expand(-1, hs, -1), wts))
        store.state["hist"] = hist
        return None  # keep every token

    def _scores(self, store, n: torch.Tensor, hs: int) -> torch.Tensor:
        """S over slots [B, Hs, S_max] from the last W[b] rows of history."""
        k = local_k(n, self.caching_ratio)
        w = self._window(k)
        hist = store.state.get("hist", [])
        S = torch.zeros(n.shape[0], hs, int(n.max()), device=n.device)
        for age, (slots, wts) in enumerate(reversed(hist)):
            if age >= int(w.max()):
                break
            m = (age < w).view(-1, 1, 1) & (slots >= 0)
            S.scatter_add_(-1, slots.clamp(min=0), torch.where(m, wts, torch.zeros_like(wts)))
        # history older than any row's window is never needed again (windows grow by at most 1)
        store.state["hist"] = hist[max(0, len(hist) - int(w.max())):]
        return S

    # ------------------------------------------------------------------ decode
    def decode_plan(self, layer, q, store):
        n = store.logical_len  # SWA deletes nothing: every stream holds n tokens
        k = local_k(n, self.caching_ratio)
        heads = tuple(range(self.arch.n_kv_heads))
        if bool((2 * k >= n).all()):
            return DecodePlan.all_held(self.arch.n_kv_heads, want_probs=True)
        hs = self.arch.n_kv_heads if self.per_head else 1
        S = self._scores(store, n, hs)  # [B, Hs, N]
        N = S.shape[-1]
        ar = torch.arange(N, device=n.device)
        local_start = (n - k).view(-1, 1, 1)
        local = (ar >= local_start) & (ar < n.view(-1, 1, 1))
        eligible = ar < local_start
        kmax = int(k.max())
        top = S.masked_fill(~eligible, float("-inf")).topk(min(kmax, N), dim=-1)
        ok = (torch.arange(top.indices.shape[-1], device=n.device) < k.view(-1, 1, 1)) & torch.isfinite(top.values)
        glob = torch.where(ok, top.indices, torch.full_like(top.indices, -1))
        loc = torch.where(local, ar, torch.full_like(ar, -1)).expand(-1, hs, -1)
        loc = loc.gather(-1, loc.argsort(-1, descending=True)[..., :kmax])  # the k newest, -1 padded
        idx = torch.cat([glob, loc], dim=-1)
        return DecodePlan([HeadGroup(heads, Slots(idx))], want_probs=True)

    def observe(self, layer, store, plan, results, q, scaling):
        if self.history == "dense":  # accumulate the dense row instead of the one computed
            _, results = decode_with_gather(q, store, DecodePlan.all_held(self.arch.n_kv_heads, True), scaling)
        (res,) = results
        wts = self._reduce(res.probs)  # [B, Hs, T]
        slots = res.slots[:, : wts.shape[1]]  # a shared set is the same for every KV head
        store.state.setdefault("hist", []).append((slots, wts))
