"""Plans: what a policy asks a backend to compute for one layer.

A policy never touches a kernel. For a prefill chunk it returns a `PrefillPlan`
(per KV head: dense causal, token-exact sink + window, or an explicit list of key
blocks per query block); for a decode step it returns a `DecodePlan` (per group of
KV heads: every held token, a position window over the held tokens, a list of pages,
or a list of token slots). Backends (`sparsebench.kernels`) execute plans; the
`reference` backend is the oracle every other backend is tested against.

Notation: B batch, Hq query heads, Hkv KV heads, G = Hq // Hkv, D head dim.
A "stream" is one (row, KV head) sequence in the paged store; "slot" is a token's
index inside its stream, "stream page" a page's index inside its stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

DENSE = -1  # window value meaning "dense causal"


@dataclass(frozen=True)
class BlockList:
    """Explicit block-sparse pattern for the heads that use it.

    kv_idx: [Hkv, n_q_blocks, max_k_blocks] int, key-block indices per query block
            (-1 = padding); causal masking still applies inside each block.
    """

    block_q: int
    block_k: int
    kv_idx: torch.Tensor


@dataclass(frozen=True)
class PrefillPlan:
    """Per KV head prefill pattern for a chunk with no cached past.

    Query i sees key j iff j <= i and (window[h] == DENSE or j < sink[h] or i - j < window[h]),
    unless `block_heads[h]` is set, in which case `blocks` decides (plus causality).
    Indices are per row, counting real (non-padding) tokens only.
    """

    sink: tuple[int, ...]
    window: tuple[int, ...]
    blocks: BlockList | None = None
    block_heads: tuple[bool, ...] | None = None
    # StreamingLLM `positions: cache`: keys take their index inside the cache (sinks, then the window)
    cache_positions: bool = False

    @staticmethod
    def dense(n_kv_heads: int) -> "PrefillPlan":
        return PrefillPlan(sink=(0,) * n_kv_heads, window=(DENSE,) * n_kv_heads)

    @property
    def is_dense(self) -> bool:
        return all(w == DENSE for w in self.window) and not any(self.block_heads or ())

    def dense_heads(self, n: int) -> list[int]:
        """KV heads whose pattern is plain causal over a chunk of n tokens: DENSE, or a window of >= n tokens
        (it then covers every earlier key, whatever the sink)."""
        return [h for h, w in enumerate(self.window)
                if (w == DENSE or w >= n) and not (self.block_heads and self.block_heads[h])]

    def head_groups(self) -> dict[tuple[int, int], list[int]]:
        """KV heads grouped by (sink, window), for backends that run one pattern at a time."""
        groups: dict[tuple[int, int], list[int]] = {}
        for h, (s, w) in enumerate(zip(self.sink, self.window)):
            if self.block_heads and self.block_heads[h]:
                continue
            groups.setdefault((s, w) if w != DENSE else (0, DENSE), []).append(h)
        return groups

    def pairs_computed(self, n: int) -> tuple[int, int]:
        """(query-key pairs computed, causal pairs) summed over KV heads for a chunk of n tokens."""
        causal = n * (n + 1) // 2
        total = 0
        for h, (s, w) in enumerate(zip(self.sink, self.window)):
            if self.block_heads and self.block_heads[h]:
                total += _block_pairs(self.blocks, h, n)
            else:
                total += window_pairs(n, s, w)
        return total, causal * len(self.window)


def window_pairs(n: int, sink: int, window: int) -> int:
    """Causal pairs (i, j) with j < sink or i - j < window, for i in [0, n)."""
    if window == DENSE or sink + window >= n:
        return n * (n + 1) // 2
    # rows i < sink + window see every earlier key: i + 1 pairs
    m = sink + window
    head = m * (m + 1) // 2
    # rows i >= m see sink + window keys
    return head + (n - m) * m


def _block_pairs(blocks: BlockList | None, h: int, n: int) -> int:
    assert blocks is not None
    idx = blocks.kv_idx[h]
    total = 0
    for qb in range(idx.shape[0]):
        q0, q1 = qb * blocks.block_q, min(n, (qb + 1) * blocks.block_q)
        if q0 >= n:
            break
        for kb in idx[qb].tolist():
            if kb < 0:
                continue
            k0, k1 = kb * blocks.block_k, min(n, (kb + 1) * blocks.block_k)
            for i in range(q0, q1):
                total += max(0, min(k1, i + 1) - k0)
    return total


# ---------------------------------------------------------------------------------------
# Decode


class Selection:
    """Which held tokens a group of heads reads in one decode step."""


@dataclass(frozen=True)
class AllHeld(Selection):
    """Every token the stream holds (dense over what is stored)."""


@dataclass(frozen=True)
class Window(Selection):
    """Held tokens with logical position p, for a row whose newest token is at n - 1:
    p < sink, or (page is None) n - 1 - p < window, or (page set) p // page >= (n - 1) // page - window // page + 1
    (the last window // page pages, counting the partially filled current page)."""

    sink: int
    window: int
    page: int | None = None


@dataclass(frozen=True)
class Pages(Selection):
    """Stream pages to read: idx [B, Hs, n] (-1 = padding). Hs is the group's KV heads, or its
    query heads when `per_query_head`, or 1 when one list is shared by every head of the group."""

    idx: torch.Tensor
    per_query_head: bool = False


@dataclass(frozen=True)
class Slots(Selection):
    """Stream slots (token indices inside the stream) to read: idx [B, Hs, n] (-1 = padding)."""

    idx: torch.Tensor
    per_query_head: bool = False


@dataclass(frozen=True)
class HeadGroup:
    heads: tuple[int, ...]  # KV heads of this layer that follow `sel`
    sel: Selection


@dataclass
class DecodePlan:
    groups: list[HeadGroup]
    want_probs: bool = False  # return the attention weights over the gathered tokens
    cache_positions: bool = False  # re-rotate keys and query to their positions inside the cache
    # bytes of page summaries read to make the selection (for the record), per row
    summary_bytes: torch.Tensor | None = None
    meta: dict = field(default_factory=dict)

    @staticmethod
    def all_held(n_kv_heads: int, want_probs: bool = False) -> "DecodePlan":
        return DecodePlan([HeadGroup(tuple(range(n_kv_heads)), AllHeld())], want_probs=want_probs)


@dataclass
class GroupResult:
    """What a backend returns per head group when `want_probs` is set.

    slots: [B, Hs, T] stream slots of the gathered tokens (-1 = padding), Hs as in the selection
           (1 = shared), probs: [B, n_heads * G, T] softmax weights of the group's query heads.
    """

    heads: tuple[int, ...]
    slots: torch.Tensor
    probs: torch.Tensor
