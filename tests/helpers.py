"""Shared test helpers: a session on random tensors, and running the CLI."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import torch

from sparsebench.arch import ModelArch
from sparsebench.attention import Session
from sparsebench.kernels import make_backend
from sparsebench.policies import make_policy

REPO = Path(__file__).resolve().parent.parent


def session_for(policy_cfg, n_layers=2, hq=8, hkv=2, d=16, backend="reference"):
    arch = ModelArch("t", n_layers, hq, hkv, d, 1 << 20)
    policy = make_policy(policy_cfg)
    policy.setup(arch)
    s = Session(arch, policy, make_backend(backend, policy, "cpu"))
    return s, s.new_cache(), arch


class Feeder:
    """Feeds random tokens to one layer of a session: a prefill, then decode steps."""

    def __init__(self, session, cache, arch, batch=1, layer=0, seed=0):
        self.s, self.c, self.a, self.b, self.layer = session, cache, arch, batch, layer
        self.g = torch.Generator().manual_seed(seed)
        self.scale = 1 / math.sqrt(arch.head_dim)

    def _rand(self, h, n):
        return torch.randn(self.b, h, n, self.a.head_dim, generator=self.g)

    def prefill(self, n):
        a = self.a
        return self.s.attend(self.c, self.layer, self._rand(a.n_heads, n), self._rand(a.n_kv_heads, n),
                             self._rand(a.n_kv_heads, n), None, self.scale)

    def step(self):
        a = self.a
        return self.s.attend(self.c, self.layer, self._rand(a.n_heads, 1), self._rand(a.n_kv_heads, 1),
                             self._rand(a.n_kv_heads, 1), None, self.scale)


def cli(*args, cwd=None, env=None, timeout=600):
    """Run the sparsebench command; returns CompletedProcess (text)."""
    exe = Path(sys.executable).parent / "sparsebench"
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run([str(exe), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
