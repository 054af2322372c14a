"""Backends against the reference on random inputs (CPU here; GPU backends add their own gpu-marked tests)."""

from __future__ import annotations

import pytest
import torch

from helpers import Feeder, session_for
from sparsebench.errors import ConfigError
from sparsebench.kernels import make_backend, resolve_backend_name
from sparsebench.policies import make_policy


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_sdpa_matches_reference_for_full(dtype, tol):
    outs = {}
    for backend in ("reference", "sdpa"):
        s, cache, arch = session_for({"name": "full"}, backend=backend)
        f = Feeder(s, cache, arch, batch=2, seed=5)
        f._rand_orig = f._rand
        f._rand = lambda h, n, f=f: f._rand_orig(h, n).to(dtype)
        res = [f.prefill(77)] + [f.step() for _ in range(9)]
        outs[backend] = torch.cat(res, 1).float()
    ref, got = outs["reference"], outs["sdpa"]
    rel = (got - ref).norm() / ref.norm()
    assert rel < tol, rel
    assert not torch.isnan(got).any()


def test_sdpa_refuses_sparse_policies_and_auto_picks_one_that_runs():
    lserve = make_policy({"name": "lserve"})
    with pytest.raises(ConfigError) as e:
        make_backend("sdpa", lserve, "cpu")
    assert "backend.name" in str(e.value)
    assert resolve_backend_name("auto", lserve, torch.device("cpu")) == "reference"
    assert resolve_backend_name("auto", make_policy({"name": "full"}), torch.device("cpu")) == "sdpa"


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        make_backend("nope", make_policy({"name": "full"}), "cpu")
    assert e.value.key == "backend.name" and e.value.value == "nope"
