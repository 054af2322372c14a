"""The policy contract: decide *what* each query attends to; never *how* it is computed.

A policy is a dataclass of hyperparameters, validated in `__post_init__` (errors name
the config key `policy.<field>`), and the same class is the Hydra schema of its config
group. `setup(arch)` checks it against a model's architecture before any weight loads.
Per-sequence state (scores, cached selections) lives in the store's `state` dict, so a
policy object can serve many sequences.

Per layer and call, with B rows, Hq query / Hkv KV heads, G = Hq // Hkv, D head dim:

    prefill_plan(layer, n)                 -> PrefillPlan         which keys each query sees
    prefill_keep(layer, ctx, store)        -> [B, Hkv, K] | None  chunk tokens each stream keeps,
                                                                  in slot order (-1 = padding);
                                                                  None keeps every real token
    decode_slots(layer, store, new_pos)    -> [B, Hkv]            slot the new token goes to
                                                                  (n_held = append; lower = evict
                                                                  that slot's token)
    decode_plan(layer, q, store)           -> DecodePlan          what each head reads this step
    observe(layer, store, plan, results, q, scaling)              weights of the step just computed
                                                                  (only if plan.want_probs)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch

from sparsebench.arch import ModelArch
from sparsebench.errors import ConfigError
from sparsebench.kv_store import PagedLayer, StoreSpec
from sparsebench.plans import DecodePlan, PrefillPlan
from sparsebench.registry import Registry

POLICIES: Registry[type["Policy"]] = Registry("policy")


@dataclass
class PrefillContext:
    """The chunk a prefill sees. q [B, Hq, L, D]; k [B, Hkv, L, D]; valid [B, L] bool (False = padding);
    pos [B, L] logical positions (-1 for padding); lengths [B] real tokens per row."""

    q: torch.Tensor
    k: torch.Tensor
    valid: torch.Tensor
    pos: torch.Tensor
    lengths: torch.Tensor
    scaling: float

    @property
    def group(self) -> int:
        return self.q.shape[1] // self.k.shape[1]


@dataclass
class Policy:
    name: str = ""
    # True for policies whose plans are always dense (backends like sdpa check this).
    dense: ClassVar[bool] = False
    paper: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.arch: ModelArch | None = None
        self.validate()

    # ------------------------------------------------------------------ config
    def validate(self) -> None:
        """Check fields; raise ConfigError(f"policy.{field}", value, allowed)."""

    def setup(self, arch: ModelArch) -> None:
        """Check against a model architecture (before weights load) and derive per-layer settings."""
        self.arch = arch

    def store_spec(self) -> StoreSpec:
        return StoreSpec(page_size=64)

    def config(self) -> dict:
        """The fields, as a plain dict (what the record and the config hash see)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def variant(self) -> dict:
        """Choices the spec leaves open that this run made, for the record."""
        return {}

    # ------------------------------------------------------------------ prefill
    def prefill_plan(self, layer: int, n: int) -> PrefillPlan:
        return PrefillPlan.dense(self.arch.n_kv_heads)

    def prefill_keep(self, layer: int, ctx: PrefillContext, store: PagedLayer) -> torch.Tensor | None:
        return None

    # ------------------------------------------------------------------ decode
    def decode_slots(self, layer: int, store: PagedLayer, new_pos: torch.Tensor) -> torch.Tensor:
        return store.n_held.clone()

    def decode_plan(self, layer: int, q: torch.Tensor, store: PagedLayer) -> DecodePlan:
        return DecodePlan.all_held(self.arch.n_kv_heads)

    def observe(self, layer: int, store: PagedLayer, plan: DecodePlan, results, q: torch.Tensor,
                scaling: float) -> None:
        pass


# ---------------------------------------------------------------------------------------
# Field checks


def check(cond: bool, key: str, value, allowed: str) -> None:
    if not cond:
        raise ConfigError(f"policy.{key}", value, allowed)


def check_choice(key: str, value, choices) -> None:
    check(value in choices, key, value, "one of " + ", ".join(map(str, choices)))


def check_positive(key: str, value, minimum: int = 1) -> None:
    check(isinstance(value, int) and value >= minimum, key, value, f"an integer >= {minimum}")


# ---------------------------------------------------------------------------------------
# Helpers shared by policies


