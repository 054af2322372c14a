"""The backend contract: execute a policy's plan for one layer.

    prefill(q, k, v, plan, valid, scaling) -> out
        q [B, Hq, L, D], k / v [B, Hkv, L, D]: a chunk with no cached past;
        valid [B, L] bool (False = left padding) or None; out [B, Hq, L, D]
        (padding queries give zeros).
    decode(q, store, plan, scaling) -> (out, results)
        q [B, Hq, D]: one new token per row, already written to `store`
        (a `sparsebench.kv_store.PagedLayer`); out [B, Hq, D]; results is a list of
        `GroupResult` (attention weights over the gathered tokens) when
        `plan.want_probs`, else None.

A backend says which plans it runs with `check(policy)`, called before any model loads,
so `backend=sdpa policy=lserve` fails with a clear message instead of running
something else.
"""

from __future__ import annotations

import torch

from sparsebench.plans import AllHeld, DecodePlan, GroupResult, Pages, PrefillPlan, Selection, Slots, Window
from sparsebench.registry import Registry

BACKENDS: Registry[type["Backend"]] = Registry("backend")


class Backend:
    name = "base"
    supports_cache_positions = False  # StreamingLLM positions=cache (re-rotating keys)
    reads_int8_pages = True  # kv_bits=8 pools (read through the store's dequantizing gather)

    def __init__(self, device: torch.device | str = "cpu", **options):
        self.device = torch.device(device)
        self.options = options
        self.rope_inv_freq: torch.Tensor | None = None  # set by attach (StreamingLLM cache positions)

    @classmethod
    def available(cls, device: torch.device) -> str | None:
        """None if usable on `device`, else the reason it is not."""
        return None

    @classmethod
    def check(cls, policy) -> str | None:
        """None if this backend runs every plan `policy` makes, else the reason."""
        if getattr(policy, "positions", "original") == "cache" and not cls.supports_cache_positions:
            return f"a backend that re-rotates keys for policy.positions=cache (reference); {cls.name} does not"
        if getattr(policy, "kv_bits", 16) == 8 and not cls.reads_int8_pages:
            return f"the reference backend for kv_bits=8 (INT8 pages; {cls.name} does not read them)"
        return None

    def prefill(self, q, k, v, plan: PrefillPlan, valid, scaling: float) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, q, store, plan: DecodePlan, scaling: float):
        raise NotImplementedError


# ---------------------------------------------------------------------------------------
# Helpers shared by the PyTorch backends: turn a decode selection into stream slots.


def selection_slots(store, heads: tuple[int, ...], sel: Selection, group: int):
    """Stream slots a selection reads for a head group.

    Returns (slots [B, R, T] (-1 = skip), kv_of_row [R] long, rows_per_kv) where each row r
    reads KV head kv_of_row[r]; rows_per_kv is 1 (rows are KV heads: every query head of the
    group shares the list) or G (rows are query heads).
    """
    dev = store.device
    heads_t = torch.tensor(heads, device=dev, dtype=torch.long)
    nh = len(heads)
    if isinstance(sel, (AllHeld, Window)):
        slots = store.held_slots(heads)
        if isinstance(sel, Window):
            slots = _window_filter(store, slots, heads_t, sel)
        return slots, heads_t, 1
    if isinstance(sel, (Pages, Slots)):
        idx = sel.idx
        rows = idx.shape[1]
        if rows == 1:
            idx = idx.expand(-1, nh, -1)
            rows = nh
        if rows == nh:
            kv, per = heads_t, 1
        elif rows == nh * group:
            kv, per = heads_t.repeat_interleave(group), group
        else:
            raise ValueError(f"selection has {rows} rows; expected 1, {nh} or {nh * group}")
        slots = store.page_slots(idx) if isinstance(sel, Pages) else idx
        n_held = store.n_held[:, kv].unsqueeze(-1)
        slots = torch.where(slots < n_held, slots, torch.full_like(slots, -1))
        return slots, kv, per
    raise TypeError(f"unknown selection {type(sel).__name__}")


def _window_filter(store, slots, heads_t, sel: Window):
    flat = store.flat_slots(slots, heads_t)
    pos = torch.where(flat >= 0, store.pos_pool.view(-1)[flat.clamp(min=0)], torch.full_like(flat, -1))
    newest = (store.logical_len - 1).view(-1, 1, 1)
    if sel.page is None:
        recent = newest - pos < sel.window
    else:
        first_page = newest // sel.page - sel.window // sel.page + 1
        recent = pos // sel.page >= first_page
    keep = (pos >= 0) & ((pos < sel.sink) | recent)
    return torch.where(keep, slots, torch.full_like(slots, -1))


def gathered_attention(q_rows, k, v, valid, scaling: float):
    """Softmax attention of query rows over gathered tokens.

    q_rows [B, R, Gq, D]; k, v [B, R, T, D]; valid [B, R, T] -> (out [B, R, Gq, D], probs fp32 [B, R, Gq, T]).
    """
    scores = torch.einsum("brgd,brtd->brgt", q_rows.float(), k.float()) * scaling
    scores = scores.masked_fill(~valid.unsqueeze(2), float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    probs = torch.nan_to_num(probs, nan=0.0)  # a row with nothing to read gives zeros
    out = torch.einsum("brgt,brtd->brgd", probs, v.float())
    return out, probs


def to_cache_positions(k, pos, valid, q_rows, logical_len, inv_freq):
    """Re-rotate gathered keys to their rank among the held tokens and the query to the last rank.
    k [B, R, T, D], pos / valid [B, R, T], q_rows [B, R, Gq, D], logical_len [B]."""
    from sparsebench.rope import rotate

    if inv_freq is None:
        raise ValueError("positions=cache needs the model's RoPE frequencies (attach sets them)")
    key = torch.where(valid, pos, torch.full_like(pos, torch.iinfo(pos.dtype).max))
    rank = key.argsort(-1).argsort(-1)  # index inside the cache, in position order
    k = rotate(k, torch.where(valid, rank - pos, torch.zeros_like(pos)), inv_freq)
    c_q = valid.sum(-1) - 1  # [B, R]: the new token is the newest held
    p_q = (logical_len - 1).view(-1, 1)
    q_rows = rotate(q_rows, (c_q - p_q).unsqueeze(-1).expand(q_rows.shape[:-1]), inv_freq)
    return k, q_rows


def decode_with_gather(q, store, plan: DecodePlan, scaling: float, inv_freq=None):
    """Decode by gathering the selected tokens, then dense attention: the reference path."""
    B, Hq, D = q.shape
    G = Hq // store.h
    out = torch.zeros(B, Hq, D, dtype=torch.float32, device=q.device)
    results = [] if plan.want_probs else None
    for grp in plan.groups:
        slots, kv, per = selection_slots(store, grp.heads, grp.sel, G)
        flat = store.flat_slots(slots, kv)
        k, v, pos = store.gather_tokens(flat)
        valid = slots >= 0
        q_idx = torch.tensor([h * G + g for h in grp.heads for g in range(G)], device=q.device)
        R = slots.shape[1]
        q_rows = q[:, q_idx].reshape(B, R, G // per, D)
        if plan.cache_positions:
            k, q_rows = to_cache_positions(k, pos, valid, q_rows, store.logical_len, inv_freq)
        o, probs = gathered_attention(q_rows, k, v, valid, scaling)
        out[:, q_idx] = o.reshape(B, len(q_idx), D)
        if results is not None:
            results.append(GroupResult(grp.heads, slots, probs.reshape(B, len(q_idx), -1)))
    return out.to(q.dtype), results
