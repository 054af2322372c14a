"""`sdpa`: PyTorch scaled_dot_product_attention (cuDNN / flash on GPU), dense plans only.

The baseline for `full`. Prefill calls SDPA with `is_causal`; decode gathers the held
tokens of every stream and calls SDPA once (a dense read of the cache, as the dense
baseline does). Any sparse plan is refused before the model loads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sparsebench.kernels.base import BACKENDS, Backend, selection_slots
from sparsebench.kernels.reference import prefill_rows
from sparsebench.plans import AllHeld


def _dense_row(q, k, v, plan, scaling):
    if not plan.is_dense:
        raise ValueError("backend=sdpa runs dense plans only")
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling, enable_gqa=True)


@BACKENDS.register("sdpa")
class SdpaBackend(Backend):
    name = "sdpa"

    @classmethod
    def check(cls, policy) -> str | None:
        if not getattr(policy, "dense", False):  # (dense policies never re-rotate keys)
            return (f"a backend that runs policy={policy.name}: reference, auto (or flex / triton on GPU); "
                    "sdpa runs dense attention only (policy=full)")
        return None

    def prefill(self, q, k, v, plan, valid, scaling):
        return prefill_rows(q, k, v, plan, valid, scaling, row_fn=_dense_row)

    def decode(self, q, store, plan, scaling):
        if plan.want_probs or any(not isinstance(g.sel, AllHeld) for g in plan.groups):
            raise ValueError("backend=sdpa runs dense plans only")
        B, Hq, D = q.shape
        slots, kv, _ = selection_slots(store, tuple(range(store.h)), AllHeld(), Hq // store.h)
        k, v, _ = store.gather_tokens(store.flat_slots(slots, kv))  # [B, Hkv, S, D]
        mask = (slots >= 0).unsqueeze(2)  # [B, Hkv, 1, S] -> broadcast over query heads
        mask = mask.repeat_interleave(Hq // store.h, dim=1)
        out = F.scaled_dot_product_attention(q.unsqueeze(2), k, v, attn_mask=mask, scale=scaling, enable_gqa=True)
        return out.squeeze(2), None
