"""`flex`: FlexAttention (torch.nn.attention.flex_attention) for prefill, with a BlockMask built from the plan.

The block mask is made straight from block index tensors (`BlockMask.from_kv_blocks`): for each
query head and query block, the key blocks every row sees in full (no mask_mod call) and the key
blocks that straddle a boundary (the diagonal, a sink or window edge), computed by block-range
arithmetic; a mask_mod applies the token-exact rule inside partial blocks. No token-level mask is
materialised. Lengths are padded to multiples of the block size (128), so compiled kernels are
reused across prompts of nearby lengths (recompiles are bounded by the number of length buckets).
Decode: FlexAttention decode was measured 17-40x slower than SDPA (PERF.md), so decode runs on the
Triton paged kernel on GPU and on the reference gather path elsewhere.
"""

from __future__ import annotations

import torch

from sparsebench.kernels.base import BACKENDS, Backend, decode_with_gather
from sparsebench.kernels.reference import prefill_rows
from sparsebench.plans import DENSE

BLOCK = 128
_compiled = None


def _flex_fn(device):
    global _compiled
    from torch.nn.attention.flex_attention import flex_attention

    if device.type != "cuda":
        return flex_attention  # eager (CPU tests)
    if _compiled is None:
        _compiled = torch.compile(flex_attention, dynamic=False)
    return _compiled


def block_tables(plan, n: int, group: int, device):
    """(kv_num_blocks, kv_indices, full_num_blocks, full_indices) per query head, [1, Hq, NQB(, NKB)] int32."""
    nb = -(-n // BLOCK)
    qb = torch.arange(nb, device=device)
    qs, qe = qb * BLOCK, torch.clamp((qb + 1) * BLOCK, max=n) - 1  # first / last row of each query block
    kb = torch.arange(nb, device=device)
    ks, ke = kb * BLOCK, torch.clamp((kb + 1) * BLOCK, max=n) - 1
    parts, fulls = [], []
    for h in range(len(plan.window)):
        sink, win = plan.sink[h], plan.window[h]
        causal_any = ks[None, :] <= qe[:, None]
        causal_all = ke[None, :] <= qs[:, None]
        if plan.block_heads and plan.block_heads[h]:
            idx = plan.blocks.kv_idx[h].to(device)
            listed = torch.zeros(nb, nb, dtype=torch.bool, device=device)
            rows = torch.arange(idx.shape[0], device=device).unsqueeze(1).expand_as(idx)
            ok = (idx >= 0) & (rows < nb)
            listed[rows[ok], idx[ok]] = True
            anyv, allv = listed & causal_any, torch.zeros_like(listed)
        elif win == DENSE:
            anyv, allv = causal_any, causal_all
        else:
            dist_min = (qs[:, None] - ke[None, :]).clamp(min=0)  # smallest i - j in the block pair
            dist_max = qe[:, None] - ks[None, :]  # largest i - j
            in_sink_any, in_sink_all = ks[None, :] < sink, ke[None, :] < sink
            anyv = causal_any & (in_sink_any | (dist_min < win))
            allv = causal_all & (in_sink_all | (dist_max < win))
        partial = anyv & ~allv
        parts.append(partial)
        fulls.append(allv)

    def to_idx(m):  # [H, NQB, NKB] bool -> counts [H, NQB], indices [H, NQB, NKB] (listed first)
        cnt = m.sum(-1).to(torch.int32)
        order = torch.argsort((~m).to(torch.int8), dim=-1, stable=True).to(torch.int32)
        return cnt, order

    # sorted once per KV head, then repeated for its query group (the group shares the KV head's blocks)
    tables = (*to_idx(torch.stack(parts)), *to_idx(torch.stack(fulls)))
    pc, pi, fc, fi = (t.repeat_interleave(group, 0) for t in tables)
    return pc[None], pi[None], fc[None], fi[None]


def make_block_mask(plan, n: int, n_pad: int, group: int, device):
    from torch.nn.attention.flex_attention import BlockMask

    kvn, kvi, fn, fi = block_tables(plan, n_pad, group, device)
    hq = kvn.shape[1]
    heads = torch.arange(hq, device=device) // group
    is_dense = torch.tensor([w == DENSE for w in plan.window], device=device)[heads]
    sink = torch.tensor(list(plan.sink), device=device)[heads]
    win = torch.tensor([max(w, 1) for w in plan.window], device=device)[heads]

    def mask_mod(b, h, q_idx, kv_idx):
        ok = (kv_idx <= q_idx) & (kv_idx < n)
        return ok & (is_dense[h] | (kv_idx < sink[h]) | (q_idx - kv_idx < win[h]))

    return BlockMask.from_kv_blocks(kvn, kvi, fn, fi, BLOCK_SIZE=BLOCK, mask_mod=mask_mod, seq_lengths=(n_pad, n_pad))


def flex_prefill(q, k, v, plan, scaling: float):
    """One row (or an unpadded batch): q [b, Hq, n, D], k / v [b, Hkv, n, D]."""
    n = q.shape[2]
    n_pad = -(-n // BLOCK) * BLOCK
    pad = n_pad - n
    if pad:
        q, k, v = (torch.nn.functional.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    bm = make_block_mask(plan, n, n_pad, q.shape[1] // k.shape[1], q.device)
    out = _flex_fn(q.device)(q, k, v, block_mask=bm, scale=scaling, enable_gqa=True)
    return out[:, :, :n]


@BACKENDS.register("flex")
class FlexBackend(Backend):
    name = "flex"
    reads_int8_pages = False
    _paged = None  # the Triton backend its CUDA decode steps run on

    @classmethod
    def available(cls, device) -> str | None:
        try:
            from torch.nn.attention.flex_attention import BlockMask, flex_attention  # noqa: F401
        except ImportError:
            return "this torch has no FlexAttention"
        return None

    def prefill(self, q, k, v, plan, valid, scaling):
        return prefill_rows(q, k, v, plan, valid, scaling, row_fn=flex_prefill)

    def decode(self, q, store, plan, scaling):
        if q.is_cuda:
            if self._paged is None:  # built once, on the first CUDA decode step
                from sparsebench.kernels.triton_backend import TritonBackend

                self._paged = TritonBackend(q.device)
            return self._paged.decode(q, store, plan, scaling)
        return decode_with_gather(q, store, plan, scaling)
