"""Every policy on the reference backend against an independent brute-force oracle (tests/bruteforce.py).

GQA (8 query / 2 KV heads), batch 2 with different lengths (left padding), lengths that are not
multiples of any page size, fp32 inputs, a prefill then decode steps: max abs error < 1e-5.
"""

from __future__ import annotations

import math

import pytest
import torch

import bruteforce as bf
from sparsebench.arch import ModelArch
from sparsebench.attention import Session
from sparsebench.kernels import make_backend
from sparsebench.policies import make_policy

HQ, HKV, D = 8, 2, 16
G = HQ // HKV
LENGTHS = (45, 37)  # prompt tokens per row; row 1 is left-padded
STEPS = 23
N_LAYERS = 4
SCALE = 1 / math.sqrt(D)
GATES = [[0.9, 0.1], [0.2, 0.7], [0.6, 0.3], [0.1, 0.8]]  # layer x KV head


def arch():
    return ModelArch("bf", N_LAYERS, HQ, HKV, D, 4096)


def rows(seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for L in LENGTHS:
        n = L + STEPS
        out.append(tuple(torch.randn(h, n, D, generator=g) for h in (HQ, HKV, HKV)))
    return out


def run_session_on(policy_cfg, data, layer, backend="reference", device="cpu"):
    return run_session(policy_cfg, data, layer, backend, device)[0]


def run_session(policy_cfg, data, layer, backend="reference", device="cpu"):
    """Drive one layer exactly as a model would: a left-padded prefill chunk, then one token per call."""
    policy = make_policy(policy_cfg)
    policy.setup(arch())
    session = Session(arch(), policy, make_backend(backend, policy, device))
    cache = session.new_cache()
    Lmax = max(LENGTHS)
    B = len(LENGTHS)
    dt = data[0][0].dtype
    q = torch.zeros(B, HQ, Lmax, D, device=device, dtype=dt)
    k = torch.zeros(B, HKV, Lmax, D, device=device, dtype=dt)
    v = torch.zeros(B, HKV, Lmax, D, device=device, dtype=dt)
    mask = torch.zeros(B, Lmax, dtype=torch.bool, device=device)
    for b, (L, (Q, K, V)) in enumerate(zip(LENGTHS, data)):
        q[b, :, Lmax - L :], k[b, :, Lmax - L :], v[b, :, Lmax - L :] = Q[:, :L], K[:, :L], V[:, :L]
        mask[b, Lmax - L :] = True
    outs = [session.attend(cache, layer, q, k, v, mask, SCALE)]  # [B, L, Hq, D]
    for t in range(STEPS):
        qt = torch.stack([Q[:, L + t] for L, (Q, _, _) in zip(LENGTHS, data)]).unsqueeze(2)
        kt = torch.stack([K[:, L + t] for L, (_, K, _) in zip(LENGTHS, data)]).unsqueeze(2)
        vt = torch.stack([V[:, L + t] for L, (_, _, V) in zip(LENGTHS, data)]).unsqueeze(2)
        mask = torch.cat([mask, torch.ones(B, 1, dtype=torch.bool, device=device)], 1)
        outs.append(session.attend(cache, layer, qt, kt, vt, mask, SCALE))
    per_row = []
    for b, L in enumerate(LENGTHS):
        pre = outs[0][b, Lmax - L :]
        dec = torch.cat([o[b] for o in outs[1:]], 0)
        per_row.append(torch.cat([pre, dec], 0))  # [N, Hq, D]
    return per_row, session, cache


CASES = {
    "full": ({"name": "full"}, lambda kw: bf.Oracle(**kw)),
    "streaming_llm": ({"name": "streaming_llm", "sink": 4, "window": 13},
                      lambda kw: bf.StreamingLLM(4, 13, **kw)),
    "streaming_heads": ({"name": "streaming_heads", "gates": GATES, "sparsity": 0.5, "sink": 3, "local": 10,
                         "prefill_sink": 2, "prefill_local": 20},
                        lambda kw: bf.StreamingHeads(bf.binarize_ref(GATES, 0.5)[kw["layer"]], 3, 10, 2, 20, **kw)),
    "streaming_heads_page": ({"name": "streaming_heads", "gates": GATES, "sparsity": 0.5, "sink": 3, "local": 16,
                              "granularity": "page", "page_size": 8},
                             lambda kw: bf.StreamingHeads(bf.binarize_ref(GATES, 0.5)[kw["layer"]], 3, 16, 3, 16,
                                                          page=8, **kw)),
    "quest": ({"name": "quest", "page_size": 4, "budget": 16, "dense_layers": [0]},
              lambda kw: bf.Quest(4, 16, dense_layers=(0,), **kw)),
    "quest_sum": ({"name": "quest", "page_size": 4, "budget": 12, "gqa_reduce": "sum", "dense_layers": []},
                  lambda kw: bf.Quest(4, 12, reduce="sum", **kw)),
    "lserve": ({"name": "lserve", "gates": GATES, "sink": 4, "local": 12, "prefill_sink": 2, "prefill_local": 24,
                "page_size": 8, "logical_page_size": 4, "budget": 24, "reuse_interval": 3},
               lambda kw: bf.LServe(8, 4, 24, 3, retrieval=bf.binarize_ref(GATES, 0.5)[kw["layer"]], sink=4, local=12,
                                    psink=2, plocal=24, **kw)),
    "alisa_swa": ({"name": "alisa_swa", "caching_ratio": 0.3}, lambda kw: bf.Alisa(0.3, **kw)),
    "alisa_swa_window": ({"name": "alisa_swa", "caching_ratio": 0.25, "score_window": 5},
                         lambda kw: bf.Alisa(0.25, score_window=5, **kw)),
    "alisa_swa_int8": ({"name": "alisa_swa", "caching_ratio": 0.3, "kv_bits": 8, "page_size": 16},
                       lambda kw: bf.Alisa(0.3, int8_page=16, **kw)),
    "h2o": ({"name": "h2o", "budget": 20}, lambda kw: bf.H2O(10, 10, **kw)),
    "h2o_skewed": ({"name": "h2o", "budget": 18, "heavy": 12}, lambda kw: bf.H2O(12, 6, **kw)),
    "snapkv": ({"name": "snapkv", "budget": 24, "window": 6, "kernel": 5}, lambda kw: bf.SnapKV(24, 6, 5, **kw)),
    "pyramidkv": ({"name": "pyramidkv", "budget": 24, "window": 4, "kernel": 7},
                  lambda kw: bf.SnapKV(24, 4, 7, beta=20, **kw)),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("layer", [0, 2])
def test_policy_matches_bruteforce(case, layer):
    cfg, make_oracle = CASES[case]
    data = rows(seed=layer)
    got, _, _ = run_session(cfg, data, layer)
    for b, (L, (Q, K, V)) in enumerate(zip(LENGTHS, data)):
        oracle = make_oracle({"G": G, "scale": SCALE, "layer": layer, "n_layers": N_LAYERS})
        want = oracle.run(Q, K, V, L)
        err = (got[b].double() - want).abs().max().item()
        assert err < 1e-5, f"{case} layer {layer} row {b}: max abs error {err:.2e}"


SPARSE_WITH_BUDGET = {
    "streaming_llm": {"name": "streaming_llm", "sink": 4, "window": 10_000},
    "streaming_heads": {"name": "streaming_heads", "gates": GATES, "local": 10_000},
    "quest": {"name": "quest", "page_size": 4, "budget": 4096, "dense_layers": []},
    "lserve": {"name": "lserve", "gates": GATES, "local": 10_000, "budget": 4096, "page_size": 8,
               "logical_page_size": 4},
    "alisa_swa": {"name": "alisa_swa", "caching_ratio": 1.0},
    "h2o": {"name": "h2o", "budget": 4096},
    "snapkv": {"name": "snapkv", "budget": 4096},
    "pyramidkv": {"name": "pyramidkv", "budget": 4096},
}


@pytest.mark.parametrize("case", sorted(SPARSE_WITH_BUDGET))
def test_budget_covering_cache_gives_exactly_full(case):
    data = rows(seed=7)
    full, _, _ = run_session({"name": "full"}, data, layer=1)
    got, _, _ = run_session(SPARSE_WITH_BUDGET[case], data, layer=1)
    for a, b in zip(got, full):
        assert torch.equal(a, b), f"{case}: max abs diff {(a - b).abs().max().item():.3e}"


def test_sparse_policies_really_are_sparse():
    """The oracle comparison above would pass vacuously if every policy degraded to dense: check density."""
    data = rows(seed=3)
    for case in ["streaming_llm", "quest", "lserve", "alisa_swa", "h2o", "snapkv"]:
        _, session, _ = run_session(CASES[case][0], data, layer=2)
        s = session.stats.summary(N_LAYERS)
        assert s["density_decode"] < 0.9, (case, s)


def test_streaming_llm_cache_positions_matches_bruteforce():
    """positions=cache: the model hands keys rotated at their text positions; they must be re-rotated to
    their index in the cache (sinks, then the window), the query to the last index."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, D, 2).double() / D))
    raw = rows(seed=11)
    fed = []
    for L, (Q, K, V) in zip(LENGTHS, raw):
        n = Q.shape[1]
        fed.append((bf.rope(Q, torch.arange(n), inv_freq).float(), bf.rope(K, torch.arange(n), inv_freq).float(), V))
    cfg = {"name": "streaming_llm", "sink": 3, "window": 11, "positions": "cache"}
    import sparsebench.kernels.reference as ref_mod

    orig = ref_mod.ReferenceBackend.__init__

    def init(self, *a, **k):
        orig(self, *a, **k)
        self.rope_inv_freq = inv_freq.float()

    ref_mod.ReferenceBackend.__init__ = init
    try:
        got, _, _ = run_session(cfg, fed, layer=1)
    finally:
        ref_mod.ReferenceBackend.__init__ = orig
    for b, (L, (Q, K, V)) in enumerate(zip(LENGTHS, raw)):
        want = bf.streaming_cache_positions(Q, K, V, L, 3, 11, G, SCALE, inv_freq)
        err = (got[b].double() - want).abs().max().item()
        assert err < 1e-5, f"row {b}: {err:.2e}"
        plain = bf.StreamingLLM(3, 11, G=G, scale=SCALE).run(fed[b][0], fed[b][1], V, L)
        assert (got[b].double() - plain).abs().max().item() > 1e-3  # cache positions really change the result
