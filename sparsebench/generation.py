"""Greedy generation with the model's forward (left padding, per-row positions, early stop), timed.

The model's own `generate` works too inside `attach`; this loop is what tasks use because
it times prefill and decode separately and keeps the step a plain forward call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass
class Generation:
    tokens: list[list[int]]  # new tokens per row (up to and excluding the stop token)
    prefill_s: float
    decode_s: float
    steps: int


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def greedy_generate(model, prompts: list[list[int]], max_new_tokens: int, stop_ids: set[int], pad_id: int,
                    min_new_tokens: int = 0) -> Generation:
    device = next(model.parameters()).device
    B, L = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    mask = torch.zeros(B, L, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, L - len(p):] = torch.tensor(p)
        mask[b, L - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    _sync(device)
    t0 = time.perf_counter()
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
    nxt = out.logits[:, -1].argmax(-1)
    _sync(device)
    t1 = time.perf_counter()
    cache = out.past_key_values
    new = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=device)
    last_pos = pos[:, -1]
    steps = 0
    for step in range(max_new_tokens):
        for b, t in enumerate(nxt.tolist()):
            if not done[b] and t in stop_ids and step >= min_new_tokens:
                done[b] = True
            elif not done[b]:
                new[b].append(t)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype, device=device)], 1)
        last_pos = last_pos + 1
        out = model(input_ids=nxt.unsqueeze(1), attention_mask=mask, position_ids=last_pos.unsqueeze(1),
                    past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        nxt = out.logits[:, -1].argmax(-1)
        steps += 1
    _sync(device)
    t2 = time.perf_counter()
    return Generation(new, t1 - t0, t2 - t1, steps)
