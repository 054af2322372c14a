"""Haystack text, offline: English prose shipped with Python (pydoc_data), the RULER noise line,
or a user directory of .txt files. Deterministic: the same source always gives the same text."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from sparsebench.errors import ConfigError

NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "


@lru_cache(maxsize=4)
def haystack_text(source: str = "pydoc") -> str:
    """`pydoc` | `noise` | a directory of .txt files (sorted by name)."""
    if source == "pydoc":
        from pydoc_data.topics import topics

        return "\n\n".join(topics[k].strip() for k in sorted(topics))
    if source == "noise":
        return NOISE * 2000
    d = Path(source).expanduser()
    files = sorted(d.glob("*.txt")) if d.is_dir() else []
    if not files:
        raise ConfigError("task.haystack", source, "pydoc, noise or a directory holding .txt files")
    return "\n\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files)


def haystack_ids(tokenizer, source: str, n_tokens: int) -> list[int]:
    """At least n_tokens token ids of the haystack, the text repeated as often as needed."""
    key = (id(tokenizer), source)
    if key not in _CACHE:  # the tokenizer is kept in the value so its id is never reused
        _CACHE[key] = (tokenizer, tokenizer(haystack_text(source), add_special_tokens=False)["input_ids"])
    ids = _CACHE[key][1]
    reps = -(-n_tokens // max(len(ids), 1))
    return (ids * max(reps, 1))[:n_tokens]


_CACHE: dict = {}
