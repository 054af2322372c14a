"""The paged KV store: a transformers `Cache` whose memory follows the policy.

Layout (per layer; chosen for the GPU kernels, not for the reference code):

    k_pool, v_pool  [P, page, D]        pages shared by every stream of the layer
    pos_pool        [P, page]     int64 logical position of each slot (-1 = empty)
    kmin, kmax      [P, page // lps, D] per-channel key min / max of each logical page
                                        of `lps` tokens (only when a policy asks for them)
    page_table      [B, Hkv, W]   int64 stream page -> pool page (-1 = none)
    n_held          [B, Hkv]      int64 tokens a stream holds (its slots 0 .. n_held - 1)
    n_pages         [B, Hkv]      int64 pages a stream owns

A *stream* is one (batch row, KV head). Streams own pages independently, so a
streaming head owns only its sink + window pages, an evicting policy (StreamingLLM,
H2O, SnapKV) holds exactly its budget, and retrieval heads grow with the context:
memory is real and per KV head, never a mask over a dense cache. A token's key is
stored after RoPE; its *logical position* (the index of the real token in its row,
padding excluded) sits in `pos_pool` next to it, so slots need not be in position
order: an evicting policy overwrites a victim's slot in place (O(1), no compaction).

Logical vs physical length: `logical_len[b]` counts every real token row b has seen
(positions); `n_held[b, h]` counts what is stored (what masks and kernels see);
`seen` counts every input column including left padding (what transformers asks
for through `get_seq_length` to build masks and positions).

Appending writes only the new token's slot and, when asked, folds the token into its
logical page's min / max: a decode step never copies the cache.

INT8 (`kv_bits=8`, ALISA's KV compression): pools hold uint8, and `qparams [P, 4, D]`
the per-channel (K scale, K zero, V scale, V zero) of each full page; each stream's open
(partially filled) page stays in full precision in `k_open / v_open [B, Hkv, page, D]`
until it fills, then it is quantized as a whole. Appends only (no eviction). Pages are handed out
in order from the pool, which grows by doubling (or is reserved up front with
`reserve` for static-shape GPU decoding); they go back when the sequence is reset.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

try:  # the transformers base classes, so `model.generate` accepts the store unchanged
    from transformers.cache_utils import Cache, CacheLayerMixin
except ImportError:  # pragma: no cover - transformers is a hard dependency
    Cache, CacheLayerMixin = object, object


@dataclass(frozen=True)
class StoreSpec:
    """What a policy needs from the store."""

    page_size: int = 64
    summary_page: int | None = None  # logical page size of the key min/max summaries (None = none)
    kv_bits: int = 16  # 8: pages stored as channel-wise asymmetric min-max INT8 once full


def quantize_page(x: torch.Tensor):
    """Channel-wise asymmetric min-max INT8 over the tokens of each page.

    x [n, page, D] -> (q uint8 [n, page, D], scale [n, D], zero [n, D]) with
    scale = (max - min) / 255, zero = -round(min / scale), q = clamp(round(x / scale) + zero, 0, 255).
    """
    x = x.float()
    lo, hi = x.amin(1), x.amax(1)
    scale = (hi - lo) / 255
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # a constant channel
    zero = -torch.round(lo / scale)
    q = torch.clamp(torch.round(x / scale.unsqueeze(1)) + zero.unsqueeze(1), 0, 255).to(torch.uint8)
    return q, scale, zero


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    return (q.float() - zero) * scale


def _ceil_div(a: torch.Tensor | int, b: int):
    return (a + b - 1) // b


class PagedLayer(CacheLayerMixin):
    """One layer's paged KV. Tensors are created on the first write."""

    is_compileable = False
    is_sliding = False
    is_croppable = False

    def __init__(self, spec: StoreSpec, n_kv_heads: int, head_dim: int):
        super().__init__()
        self.spec = spec
        self.page = spec.page_size
        self.lps = spec.summary_page
        self.quant = spec.kv_bits == 8
        self.h = n_kv_heads
        self.d = head_dim
        self._clear()

    # ------------------------------------------------------------------ state
    def _clear(self) -> None:
        self.k_pool = self.v_pool = self.pos_pool = None
        self.kmin = self.kmax = None
        self.page_table = self.n_held = self.n_pages = None
        self.logical_len = None  # [B] int64
        self.used_pages = 0
        self.seen = 0
        self.batch = 0
        self.state: dict = {}  # the policy's per-sequence state for this layer
        self.is_initialized = False

    def _init(self, batch: int, dtype: torch.dtype, device: torch.device, pages: int = 0) -> None:
        self.batch, self.dtype, self.device = batch, dtype, device
        cap = max(pages, 1)
        pool_dtype = torch.uint8 if self.quant else dtype
        self.k_pool = torch.empty(cap, self.page, self.d, dtype=pool_dtype, device=device)
        self.v_pool = torch.empty_like(self.k_pool)
        if self.quant:
            self.qparams = torch.zeros(cap, 4, self.d, dtype=torch.float32, device=device)
            self.open_owner = torch.full((cap,), -1, dtype=torch.long, device=device)  # stream of an open page
            self.k_open = torch.zeros(batch, self.h, self.page, self.d, dtype=dtype, device=device)
            self.v_open = torch.zeros_like(self.k_open)
        self.pos_pool = torch.full((cap, self.page), -1, dtype=torch.long, device=device)
        if self.lps:
            n_lp = self.page // self.lps
            self.kmin = torch.empty(cap, n_lp, self.d, dtype=dtype, device=device)
            self.kmax = torch.empty_like(self.kmin)
        self.page_table = torch.full((batch, self.h, 1), -1, dtype=torch.long, device=device)
        self.n_held = torch.zeros(batch, self.h, dtype=torch.long, device=device)
        self.n_pages = torch.zeros_like(self.n_held)
        self.logical_len = torch.zeros(batch, dtype=torch.long, device=device)
        self.is_initialized = True

    @property
    def capacity_pages(self) -> int:
        return 0 if self.k_pool is None else self.k_pool.shape[0]

    def reserve(self, tokens_per_stream: int) -> None:
        """Grow the pool so every stream can hold `tokens_per_stream` tokens without reallocating."""
        need = self.batch * self.h * _ceil_div(tokens_per_stream, self.page)
        self._grow_pool(self.used_pages + need)
        self._grow_table(_ceil_div(tokens_per_stream, self.page))

    def _grow_pool(self, pages: int) -> None:
        cap = self.capacity_pages
        if pages <= cap:
            return
        new = max(pages, 2 * cap)

        def grow(t: torch.Tensor, fill=None) -> torch.Tensor:
            out = torch.empty((new, *t.shape[1:]), dtype=t.dtype, device=t.device)
            if fill is not None:
                out[cap:].fill_(fill)
            out[:cap] = t
            return out

        self.k_pool, self.v_pool = grow(self.k_pool), grow(self.v_pool)
        self.pos_pool = grow(self.pos_pool, -1)
        if self.quant:
            self.qparams, self.open_owner = grow(self.qparams, 0.0), grow(self.open_owner, -1)
        if self.kmin is not None:
            self.kmin, self.kmax = grow(self.kmin), grow(self.kmax)

    def _grow_table(self, width: int) -> None:
        w = self.page_table.shape[-1]
        if width <= w:
            return
        new = torch.full((self.batch, self.h, max(width, 2 * w)), -1, dtype=torch.long, device=self.device)
        new[..., :w] = self.page_table
        self.page_table = new

    def _ensure_pages(self, need_tokens: torch.Tensor) -> None:
        """Give every stream enough pages for `need_tokens[b, h]` slots. need_tokens: [B, Hkv]."""
        need_pages = _ceil_div(need_tokens, self.page)
        add = (need_pages - self.n_pages).clamp(min=0)
        total = int(add.sum())
        if total == 0:
            return
        self._grow_pool(self.used_pages + total)
        self._grow_table(int(need_pages.max()))
        flat_add = add.flatten()
        stream = torch.repeat_interleave(torch.arange(flat_add.numel(), device=self.device), flat_add)
        first = torch.cumsum(flat_add, 0) - flat_add
        col = self.n_pages.flatten()[stream] + torch.arange(total, device=self.device) - first[stream]
        ids = torch.arange(self.used_pages, self.used_pages + total, device=self.device)
        self.page_table.view(-1, self.page_table.shape[-1])[stream, col] = ids
        self.pos_pool[ids] = -1
        if self.kmin is not None:
            self.kmin[ids] = torch.finfo(self.dtype).max
            self.kmax[ids] = torch.finfo(self.dtype).min
        self.used_pages += total
        self.n_pages = torch.maximum(self.n_pages, need_pages)

    # ------------------------------------------------------------------ writes
    def flat_slots(self, slots: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
        """Pool-flat indices (page * page_size + offset) of stream slots. slots: [B, Hs, T] with
        Hs == Hkv, or any Hs when `heads` [Hs] names each row's KV head. -1 stays -1."""
        pt = self.page_table if heads is None else self.page_table[:, heads]
        page_col = (slots.clamp(min=0) // self.page).clamp(max=pt.shape[-1] - 1)
        flat = pt.gather(-1, page_col) * self.page + slots.clamp(min=0) % self.page
        return torch.where(slots >= 0, flat, torch.full_like(flat, -1))

    def write(self, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor, slots: torch.Tensor) -> None:
        """Write tokens into stream slots (append when slot == n_held, overwrite when below).

        k, v: [B, Hkv, T, D]; pos: [B, Hkv, T] logical positions; slots: [B, Hkv, T] (-1 = skip).
        """
        need = (slots.amax(-1) + 1).clamp(min=0)
        self._ensure_pages(need)
        if self.quant:
            return self._write_quantized(k, v, pos, slots, need)
        flat = self.flat_slots(slots)
        ok = flat >= 0
        dst = flat[ok]
        overwrote = None
        if self.kmin is not None:
            old = self.pos_pool.view(-1)[dst]
            overwrote = dst[old >= 0]
        self.k_pool.view(-1, self.d)[dst] = k[ok].to(self.dtype)
        self.v_pool.view(-1, self.d)[dst] = v[ok].to(self.dtype)
        self.pos_pool.view(-1)[dst] = pos[ok]
        self.n_held = torch.maximum(self.n_held, need)
        if self.kmin is not None:
            self._fold_summaries(dst, k[ok].to(self.dtype))
            if overwrote is not None and overwrote.numel():
                self._refresh_summaries(torch.unique(overwrote // self.lps))

    def _write_quantized(self, k, v, pos, slots, need) -> None:
        """Append into INT8 pages: stage the open page in full precision, quantize pages as they fill."""
        flat = self.flat_slots(slots)
        ok = flat >= 0
        self.pos_pool.view(-1)[flat[ok]] = pos[ok]
        seal_pid, seal_k, seal_v = [], [], []
        for b, h in (ok.any(-1)).nonzero().tolist():
            sel = ok[b, h]
            ss = slots[b, h][sel]
            s0 = int(self.n_held[b, h])
            if int(ss[0]) != s0 or not bool((ss.diff() == 1).all()):
                raise ValueError("INT8 KV pages are append-only")
            off = s0 % self.page
            buf_k = torch.cat([self.k_open[b, h, :off], k[b, h][sel].to(self.dtype)])
            buf_v = torch.cat([self.v_open[b, h, :off], v[b, h][sel].to(self.dtype)])
            col0, full = s0 // self.page, buf_k.shape[0] // self.page
            for i in range(full):
                pid = int(self.page_table[b, h, col0 + i])
                seal_pid.append(pid)
                seal_k.append(buf_k[i * self.page : (i + 1) * self.page])
                seal_v.append(buf_v[i * self.page : (i + 1) * self.page])
                self.open_owner[pid] = -1
            rest = buf_k.shape[0] - full * self.page
            if rest:
                self.k_open[b, h, :rest] = buf_k[full * self.page :]
                self.v_open[b, h, :rest] = buf_v[full * self.page :]
                self.open_owner[int(self.page_table[b, h, col0 + full])] = b * self.h + h
        if seal_pid:
            pid = torch.tensor(seal_pid, device=self.device)
            qk, sk, zk = quantize_page(torch.stack(seal_k))
            qv, sv, zv = quantize_page(torch.stack(seal_v))
            self.k_pool[pid], self.v_pool[pid] = qk, qv
            self.qparams[pid] = torch.stack([sk, zk, sv, zv], dim=1)
        self.n_held = torch.maximum(self.n_held, need)

    def _fold_summaries(self, dst: torch.Tensor, keys: torch.Tensor) -> None:
        lp = (dst // self.lps).unsqueeze(-1).expand(-1, self.d)
        self.kmin.view(-1, self.d).scatter_reduce_(0, lp, keys, reduce="amin", include_self=True)
        self.kmax.view(-1, self.d).scatter_reduce_(0, lp, keys, reduce="amax", include_self=True)

    def _refresh_summaries(self, logical_pages: torch.Tensor) -> None:
        """Recompute min / max of logical pages from their tokens (after an overwrite)."""
        tok = logical_pages.unsqueeze(-1) * self.lps + torch.arange(self.lps, device=self.device)
        keys = self.k_pool.view(-1, self.d)[tok]  # [n, lps, D]
        held = (self.pos_pool.view(-1)[tok] >= 0).unsqueeze(-1)
        big = torch.finfo(self.dtype).max
        self.kmin.view(-1, self.d)[logical_pages] = torch.where(held, keys, big).amin(1)
        self.kmax.view(-1, self.d)[logical_pages] = torch.where(held, keys, -big).amax(1)

    # ------------------------------------------------------------------ reads
    def gather_tokens(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """K, V and positions at pool-flat indices flat [...] (-1 -> zeros, position -1)."""
        idx = flat.clamp(min=0)
        k = self.k_pool.view(-1, self.d)[idx]
        v = self.v_pool.view(-1, self.d)[idx]
        p = torch.where(flat >= 0, self.pos_pool.view(-1)[idx], torch.full_like(flat, -1))
        if self.quant:
            page, off = idx // self.page, idx % self.page
            qp = self.qparams[page]  # [..., 4, D]
            k = dequantize(k, qp[..., 0, :], qp[..., 1, :]).to(self.dtype)
            v = dequantize(v, qp[..., 2, :], qp[..., 3, :]).to(self.dtype)
            owner = self.open_owner[page]
            is_open = (owner >= 0).unsqueeze(-1)
            if bool(is_open.any()):
                stream = owner.clamp(min=0)
                k = torch.where(is_open, self.k_open.view(-1, self.page, self.d)[stream, off], k)
                v = torch.where(is_open, self.v_open.view(-1, self.page, self.d)[stream, off], v)
        return k, v, p

    def held_slots(self, heads: tuple[int, ...] | None = None) -> torch.Tensor:
        """Every held slot of the given KV heads: [B, Hs, S_max] (-1 beyond each stream's n_held)."""
        n = self.n_held if heads is None else self.n_held[:, list(heads)]
        s = int(n.max()) if n.numel() else 0
        ar = torch.arange(s, device=self.device)
        return torch.where(ar < n.unsqueeze(-1), ar, torch.full_like(ar, -1))

    def page_slots(self, pages: torch.Tensor) -> torch.Tensor:
        """Stream slots of stream pages: [B, Hs, n] -> [B, Hs, n * page] (-1 for padding)."""
        ar = torch.arange(self.page, device=pages.device)
        s = pages.unsqueeze(-1) * self.page + ar
        s = torch.where(pages.unsqueeze(-1) >= 0, s, torch.full_like(s, -1))
        return s.flatten(-2)

    def logical_pages(self, heads: tuple[int, ...] | None = None) -> torch.Tensor:
        """Each stream's logical pages as rows of kmin / kmax viewed [-1, D]: [B, Hs, NL], -1 for a logical page
        with no token held; NL = pages * page // lps, in stream order (logical page j covers slots j*lps ..)."""
        pt = self.page_table if heads is None else self.page_table[:, list(heads)]
        n_held = self.n_held if heads is None else self.n_held[:, list(heads)]
        npg = int(_ceil_div(n_held.max(), self.page)) if n_held.numel() else 0
        pt = pt[..., :npg]
        per = self.page // self.lps
        lp = (pt.unsqueeze(-1) * per + torch.arange(per, device=self.device)).flatten(-2)
        first_slot = torch.arange(lp.shape[-1], device=self.device) * self.lps
        return torch.where((first_slot < n_held.unsqueeze(-1)) & (lp >= 0), lp, -1)

    def summaries(self, heads: tuple[int, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per logical page key min / max of every stream: ([B, Hs, NL, D], same, valid [B, Hs, NL]), in the
        order of `logical_pages`."""
        lp = self.logical_pages(heads)
        rows = lp.clamp(min=0)
        return self.kmin.view(-1, self.d)[rows], self.kmax.view(-1, self.d)[rows], lp >= 0

    # ------------------------------------------------------------------ accounting
    def bytes_per_token(self) -> int:
        return 2 * self.d * self.k_pool.element_size() if self.k_pool is not None else 0

    def held_bytes(self) -> torch.Tensor:
        """KV bytes of the tokens held, plus the summaries of the pages in use (0-d tensor).
        INT8: one byte per element, the quantization parameters of every page and the open pages."""
        if self.n_held is None:
            return torch.zeros(())
        b = self.n_held.sum() * self.bytes_per_token()
        if self.quant:
            b = b + self.n_pages.sum() * 4 * self.d * 4 + self.k_open.numel() * 2 * self.k_open.element_size()
        if self.kmin is not None:
            b = b + self.n_pages.sum() * (self.page // self.lps) * 2 * self.d * self.kmin.element_size()
        return b

    def allocated_bytes(self) -> int:
        per_page = self.page * self.bytes_per_token() + (4 * self.d * 4 if self.quant else 0)
        if self.kmin is not None:
            per_page += (self.page // self.lps) * 2 * self.d * self.kmin.element_size()
        return self.used_pages * per_page

    # ------------------------------------------------------------------ transformers' CacheLayerMixin
    def lazy_initialization(self, key_states, value_states) -> None:  # pragma: no cover - unused
        self._init(key_states.shape[0], key_states.dtype, key_states.device)

    def update(self, key_states, value_states, *args, **kwargs):
        # The attention function writes the store itself (it needs the policy's decision on
        # what to keep); transformers' update only hands the new tokens through.
        return key_states, value_states

    def get_seq_length(self) -> int:
        return self.seen

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.seen + query_length, 0

    def get_max_length(self) -> int:
        return -1

    def reset(self) -> None:
        self._clear()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        raise NotImplementedError("beam search is not supported by the sparsebench KV store")


class SparseKVCache(Cache):
    """The KV store of one sequence batch, as a transformers `Cache` (one `PagedLayer` per layer).

    Made by `sparsebench.attention.attach` for every new sequence; `model.generate` and
    plain forward calls pick it up through the session's forward pre-hook.
    """

    def __init__(self, session, n_layers: int, n_kv_heads: int, head_dim: int, spec: StoreSpec):
        layers = [PagedLayer(spec, n_kv_heads, head_dim) for _ in range(n_layers)]
        super().__init__(layers=layers)
        self.session = session
        self.spec = spec

    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        return key_states, value_states

    def layer(self, i: int) -> PagedLayer:
        return self.layers[i]

    def held_bytes(self) -> torch.Tensor:
        return sum((layer.held_bytes() for layer in self.layers), torch.zeros(()))

    def allocated_bytes(self) -> int:
        return sum(layer.allocated_bytes() for layer in self.layers)

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("cropping is not supported by the sparsebench KV store")
