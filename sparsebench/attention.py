"""Attention glue: the one place that touches transformers' attention and cache machinery.

`attach(model, policy, backend)` is a context manager. While it is open:
- the model's attention implementation is `sparsebench`: a function registered (at the
  first attach, not at import) with transformers' `AttentionInterface`, plus a matching
  mask function in `AttentionMaskInterface` that hands the 2D padding mask through unchanged
  (causality and sparsity are the policy's; no dense 4D mask is ever built);
- a forward pre-hook gives every new sequence a fresh `SparseKVCache` (a transformers
  `Cache`) and passes it to the attention function as the `sparsebench_kv` keyword, so
  `model.generate` and plain forward calls work unchanged (generate keeps the cache the
  first forward returns).
On exit the hook is removed and the previous attention implementation restored.

Per layer call the session runs the policy and the backend:
- prefill (the layer's store is empty): backend.prefill over the chunk with the policy's
  prefill plan, then the policy says which tokens each stream keeps and the store writes them;
- decode (one new token per row): the policy picks the new token's slot (append, or evict a
  victim), the store writes it, the policy plans the step, the backend computes it, and the
  policy observes the weights if it asked for them. A multi-token chunk after the prefill is
  processed as consecutive decode steps (exact decode semantics).
Padding: left padding (or right padding in a prefill-only call) is never stored; positions
count real tokens only. The session also keeps the KV accounting every record reports.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from sparsebench.arch import ModelArch
from sparsebench.kv_store import SparseKVCache
from sparsebench.plans import AllHeld, DecodePlan, Pages, Slots, Window
from sparsebench.policies.base import PrefillContext, keep_indices

ATTN_NAME = "sparsebench"
_registered = False


def sparsebench_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                          sparsebench_kv=None, **kwargs):
    """transformers attention function. query [B, Hq, L, D], key / value [B, Hkv, L, D] (the new
    tokens only: our cache's `update` hands them through) -> ([B, L, Hq, D], None)."""
    if sparsebench_kv is None:
        raise RuntimeError("the sparsebench attention ran outside `sparsebench.attention.attach(...)`")
    if kwargs.get("sliding_window") is not None:
        raise NotImplementedError("models with sliding-window layers are not supported yet")
    scale = scaling if scaling is not None else module.scaling
    out = sparsebench_kv.session.attend(sparsebench_kv, module.layer_idx, query, key, value, attention_mask, scale)
    return out, None


def sparsebench_mask(batch_size, q_length, kv_length, q_offset=0, kv_offset=0, mask_function=None,
                     attention_mask=None, **kwargs):
    """The 2D padding mask [B, kv_length] (bool), or None when nothing is padded."""
    if attention_mask is None:
        return None
    m = attention_mask[:, -kv_length:].bool()
    return None if bool(m.all()) else m


def register() -> None:
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTN_NAME, sparsebench_attention)
    AttentionMaskInterface.register(ATTN_NAME, sparsebench_mask)
    _registered = True


class KVStats:
    """Running KV accounting for a run (tensors on the device; read once at the end)."""

    def __init__(self):
        self.prefill_pairs = 0
        self.prefill_causal = 0
        self.prefill_tokens = 0
        self.decode_read = 0.0  # tokens attended, summed over (row, query head)
        self.decode_causal = 0.0  # tokens held-or-not that a dense query would attend, same sum
        self.decode_bytes = 0.0  # KV (+ summary) bytes read
        self.decode_layer_steps = 0  # (layer, step) pairs
        self.held_now: dict[int, torch.Tensor] = {}
        self.allocated_now: dict[int, int] = {}
        self.held_peak = 0.0
        self.allocated_peak = 0
        self.sequences = 0

    def held(self, layer: int, store) -> None:
        """After a write to `layer`: update the peaks of bytes held and pages allocated over all layers."""
        self.held_now[layer] = store.held_bytes().double()
        self.allocated_now[layer] = store.allocated_bytes()
        total = sum(self.held_now.values())
        self.held_peak = torch.maximum(torch.as_tensor(self.held_peak, dtype=torch.float64, device=total.device), total)
        self.allocated_peak = max(self.allocated_peak, sum(self.allocated_now.values()))

    def new_sequence(self) -> None:
        self.held_now, self.allocated_now = {}, {}
        self.sequences += 1

    def summary(self, n_layers: int) -> dict:
        f = lambda x: float(x)  # noqa: E731
        steps = self.decode_layer_steps / max(n_layers, 1)
        return {
            "kv_bytes_held_peak": f(self.held_peak),
            "kv_bytes_allocated_peak": int(self.allocated_peak),
            "kv_bytes_read_per_decode_step": f(self.decode_bytes) / steps if steps else 0.0,
            "density_prefill": self.prefill_pairs / self.prefill_causal if self.prefill_causal else 1.0,
            "density_decode": f(self.decode_read) / f(self.decode_causal) if self.decode_layer_steps else 1.0,
            "prefill_tokens": self.prefill_tokens,
            "decode_steps": steps,
        }


