"""Kernel backends: reference, sdpa (and flex, triton on GPU), plus `auto`.

`make_backend(name, policy, device)` resolves `auto` and checks the pair before any
model loads; it is the only way the rest of sparsebench gets a backend.
"""

from __future__ import annotations

import torch

from sparsebench.errors import ConfigError
from sparsebench.kernels.base import BACKENDS, Backend
from sparsebench.kernels import reference, sdpa  # noqa: F401  (register)

# `auto` tries these in order and takes the first that is available on the device and
# runs the policy's plans (flex and triton register themselves when importable).
AUTO_ORDER = {"cuda": ["triton", "sdpa", "flex", "reference"], "cpu": ["sdpa", "reference"]}


def _optional_backends() -> None:
    for mod in ("triton_backend", "flex"):
        try:
            __import__(f"sparsebench.kernels.{mod}")
        except ImportError:
            pass


def resolve_backend_name(name: str, policy, device: torch.device) -> str:
    _optional_backends()
    if name == "auto":
        for cand in AUTO_ORDER.get(device.type, ["reference"]):
            if cand in BACKENDS and BACKENDS.get(cand).available(device) is None and BACKENDS.get(cand).check(policy) is None:
                return cand
        return "reference"
    cls = BACKENDS.get(name)  # ConfigError naming backend.name when unknown
    why = cls.available(device) or cls.check(policy)
    if why:
        raise ConfigError("backend.name", name, why)
    return name


def make_backend(name: str, policy, device: torch.device | str = "cpu", **options) -> Backend:
    device = torch.device(device)
    resolved = resolve_backend_name(name, policy, device)
    return BACKENDS.get(resolved)(device=device, **options)


def backend_names() -> list[str]:
    _optional_backends()
    return ["auto", *BACKENDS.names()]
