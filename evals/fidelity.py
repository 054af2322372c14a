"""fidelity: how far a sparse policy's model is from the same model with full attention, on the same input.

Teacher-forced sequences (as `ppl`): the full-attention model and the policy's model run in
lockstep, chunk by chunk, each with its own cache. Per decode position: KL(full || sparse) of the
next-token distributions and top-1 agreement. Per layer: attention recall, the share of the
dense softmax mass (the query against every key seen so far, evicted ones included) that the
keys the policy actually read hold. Cheap, needs no references, and explains accuracy drops.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsebench.errors import ConfigError
from sparsebench.evals.base import TASKS, Runtime, Sample, Task, TaskConfig
from sparsebench.evals.ppl import sequences
from sparsebench.evals.teacher_forcing import logits_in_chunks


@dataclass
class FidelityConfig(TaskConfig):
    name: str = "fidelity"
    source: str = "pydoc"
    length: int = 2048
    num_samples: int = 2
    prefill: int = 1024  # tokens run as a prefill; the rest are scored as decode steps
    chunk: int = 128


class RecallProbe:
    """Session probe: keeps every key each layer saw (a dense shadow of the cache) and, at each decode
    step, the share of the dense attention mass on the tokens the plan read."""

    def __init__(self, n_layers: int):
        self.keys: dict[int, torch.Tensor] = {}  # layer -> [B, Hkv, n, D] in logical order
        self.sum = [0.0] * n_layers
        self.count = [0] * n_layers

    def on_prefill(self, layer, ctx, v) -> None:
        if not bool(ctx.valid.all()):
            raise NotImplementedError("the recall probe runs on unpadded batches")
        self.keys[layer] = ctx.k.detach().clone()

    def on_decode(self, layer, q, k_new, store, plan, scaling) -> None:
        from sparsebench.kernels.base import selection_slots

        K = torch.cat([self.keys[layer], k_new.unsqueeze(2)], dim=2)  # [B, Hkv, n, D]
        self.keys[layer] = K
        B, Hq, D = q.shape
        G = Hq // K.shape[1]
        n = K.shape[2]
        scores = torch.einsum("bhgd,bhnd->bhgn", q.view(B, -1, G, D).float(), K.float()) * scaling
        dense = torch.softmax(scores, dim=-1).view(B, Hq, n)
        read = torch.zeros(B, Hq, n, dtype=torch.bool, device=q.device)
        for grp in plan.groups:
            slots, kv, per = selection_slots(store, grp.heads, grp.sel, G)
            _, _, pos = store.gather_tokens(store.flat_slots(slots, kv))
            hit = torch.zeros(B, slots.shape[1], n, dtype=torch.bool, device=q.device)
            hit.scatter_(-1, pos.clamp(min=0), pos >= 0)
            q_heads = [h * G + g for h in grp.heads for g in range(G)]
            read[:, q_heads] = hit.repeat_interleave(G // per, dim=1)
        recall = (dense * read).sum(-1)  # [B, Hq]
        self.sum[layer] += float(recall.sum())
        self.count[layer] += recall.numel()

    def per_layer(self) -> list[float]:
        return [s / c if c else float("nan") for s, c in zip(self.sum, self.count)]


@TASKS.register("fidelity")
class Fidelity(Task):
    Config = FidelityConfig
    primary = "top1"

    def validate(self, arch, model_cfg) -> None:
        c = self.cfg
        if not 0 <= c.prefill < c.length:
            raise ConfigError("task.prefill", c.prefill, f"in [0, task.length={c.length})")
        if c.length > arch.max_positions and not model_cfg.allow_extrapolation:
            raise ConfigError("task.length", c.length, f"<= {arch.max_positions} (or model.allow_extrapolation=true)")

    def max_context(self) -> int:
        return self.cfg.length

    def samples(self, tokenizer) -> list[Sample]:
        seqs = sequences(tokenizer, self.cfg.source, self.cfg.length, self.cfg.num_samples, self.seed)
        return [Sample(f"seq{i}", ids, [], {}) for i, ids in enumerate(seqs)]

    def run_sample(self, sample: Sample, rt: Runtime) -> dict:
        from sparsebench.policies import make_policy

        ids = torch.tensor([sample.prompt_ids])
        c = self.cfg
        probe = RecallProbe(rt.session.arch.n_layers)
        with rt.session.swapped(make_policy({"name": "full"})):
            dense_iter = logits_in_chunks(rt.model, ids, c.prefill, c.chunk)
            dense_first = next(dense_iter)  # the prefill (full attention)
        rt.session.probe = probe
        try:
            sparse_iter = logits_in_chunks(rt.model, ids, c.prefill, c.chunk)
            next(sparse_iter)
            kl_sum, agree, n = 0.0, 0, 0
            while True:
                with rt.session.swapped(make_policy({"name": "full"})):
                    d = next(dense_iter, None)
                if d is None:
                    break
                s = next(sparse_iter)
                logp_d = torch.log_softmax(d[1], -1)
                logp_s = torch.log_softmax(s[1], -1)
                kl_sum += float((logp_d.exp() * (logp_d - logp_s)).sum())
                agree += int((logp_d.argmax(-1) == logp_s.argmax(-1)).sum())
                n += d[1].shape[0]
        finally:
            rt.session.probe = None
        del dense_first
        return {"kl_sum": kl_sum, "top1_agree": agree, "positions": n, "kl": kl_sum / max(n, 1),
                "top1": agree / max(n, 1), "recall_per_layer": probe.per_layer()}

    def aggregate(self, rows: list[dict]) -> dict:
        n = sum(r["positions"] for r in rows)
        layers = len(rows[0]["recall_per_layer"]) if rows else 0
        recall = [sum(r["recall_per_layer"][i] for r in rows) / len(rows) for i in range(layers)]
        out = {"kl": sum(r["kl_sum"] for r in rows) / max(n, 1), "top1": sum(r["top1_agree"] for r in rows) / max(n, 1),
               "recall_mean": sum(recall) / max(len(recall), 1), "n_samples": len(rows), "positions": n}
        out.update({f"recall_L{i}": x for i, x in enumerate(recall)})
        return out
