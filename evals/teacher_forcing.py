"""Teacher-forced scoring of a token sequence under a policy: a prefill, then decode steps.

The first `prefill` tokens go through one forward call (the policy's prefill plan applies); the
rest are fed `chunk` tokens per call, each processed by the session as consecutive decode steps,
so decode-time policies (page selection, eviction, score accumulation) apply to every scored
token, causally, row by row (ALISA's rule for teacher-forced scoring).
"""

from __future__ import annotations

from typing import Iterator

import torch

from sparsebench.evals.haystack import haystack_text


def token_stream(tokenizer, source: str) -> list[int]:
    """The source text (pydoc | noise | a directory of .txt files | a .txt file) as token ids."""
    from pathlib import Path

    p = Path(source).expanduser()
    text = p.read_text(encoding="utf-8", errors="replace") if p.is_file() else haystack_text(source)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def logits_in_chunks(model, ids: torch.Tensor, prefill: int, chunk: int, cache=None) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (start, logits [n, V] fp32) for consecutive spans of ids [1, L]; logits[i] predicts ids[start + i + 1].
    `cache` (a dict) receives the cache under key "kv" so a caller can run two models in lockstep."""
    L = ids.shape[1]
    device = next(model.parameters()).device
    ids = ids.to(device)
    P = L if prefill < 0 else max(1, min(prefill, L))
    out = model(input_ids=ids[:, :P], use_cache=True)
    kv = out.past_key_values
    yield 0, out.logits[0].float()
    for c0 in range(P, L, chunk):
        c1 = min(L, c0 + chunk)
        out = model(input_ids=ids[:, c0:c1], past_key_values=kv, use_cache=True,
                    position_ids=torch.arange(c0, c1, device=device).unsqueeze(0))
        kv = out.past_key_values
        yield c0, out.logits[0].float()
    if cache is not None:
        cache["kv"] = kv


def span_nll(logits: torch.Tensor, ids: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token negative log-likelihood of the targets each logit row predicts (the last row of the
    sequence has no target). Returns (nll [m], target positions [m])."""
    L = ids.shape[1]
    n = min(logits.shape[0], L - 1 - start)
    targets = ids[0, start + 1 : start + 1 + n].to(logits.device)
    logp = torch.log_softmax(logits[:n], dim=-1)
    return -logp.gather(1, targets.unsqueeze(1)).squeeze(1), torch.arange(start + 1, start + 1 + n)