class Session:
    """Policy + backend applied to one model. Makes caches and runs every attention call."""

    def __init__(self, arch: ModelArch, policy, backend):
        self.arch = arch
        self.policy = policy
        self.backend = backend
        self.spec = policy.store_spec()
        self.stats = KVStats()
        self.probe = None  # optional observer of every attention call (see sparsebench.evals.fidelity)

    @contextmanager
    def swapped(self, policy, backend=None):
        """Run another policy (e.g. `full` as a reference) on this session for a while; caches made
        meanwhile follow it, and its KV accounting is kept apart."""
        saved = (self.policy, self.backend, self.spec, self.stats, self.probe)
        if policy.arch != self.arch:
            policy.setup(self.arch)
        self.policy, self.spec, self.stats, self.probe = policy, policy.store_spec(), KVStats(), None
        self.backend = backend or self.backend
        try:
            yield self
        finally:
            self.policy, self.backend, self.spec, self.stats, self.probe = saved

    def new_cache(self) -> SparseKVCache:
        self.stats.new_sequence()
        return SparseKVCache(self, self.arch.n_layers, self.arch.n_kv_heads, self.arch.head_dim, self.spec)

    def pre_hook(self, module, args, kwargs):
        cache = kwargs.get("past_key_values")
        if not isinstance(cache, SparseKVCache):
            if cache is not None and cache.get_seq_length() > 0:
                raise ValueError("a non-sparsebench cache that already holds tokens was passed inside attach()")
            cache = self.new_cache()
            kwargs["past_key_values"] = cache
        elif cache.session is not self:
            raise ValueError("this cache belongs to another sparsebench session")
        kwargs["sparsebench_kv"] = cache
        return args, kwargs

    # ------------------------------------------------------------------ the attention call
    def attend(self, cache: SparseKVCache, layer: int, q, k, v, mask2d, scaling: float) -> torch.Tensor:
        store = cache.layer(layer)
        B, Hq, L, D = q.shape
        valid = None if mask2d is None else mask2d[:, -L:].bool()
        if not store.is_initialized:
            store._init(B, k.dtype, k.device)
        if store.seen == 0:
            out = self._prefill(layer, store, q, k, v, valid, scaling)
        else:
            outs = [self._decode(layer, store, q[:, :, t], k[:, :, t], v[:, :, t],
                                 None if valid is None else valid[:, t], scaling) for t in range(L)]
            out = torch.stack(outs, dim=2)
        store.seen += L
        return out.transpose(1, 2)

    def _prefill(self, layer, store, q, k, v, valid, scaling):
        B, Hq, L, D = q.shape
        Hkv = k.shape[1]
        valid_t = torch.ones(B, L, dtype=torch.bool, device=q.device) if valid is None else valid
        pos = torch.where(valid_t, torch.cumsum(valid_t, 1) - 1, torch.full_like(valid_t, -1, dtype=torch.long))
        lengths = valid_t.sum(1)
        plan = self.policy.prefill_plan(layer, L)
        out = self.backend.prefill(q, k, v, plan, valid, scaling)
        ctx = PrefillContext(q, k, valid_t, pos, lengths, scaling)
        if self.probe is not None:
            self.probe.on_prefill(layer, ctx, v)
        keep = self.policy.prefill_keep(layer, ctx, store)
        if keep is None:
            keep = keep_indices(valid_t.unsqueeze(1).expand(-1, Hkv, -1))
        idx = keep.clamp(min=0).unsqueeze(-1).expand(-1, -1, -1, D)
        slots = torch.where(keep >= 0, torch.arange(keep.shape[-1], device=q.device), torch.full_like(keep, -1))
        store.write(k.gather(2, idx), v.gather(2, idx), pos.unsqueeze(1).expand(-1, Hkv, -1).gather(2, keep.clamp(min=0)),
                    slots)
        store.logical_len += lengths
        st = self.stats
        for n in lengths.tolist():
            pairs, causal = plan.pairs_computed(n)
            st.prefill_pairs += pairs
            st.prefill_causal += causal
            st.prefill_tokens += n if layer == 0 else 0
        st.held(layer, store)
        return out

    def _decode(self, layer, store, q, k, v, valid, scaling):
        B, Hkv = q.shape[0], k.shape[1]
        new_pos = store.logical_len.clone()
        slot = self.policy.decode_slots(layer, store, new_pos)  # [B, Hkv]
        if valid is not None:
            slot = torch.where(valid.unsqueeze(1), slot, torch.full_like(slot, -1))
        store.write(k.unsqueeze(2), v.unsqueeze(2), new_pos.view(-1, 1, 1).expand(-1, Hkv, 1), slot.unsqueeze(-1))
        store.logical_len += 1 if valid is None else valid.long()
        plan = self.policy.decode_plan(layer, q, store)
        out, results = self.backend.decode(q, store, plan, scaling)
        if plan.want_probs:
            self.policy.observe(layer, store, plan, results, q, scaling)
        if self.probe is not None:
            self.probe.on_decode(layer, q, k, store, plan, scaling)
        self._count_decode(layer, store, plan)
        return out

    def _count_decode(self, layer: int, store, plan: DecodePlan) -> None:
        st = self.stats
        G = self.arch.group
        n = store.logical_len.view(-1, 1)
        bpt = store.bytes_per_token()
        read = 0
        for grp in plan.groups:
            tokens, rows_are_q = tokens_read(store, grp.heads, grp.sel)
            per_q = tokens if rows_are_q else tokens * G
            read = read + per_q.sum()
            st.decode_bytes = st.decode_bytes + tokens.sum() * bpt
        st.decode_read = st.decode_read + read
        st.decode_causal = st.decode_causal + n.sum() * self.arch.n_heads
        if plan.summary_bytes is not None:
            st.decode_bytes = st.decode_bytes + plan.summary_bytes.sum()
        st.decode_layer_steps += 1
        st.held(layer, store)


