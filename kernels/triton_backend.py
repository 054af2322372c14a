"""`triton`: sparsebench's Triton kernels (GPU; on the CPU only under TRITON_INTERPRET=1 for tests).

Prefill: `triton_prefill.block_sparse_prefill` runs every windowed / block-list head in one launch;
dense heads go to SDPA (cuDNN on Hopper) or into the same launch, by `options.dense_heads`: sdpa, triton,
or auto (the default on GPU): SDPA when every head is dense, or, when only some are, from SDPA_GATHER_MIN_LEN
tokens on (below it, gathering their query heads for SDPA and scattering the output back costs more than
cuDNN gains over our kernel). Decode: every selection becomes a page list per row (KV head, or query
head for per-query-head selections) read by `triton_decode.paged_attention`; token sets (ALISA)
and any step that must return attention weights (H2O, ALISA) use `gathered_attention`.
Not supported (refused before the model loads): INT8 pages (kv_bits=8) and positions=cache.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache

import torch
import torch.nn.functional as F

from sparsebench.kernels.base import BACKENDS, Backend, selection_slots
from sparsebench.kernels.reference import prefill_rows
from sparsebench.plans import AllHeld, GroupResult, Pages, Slots, Window


def _triton_ok(device) -> str | None:
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed"
    from sparsebench.kernels.triton_prefill import INTERPRET

    if torch.device(device).type != "cuda" and not INTERPRET:
        return "the triton backend needs a CUDA device (or TRITON_INTERPRET=1 for CPU tests)"
    return None


@lru_cache(maxsize=None)
def _index(values: tuple[int, ...], device) -> torch.Tensor:
    """A constant index tensor on `device` (head lists repeat every decode step: copied to the device once)."""
    return torch.tensor(values, device=device, dtype=torch.long)


def query_heads(heads: tuple[int, ...], group: int, device) -> torch.Tensor:
    """The query heads of KV heads `heads` (GQA groups of `group`), as a device index."""
    return _index(tuple(h * group + g for h in heads for g in range(group)), torch.device(device))


def selection_pages(store, heads: tuple[int, ...], sel, group: int):
    """A selection as page lists: (pages [B, R, NP] pool ids (-1 none), page_len [B, R, NP], kv_of_row [R],
    rows_per_kv, pos_filter or None)."""
    dev = store.device
    heads_t = _index(tuple(heads), torch.device(dev))
    page = store.page
    if isinstance(sel, (AllHeld, Window)):
        kv, per = heads_t, 1
        n_held = store.n_held[:, heads_t]  # [B, R]
        np_max = max(1, int((n_held.max() + page - 1) // page))
        stream_pages = torch.arange(np_max, device=dev).expand(*n_held.shape, np_max)
    else:
        idx = sel.idx
        rows = idx.shape[1]
        if rows == 1:
            idx = idx.expand(-1, len(heads), -1)
            rows = len(heads)
        kv, per = (heads_t, 1) if rows == len(heads) else (heads_t.repeat_interleave(group), group)
        n_held = store.n_held[:, kv]
        stream_pages = idx
    pt = store.page_table[:, kv]  # [B, R, W]
    col = stream_pages.clamp(min=0, max=pt.shape[-1] - 1)
    phys = pt.gather(-1, col)
    length = (n_held.unsqueeze(-1) - stream_pages * page).clamp(min=0, max=page)
    valid = (stream_pages >= 0) & (length > 0) & (phys >= 0)
    pages = torch.where(valid, phys, torch.full_like(phys, -1))
    length = torch.where(valid, length, torch.zeros_like(length))
    pos_filter = None
    if isinstance(sel, Window):
        n = store.logical_len.view(-1, 1).expand_as(n_held)
        if sel.page is None:
            lo = n - sel.window
        else:
            lo = ((n - 1) // sel.page - sel.window // sel.page + 1) * sel.page
        pos_filter = (store.pos_pool, sel.sink, lo)
    return pages, length, kv, per, pos_filter


def dense_sdpa(q, k, v, scaling):
    """Causal SDPA preferring cuDNN (Hopper's fastest), GQA passed as is (`enable_gqa`: no K / V expanded to the
    query heads). H100, run 8: 0.97 ms vs 1.12 ms with the expansion at 8K, equal or faster at 16K-64K
    (docs/benchmarks/data/run8_probe_dense_gqa.json)."""
    ctx = contextlib.nullcontext()
    if q.is_cuda:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        ctx = sdpa_kernel([SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                           SDPBackend.MATH], set_priority=True)
    with ctx:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling, enable_gqa=True)


# dense_heads=auto: shortest chunk whose dense heads (when not all heads are) go to SDPA. H100, run 11, streaming
# heads (half the KV heads dense), timed alternately: SDPA / our kernel 0.696 / 0.663 ms at 8K, 1.370 / 1.377 at
# 12K, 2.254 / 2.326 at 16K, 8.16 / 8.37 at 32K (docs/benchmarks/data/run11_probe_dense_dispatch.json)
SDPA_GATHER_MIN_LEN = 12288


@BACKENDS.register("triton")
class TritonBackend(Backend):
    name = "triton"
    reads_int8_pages = False

    def __init__(self, device="cpu", **options):
        super().__init__(device, **options)
        self.dense_heads = options.get("dense_heads", "auto" if self.device.type == "cuda" else "triton")
        if self.dense_heads not in ("sdpa", "triton", "auto"):
            raise ValueError(f"backend.options.dense_heads={self.dense_heads!r}: allowed sdpa, triton, auto")
        prefill_keys = ("block_", "num_", "window_", "tma", "pack_gqa", "ws")
        self._prefill_opts = {k: v for k, v in options.items() if k.startswith(prefill_keys)}
        self._decode_opts = {k: v for k, v in options.items() if k == "pages_per_split"}

    @classmethod
    def available(cls, device) -> str | None:
        return _triton_ok(device)

    # ------------------------------------------------------------------ prefill
    def _prefill_row(self, q, k, v, plan, scaling):
        from sparsebench.kernels.triton_prefill import block_sparse_prefill

        G = q.shape[1] // k.shape[1]
        dense = plan.dense_heads(q.shape[2])  # windows as long as the chunk included: plain causal
        all_dense = len(dense) == len(plan.window)
        use_sdpa = bool(dense) and (self.dense_heads == "sdpa" or self.dense_heads == "auto" and
                                    (all_dense or q.shape[2] >= SDPA_GATHER_MIN_LEN))
        if all_dense and use_sdpa:
            return dense_sdpa(q, k, v, scaling)
        out = block_sparse_prefill(q, k, v, plan, scaling, skip_dense=bool(use_sdpa), **self._prefill_opts)
        if use_sdpa:
            qh, kvh = query_heads(tuple(dense), G, q.device), _index(tuple(dense), q.device)
            out[:, qh] = dense_sdpa(q[:, qh], k[:, kvh], v[:, kvh], scaling)
        return out

    def prefill(self, q, k, v, plan, valid, scaling):
        return prefill_rows(q, k, v, plan, valid, scaling, row_fn=self._prefill_row)

    # ------------------------------------------------------------------ decode
    def decode(self, q, store, plan, scaling):
        from sparsebench.kernels.triton_decode import gathered_attention, paged_attention

        if store.quant:
            raise ValueError("backend=triton does not read INT8 pages")
        B, Hq, D = q.shape
        G = Hq // store.h
        out = torch.empty_like(q)
        results = [] if plan.want_probs else None
        for grp in plan.groups:
            q_idx = query_heads(grp.heads, G, q.device)
            if plan.want_probs or isinstance(grp.sel, Slots):
                slots, kv, per = selection_slots(store, grp.heads, grp.sel, G)
                flat = store.flat_slots(slots, kv)
                R = slots.shape[1]
                q_rows = q[:, q_idx].reshape(B, R, G // per, D)
                o, probs = gathered_attention(q_rows, store.k_pool.view(-1, D), store.v_pool.view(-1, D), flat, scaling)
                if results is not None:
                    results.append(GroupResult(grp.heads, slots, probs.reshape(B, len(q_idx), -1)))
            else:
                pages, length, kv, per, pos_filter = selection_pages(store, grp.heads, grp.sel, G)
                R = pages.shape[1]
                q_rows = q[:, q_idx].reshape(B, R, G // per, D)
                o = paged_attention(q_rows, store.k_pool, store.v_pool, pages, length, scaling, pos_filter,
                                    **self._decode_opts)
            out[:, q_idx] = o.reshape(B, len(q_idx), D).to(q.dtype)
        return out, results
