"""Rotary position helpers: move an already-rotated vector to another position.

RoPE (rotate_half form, as Llama, Mistral and Qwen apply it) rotates channel pairs (i, i + D/2)
by angle pos * inv_freq[i]; rotations compose, so a key stored at position p moves to position c
by rotating it c - p more. StreamingLLM's `positions: cache` uses this to give cached keys their
index inside the cache instead of their position in the text.
"""

from __future__ import annotations

import torch


def rotate(x: torch.Tensor, delta: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """x [..., D] rotated by `delta` [...] more positions (fp32 math, x's dtype out)."""
    ang = delta.unsqueeze(-1).double() * inv_freq.double().to(x.device)
    cos = torch.cat([ang, ang], -1).cos()
    sin = torch.cat([ang, ang], -1).sin()
    half = x.shape[-1] // 2
    xd = x.double()
    rot = torch.cat([-xd[..., half:], xd[..., :half]], -1)
    return (xd * cos + rot * sin).to(x.dtype)


def model_inv_freq(model) -> torch.Tensor | None:
    """The model's RoPE inverse frequencies [D/2], if it has a rotary embedding."""
    for m in model.modules():
        f = getattr(m, "inv_freq", None)
        if isinstance(f, torch.Tensor):
            return f.detach()
    return None