def tokens_read(store, heads: tuple[int, ...], sel) -> tuple[torch.Tensor, bool]:
    """Tokens a selection reads: ([B, R] per stream row, rows are query heads?)."""
    h = list(heads)
    n_held = store.n_held[:, h]
    if isinstance(sel, AllHeld):
        return n_held, False
    if isinstance(sel, Window):
        n = store.logical_len.view(-1, 1)
        sink = torch.clamp(n, max=sel.sink)
        if sel.page is None:
            local = torch.clamp(n - sel.sink, min=0, max=sel.window)
        else:
            first = torch.clamp(((n - 1) // sel.page - sel.window // sel.page + 1) * sel.page, min=sel.sink)
            local = torch.clamp(n - first, min=0)
        return torch.minimum(sink + local, n_held), False
    idx = sel.idx
    if idx.shape[1] == 1:
        idx = idx.expand(-1, len(h), -1)
    R = idx.shape[1]
    kv = torch.tensor(h, device=idx.device)
    if R != len(h):
        kv = kv.repeat_interleave(R // len(h))
    held = store.n_held[:, kv].unsqueeze(-1)
    if isinstance(sel, Pages):
        filled = (held - idx * store.page).clamp(min=0, max=store.page)
        count = torch.where(idx >= 0, filled, torch.zeros_like(filled)).sum(-1)
    else:
        count = ((idx >= 0) & (idx < held)).sum(-1)
    return count, R != len(h)


@contextmanager
def attach(model, policy, backend="reference", arch: ModelArch | None = None):
    """Run `model` under `policy` on `backend` (a name or a Backend) until the block exits."""
    from sparsebench.kernels import make_backend

    register()
    arch = arch or ModelArch.from_hf_config(model.config)
    if policy.arch != arch:
        policy.setup(arch)
    if isinstance(backend, str):
        backend = make_backend(backend, policy, next(model.parameters()).device)
    from sparsebench.rope import model_inv_freq

    backend.rope_inv_freq = model_inv_freq(model)
    session = Session(arch, policy, backend)
    previous = model.config._attn_implementation
    model.set_attn_implementation(ATTN_NAME)
    handle = model.register_forward_pre_hook(session.pre_hook, with_kwargs=True)
    try:
        yield session
    finally:
        handle.remove()
        model.set_attn_implementation(previous)
