"""Head patterns: which KV heads are retrieval (full) heads and which are streaming heads.

File format (DuoAttention's, so released patterns load directly): a directory with
`full_attention_heads.tsv`, one row per layer and one tab-separated float gate per KV
head (values may be slightly negative: they are clipped), plus a `config.json`.
Binarisation follows DuoAttention: clip to [0, 1], add uniform noise in [0, 1e-6) from a
seeded generator to break ties, threshold at the `sparsity` quantile of all gates
(2 when sparsity >= 1, -1 when sparsity <= 0); gates >= threshold are retrieval heads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

PATTERN_FILE = "full_attention_heads.tsv"


def pattern_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p / PATTERN_FILE if p.is_dir() else p


def load_gates(path: str | os.PathLike) -> np.ndarray:
    """[n_layers, n_kv_heads] float gates from a pattern directory or tsv file."""
    return np.loadtxt(pattern_file(path), delimiter="\t", ndmin=2, dtype=np.float64)


def save_gates(directory: str | os.PathLike, gates: np.ndarray, meta: dict | None = None) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    np.savetxt(d / PATTERN_FILE, np.asarray(gates, dtype=np.float64), delimiter="\t")
    (d / "config.json").write_text(json.dumps(meta or {}, indent=2, sort_keys=True) + "\n")
    return d / PATTERN_FILE


def binarize(gates: np.ndarray, sparsity: float, seed: int = 42) -> np.ndarray:
    """Retrieval-head mask [n_layers, n_kv_heads]: about (1 - sparsity) of the heads are True."""
    g = np.clip(np.asarray(gates, dtype=np.float64), 0.0, 1.0)
    g = g + np.random.RandomState(seed).uniform(0.0, 1e-6, size=g.shape)
    if sparsity >= 1:
        threshold = 2.0
    elif sparsity <= 0:
        threshold = -1.0
    else:
        threshold = float(np.quantile(g, sparsity))
    return g >= threshold
