"""`reference`: plain PyTorch on any device, the correctness oracle.

Prefill runs one masked attention per pattern group of KV heads (dense heads through
`is_causal`, windowed and block heads through an explicit boolean mask built in query
chunks, so memory stays O(chunk x L)). Rows with left padding run on their real tokens
only. Decode gathers the selected tokens of each stream and runs a dense softmax over
them; it is simple rather than fast, and every fast backend is tested against it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sparsebench.kernels.base import BACKENDS, Backend, decode_with_gather
from sparsebench.plans import DENSE, PrefillPlan

QUERY_CHUNK = 1024


def pattern_mask(q0: int, q1: int, n: int, sink: int, window: int, device) -> torch.Tensor:
    """[q1 - q0, n] bool: query i (absolute) sees key j iff j <= i and (j < sink or i - j < window)."""
    i = torch.arange(q0, q1, device=device).unsqueeze(1)
    j = torch.arange(n, device=device).unsqueeze(0)
    m = j <= i
    if window != DENSE:
        m &= (j < sink) | (i - j < window)
    return m


def block_mask(q0: int, q1: int, n: int, blocks, h: int, device) -> torch.Tensor:
    """[q1 - q0, n] bool from an explicit block list (plus causality)."""
    m = torch.zeros(q1 - q0, n, dtype=torch.bool, device=device)
    idx = blocks.kv_idx[h].to(device)
    i = torch.arange(q0, q1, device=device)
    for r, qi in enumerate(i.tolist()):
        kb = idx[qi // blocks.block_q]
        kb = kb[kb >= 0]
        cols = (kb.unsqueeze(1) * blocks.block_k + torch.arange(blocks.block_k, device=device)).flatten()
        cols = cols[(cols < n) & (cols <= qi)]
        m[r, cols] = True
    return m


def prefill_row(q, k, v, plan: PrefillPlan, scaling: float) -> torch.Tensor:
    """One or more rows without padding. q [b, Hq, n, D], k / v [b, Hkv, n, D] -> [b, Hq, n, D]."""
    b, hq, n, d = q.shape
    hkv = k.shape[1]
    g = hq // hkv
    out = torch.empty_like(q)

    def qheads(heads):
        return [h * g + i for h in heads for i in range(g)]

    groups = list(plan.head_groups().items())
    if plan.block_heads:
        groups += [(("blocks", h), [h]) for h, on in enumerate(plan.block_heads) if on]
    for key, heads in groups:
        qh = qheads(heads)
        qs, ks, vs = q[:, qh], k[:, heads], v[:, heads]
        if key[0] != "blocks" and (key[1] == DENSE or key[0] + key[1] >= n):
            out[:, qh] = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scaling, enable_gqa=True)
            continue
        for q0 in range(0, n, QUERY_CHUNK):
            q1 = min(n, q0 + QUERY_CHUNK)
            if key[0] == "blocks":
                m = block_mask(q0, q1, q1, plan.blocks, heads[0], q.device)
            else:
                m = pattern_mask(q0, q1, q1, key[0], key[1], q.device)
            out[:, qh, q0:q1] = F.scaled_dot_product_attention(
                qs[:, :, q0:q1], ks[:, :, :q1], vs[:, :, :q1], attn_mask=m, scale=scaling, enable_gqa=True
            )
    return out


def prefill_cache_positions(q, k, v, plan: PrefillPlan, scaling: float, inv_freq) -> torch.Tensor:
    """StreamingLLM prefill with positions inside the cache (rows without padding, one sink / window for
    every head). Query i sits at cache position c = min(i, sink + window - 1); a window key keeps its
    distance i - j; a sink key j (cache position j) is seen from c, so its logit uses q rotated by c - i."""
    from sparsebench.rope import rotate

    sink, window = plan.sink[0], plan.window[0]
    b, hq, n, d = q.shape
    g = hq // k.shape[1]
    kk, vv = k.repeat_interleave(g, 1).float(), v.repeat_interleave(g, 1).float()
    out = torch.empty_like(q)
    s = min(sink, n)
    for q0 in range(0, n, QUERY_CHUNK):
        q1 = min(n, q0 + QUERY_CHUNK)
        i = torch.arange(q0, q1, device=q.device)
        qs = q[:, :, q0:q1].float()
        q_sink = rotate(qs, (i.clamp(max=sink + window - 1) - i).expand(qs.shape[:-1]), inv_freq).float()
        j = torch.arange(q1, device=q.device)
        sink_ok = (j[:s] <= i.unsqueeze(1))
        win_ok = (j >= s) & (j <= i.unsqueeze(1)) & (i.unsqueeze(1) - j < window)
        logits = torch.cat([q_sink @ kk[:, :, :s].transpose(-1, -2), qs @ kk[:, :, :q1].transpose(-1, -2)], -1) * scaling
        mask = torch.cat([sink_ok, win_ok], -1)
        p = torch.softmax(logits.masked_fill(~mask, float("-inf")), -1)
        out[:, :, q0:q1] = (p @ torch.cat([vv[:, :, :s], vv[:, :, :q1]], 2)).to(q.dtype)
    return out


def prefill_rows(q, k, v, plan: PrefillPlan, valid, scaling: float, row_fn=prefill_row) -> torch.Tensor:
    """Run `row_fn` on the whole batch, or row by row on each row's real (non-padding) tokens."""
    if valid is None or bool(valid.all()):
        return row_fn(q, k, v, plan, scaling)
    out = torch.zeros_like(q)
    for b in range(q.shape[0]):
        idx = valid[b].nonzero().flatten()
        if idx.numel() == 0:
            continue
        s = slice(int(idx[0]), int(idx[-1]) + 1)
        if idx.numel() != s.stop - s.start:
            raise ValueError("padding must be contiguous (left or right padding) in a prefill chunk")
        out[b : b + 1, :, s] = row_fn(q[b : b + 1, :, s], k[b : b + 1, :, s], v[b : b + 1, :, s], plan, scaling)
    return out


@BACKENDS.register("reference")
class ReferenceBackend(Backend):
    name = "reference"
    supports_cache_positions = True

    def prefill(self, q, k, v, plan, valid, scaling):
        if plan.cache_positions:
            row = lambda q, k, v, plan, scaling: prefill_cache_positions(q, k, v, plan, scaling,  # noqa: E731
                                                                          self.rope_inv_freq)
            return prefill_rows(q, k, v, plan, valid, scaling, row_fn=row)
        return prefill_rows(q, k, v, plan, valid, scaling)

    def decode(self, q, store, plan, scaling):
        return decode_with_gather(q, store, plan, scaling, self.rope_inv_freq)
