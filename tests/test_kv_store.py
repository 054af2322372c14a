"""The paged store: bounded memory where the policy says so, incremental page summaries, page ownership."""

from __future__ import annotations

import pytest
import torch

from helpers import Feeder, session_for

ALL_STREAMING = [[0.0, 0.0]] * 2


@pytest.mark.parametrize("policy", [
    {"name": "streaming_heads", "gates": ALL_STREAMING, "sparsity": 1.0, "sink": 64, "local": 256},
    {"name": "lserve", "gates": ALL_STREAMING, "sparsity": 1.0, "prefill_local": 512},
])
def test_streaming_heads_hold_constant_bytes_from_1k_to_8k(policy):
    held, allocated = [], []
    for n in (1024, 2048, 4096, 8192):
        s, cache, arch = session_for(policy)
        f = Feeder(s, cache, arch)
        f.prefill(n)
        for _ in range(5):
            f.step()
        layer = cache.layer(0)
        held.append(float(layer.held_bytes()))
        allocated.append(layer.allocated_bytes())
    assert len(set(held)) == 1, held
    assert len(set(allocated)) == 1, allocated
    tokens = 64 + 256 if policy["name"] == "streaming_heads" else 128 + 256  # sink + local per KV head
    kv = tokens * 2 * 2 * 16 * 4  # x 2 KV heads x (K, V) x dim 16 x fp32
    # lserve keeps key min / max per 16-token logical page for the pages a stream owns (6 pages of 64)
    summaries = 0 if policy["name"] == "streaming_heads" else 2 * 6 * 4 * 2 * 16 * 4
    assert held[0] == kv + summaries


def test_lserve_streaming_heads_constant_while_retrieval_heads_grow():
    gates = [[0.0, 1.0]] * 2  # KV head 0 streams, head 1 retrieves
    rows = []
    for n in (1024, 4096, 8192):
        s, cache, arch = session_for({"name": "lserve", "gates": gates, "sparsity": 0.5, "prefill_local": 512})
        f = Feeder(s, cache, arch)
        f.prefill(n)
        f.step()
        rows.append(cache.layer(0).n_held[0].tolist())
    assert [r[0] for r in rows] == [128 + 256] * 3
    assert [r[1] for r in rows] == [1025, 4097, 8193]


@pytest.mark.parametrize("policy,budget", [
    ({"name": "streaming_llm", "sink": 4, "window": 60}, 64),
    ({"name": "h2o", "budget": 40}, 40),
    ({"name": "h2o", "budget": 40, "heavy": 30}, 40),
])
def test_evicting_policies_never_hold_more_than_their_budget(policy, budget):
    s, cache, arch = session_for(policy)
    f = Feeder(s, cache, arch, batch=2)
    f.prefill(300)
    layer = cache.layer(0)
    seen = [int(layer.n_held.max())]
    for _ in range(100):
        f.step()
        seen.append(int(layer.n_held.max()))
    assert max(seen) <= budget
    assert seen[-1] == budget
    assert layer.used_pages * layer.page <= 2 * 2 * (-(-budget // layer.page)) * layer.page  # pages stay bounded


def test_streaming_llm_keeps_exactly_sinks_and_recent_positions():
    s, cache, arch = session_for({"name": "streaming_llm", "sink": 4, "window": 60})
    f = Feeder(s, cache, arch)
    f.prefill(200)
    for _ in range(37):
        f.step()
    layer = cache.layer(0)
    from sparsebench.policies.base import held_positions

    _, pos = held_positions(layer)
    n = 237
    want = set(range(4)) | set(range(n - 60, n))
    for h in range(2):
        assert set(p for p in pos[0, h].tolist() if p >= 0) == want


def test_page_summaries_are_min_max_of_each_logical_page():
    s, cache, arch = session_for({"name": "lserve", "gates": [[1.0, 1.0]] * 2, "budget": 128, "page_size": 32,
                                  "logical_page_size": 8})
    f = Feeder(s, cache, arch, batch=2)
    f.prefill(77)
    for _ in range(29):
        f.step()
    layer = cache.layer(0)
    kmin, kmax, valid = layer.summaries()
    slots = layer.held_slots()
    keys, _, _ = layer.gather_tokens(layer.flat_slots(slots))  # [B, H, S, D]
    n = layer.n_held
    for b in range(2):
        for h in range(2):
            for lp in range(int(valid[b, h].sum())):
                blk = keys[b, h, lp * 8 : min(int(n[b, h]), (lp + 1) * 8)]
                assert torch.equal(kmin[b, h, lp], blk.amin(0))
                assert torch.equal(kmax[b, h, lp], blk.amax(0))


def test_streams_own_disjoint_pages():
    s, cache, arch = session_for({"name": "h2o", "budget": 50})
    f = Feeder(s, cache, arch, batch=3)
    f.prefill(130)
    for _ in range(20):
        f.step()
    layer = cache.layer(0)
    pages = layer.page_table[layer.page_table >= 0].tolist()
    assert len(pages) == len(set(pages)) == layer.used_pages


def test_decode_step_writes_only_the_new_token():
    """Appending must not copy the cache: the pool tensors are the same objects, and only one slot changed."""
    s, cache, arch = session_for({"name": "full"})
    f = Feeder(s, cache, arch)
    f.prefill(100)
    layer = cache.layer(0)
    layer.reserve(200)
    before = layer.k_pool.clone()
    ptr = layer.k_pool.data_ptr()
    f.step()
    assert layer.k_pool.data_ptr() == ptr
    changed = (layer.k_pool != before).any(-1).sum().item()
    assert changed == arch.n_kv_heads  # one slot per KV head


def test_int8_kv_holds_a_quarter_of_fp32_bytes():
    held = {}
    for bits in (16, 8):
        s, cache, arch = session_for({"name": "alisa_swa", "kv_bits": bits})
        f = Feeder(s, cache, arch)
        f.prefill(2048)
        for _ in range(3):
            f.step()
        layer = cache.layer(0)
        held[bits] = float(layer.held_bytes())
        if bits == 8:
            assert layer.k_pool.dtype == torch.uint8
    tokens = 2051 * 2  # per layer: tokens x KV heads
    assert held[16] == tokens * 2 * 16 * 4  # fp32 K and V
    # one byte per element, plus per-page (scale, zero) for K and V and the full-precision open pages
    assert held[8] == tokens * 2 * 16 + 2 * 33 * 4 * 16 * 4 + 2 * 64 * 16 * 2 * 4
    assert held[8] < held[16] / 3  # 1/4 plus the page parameters and open pages