def keep_indices(mask: torch.Tensor) -> torch.Tensor:
    """Chunk indices where mask [B, H, L] is True, ascending, padded with -1: [B, H, K]."""
    L = mask.shape[-1]
    ar = torch.arange(L, device=mask.device)
    key = torch.where(mask, ar, ar + L)
    k = int(mask.sum(-1).max()) if mask.numel() else 0
    idx = key.sort(-1).values[..., :k]
    return torch.where(idx < L, idx, torch.full_like(idx, -1))


def indices_from_topk(mask_keep: torch.Tensor, scores: torch.Tensor, k: torch.Tensor | int) -> torch.Tensor:
    """mask_keep [B, H, L] tokens kept unconditionally, plus the top-k [B, H] (or int) others by
    scores [B, H, L] (-inf = not eligible). Returns keep_indices of the union."""
    kmax = int(k.max()) if torch.is_tensor(k) else int(k)
    sel = torch.zeros_like(mask_keep)
    if kmax > 0:
        values, indices = top_k(scores.masked_fill(mask_keep, float("-inf")), kmax)
        rank_ok = torch.arange(indices.shape[-1], device=scores.device) < (k.unsqueeze(-1) if torch.is_tensor(k) else k)
        sel.scatter_(-1, indices, rank_ok & torch.isfinite(values))
    return keep_indices(mask_keep | sel)


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest along the last dim, ties to the earlier index (pooled scores tie exactly)."""
    values, indices = scores.sort(dim=-1, descending=True, stable=True)
    return values[..., :k], indices[..., :k]


def causal_probs(ctx: PrefillContext, rows: torch.Tensor) -> torch.Tensor:
    """Softmax attention weights (fp32) of the chunk queries at indices rows [nq] over every chunk
    key, causal, padding excluded: [B, Hq, nq, L]."""
    G = ctx.group
    q = ctx.q[:, :, rows].float()
    k = ctx.k.float().repeat_interleave(G, dim=1)
    s = torch.einsum("bhqd,bhkd->bhqk", q, k) * ctx.scaling
    L = ctx.k.shape[2]
    allowed = (torch.arange(L, device=s.device).unsqueeze(0) <= rows.unsqueeze(1)).unsqueeze(0)
    allowed = allowed & ctx.valid.unsqueeze(1)  # [B, nq, L]
    s = s.masked_fill(~allowed.unsqueeze(1), float("-inf"))
    return torch.nan_to_num(torch.softmax(s, dim=-1), nan=0.0)


def column_sums(ctx: PrefillContext, rows: torch.Tensor | None = None, chunk: int = 256) -> torch.Tensor:
    """Attention each key receives, summed over the query rows (default: every query): [B, Hq, L]."""
    L = ctx.k.shape[2]
    rows = torch.arange(L, device=ctx.q.device) if rows is None else rows
    total = torch.zeros(ctx.q.shape[0], ctx.q.shape[1], L, device=ctx.q.device)
    for i in range(0, rows.numel(), chunk):
        r = rows[i : i + chunk]
        w = causal_probs(ctx, r) * ctx.valid[:, r].unsqueeze(1).unsqueeze(-1)
        total += w.sum(2)
    return total


def group_reduce(x: torch.Tensor, group: int, how: str = "sum") -> torch.Tensor:
    """[B, Hq, ...] -> [B, Hkv, ...] over each KV head's query group."""
    x = x.unflatten(1, (-1, group))
    return {"sum": x.sum(2), "max": x.amax(2), "mean": x.mean(2)}[how]


def held_positions(store: PagedLayer) -> tuple[torch.Tensor, torch.Tensor]:
    """(slots [B, Hkv, S], positions [B, Hkv, S]) of every held token (-1 = none)."""
    slots = store.held_slots()
    _, _, pos = store.gather_tokens(store.flat_slots(slots))
    return slots, pos


def argmin_victim(store: PagedLayer, key: torch.Tensor, eligible: torch.Tensor, capacity: torch.Tensor | int) -> torch.Tensor:
    """Slot for a new token per stream: append while n_held < capacity, else the eligible slot with
    the smallest key [B, Hkv, S]. Returns [B, Hkv]."""
    victim = key.masked_fill(~eligible, float("inf")).argmin(-1)
    full = store.n_held >= capacity
    return torch.where(full, victim, store.n_held)
