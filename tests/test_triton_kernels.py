"""Triton backend against the reference backend on random inputs, every policy, prefill and decode.

On the CPU these run under TRITON_INTERPRET=1 (set in conftest) at small sizes; the same tests run on a
GPU with the `gpu` marker variants at larger sizes (tests/test_gpu_kernels.py)."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("triton")

from test_policies_vs_bruteforce import CASES, LENGTHS, rows, run_session  # noqa: E402

from sparsebench.plans import DENSE, BlockList, PrefillPlan  # noqa: E402


def _cast(data, dtype):
    return [tuple(t.to(dtype) for t in row) for row in data]


@pytest.mark.parametrize("case", sorted(c for c in CASES if c != "alisa_swa_int8"))
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float16, 1e-2)])
def test_triton_backend_matches_reference(case, dtype, tol):
    cfg, _ = CASES[case]
    data = _cast(rows(seed=5), dtype)
    ref, _, _ = run_session(cfg, data, layer=2, backend="reference")
    got, _, _ = run_session(cfg, data, layer=2, backend="triton")
    for a, b in zip(got, ref):
        assert not torch.isnan(a).any()
        rel = ((a.float() - b.float()).norm() / b.float().norm()).item()
        assert rel < tol, f"{case} {dtype}: relative error {rel:.2e}"


def _prefill_ref(q, k, v, plan, scale):
    from sparsebench.kernels.reference import prefill_row

    return prefill_row(q.float(), k.float(), v.float(), plan, scale)


@pytest.mark.parametrize("L", [1, 37, 200])
@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("one_loop", [True, False])
@pytest.mark.parametrize("tma", [False, True])
@pytest.mark.parametrize("pack", [False, True])
def test_block_sparse_prefill_writes_every_element(L, D, one_loop, tma, pack):
    from sparsebench.kernels.triton_prefill import block_sparse_prefill, tma_ok

    g = torch.Generator().manual_seed(L + D)
    q = torch.randn(2, 12, L, D, generator=g).half()
    k = torch.randn(2, 3, L, D, generator=g).half()
    v = torch.randn(2, 3, L, D, generator=g).half()
    if tma:  # a model's layout: [B, L, H, D] transposed, so the descriptors carry the strides
        q, k, v = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
        assert tma_ok(q, k, v)
    plan = PrefillPlan(sink=(0, 4, 70), window=(DENSE, 50, 90))  # head 2: its sink reaches into its window
    out = torch.full_like(q, float("nan"))
    block_sparse_prefill(q, k, v, plan, 1 / math.sqrt(D), out=out, window_one_loop_max=1 << 30 if one_loop else 0,
                         tma=tma, pack_gqa=pack)  # pack: the 4 query heads of a KV head in one program
    ref = _prefill_ref(q, k, v, plan, 1 / math.sqrt(D))
    assert not torch.isnan(out).any()
    assert ((out.float() - ref).norm() / ref.norm()).item() < 1e-2


def test_gqa_packing_refused_with_block_lists_or_a_non_power_of_two_group():
    from sparsebench.kernels.triton_prefill import block_sparse_prefill

    q, k, v = torch.randn(1, 6, 40, 64), torch.randn(1, 2, 40, 64), torch.randn(1, 2, 40, 64)
    with pytest.raises(ValueError, match="G \\(here 3\\)"):
        block_sparse_prefill(q, k, v, PrefillPlan(sink=(0, 0), window=(DENSE, DENSE)), 0.125, pack_gqa=True)
    idx = torch.zeros((2, 1, 1), dtype=torch.long)
    plan = PrefillPlan(sink=(0, 0), window=(DENSE, DENSE), blocks=BlockList(64, 64, idx), block_heads=(True, True))
    with pytest.raises(ValueError, match="no block-list heads"):
        block_sparse_prefill(torch.randn(1, 8, 40, 64), k, v, plan, 0.125, pack_gqa=True)


def test_warp_specialised_prefill_dispatch_rules():
    """The Gluon kernel (no CPU interpreter runs it; tested on the GPU) is refused with the reason, before any
    launch: each rule of `gluon_prefill.unsupported` in turn, then the launch-level ones of `ws_unsupported`."""
    from sparsebench.kernels import gluon_prefill as gp
    from sparsebench.kernels.triton_prefill import block_sparse_prefill

    def qkv(hq=8, hkv=2, d=64, dtype=torch.bfloat16):
        return (torch.zeros(1, hq, 40, d, dtype=dtype), torch.zeros(1, hkv, 40, d, dtype=dtype),
                torch.zeros(1, hkv, 40, d, dtype=dtype))

    for args, why in [((qkv(dtype=torch.float32), 4, 64), "dtype torch.float32"),
                      ((qkv(hq=6), 4, 64), "allowed G = 2, 4, 8"), ((qkv(d=96), 4, 64), "head dim 96"),
                      ((qkv(), 200, 64), "sink 200"), ((qkv(), 4, 32), "block_n 32"),
                      ((qkv(d=128), 128, 128), "two K / V stages exceed"), ((qkv(), 4, 64), "Hopper")]:
        (q, k, v), sink_max, bn = args
        assert why in gp.unsupported(q, k, v, torch.empty_like(q), sink_max, bn)
    # shared memory (sm_90 compiles: 205376 bytes at D 128, BN 64, SN 16, 4 stages; 262720 at SN 128, 4 stages)
    assert gp.smem_bytes(128, 64, 4, 16) == 205376 - 576 + 1024 and gp.smem_bytes(128, 64, 4, 128) == 262144 + 1024
    assert gp.fit_stages(128, 64, 4, 16) == 4 and gp.fit_stages(128, 64, 4, 128) == 3
    assert gp.sink_step(4) == 16 and gp.sink_step(0) == 16 and gp.sink_step(64) == 64 and gp.sink_step(100) == 128
    with pytest.raises(ValueError, match="block_n=128 with D=128 and a 128-key sink"):
        gp.fit_stages(128, 128, 2, 128)
    q, k, v = qkv()
    plan = PrefillPlan(sink=(4, 4), window=(12, 12))
    with pytest.raises(ValueError, match="ws=True .*TRITON_INTERPRET"):
        block_sparse_prefill(q, k, v, plan, 0.125, ws=True)
    out = block_sparse_prefill(q.float(), k.float(), v.float(), plan, 0.125)  # ws=None: the Triton kernel here
    assert not torch.isnan(out).any()


def test_plan_tensors_built_once_per_plan_and_length():
    """A model's prefill asks for the same plan's tensors every layer: they are built once (no host-to-device copy,
    which waits for the GPU, per call); a window as long as the chunk runs as DENSE, so the length is in the key."""
    from sparsebench.kernels.triton_prefill import DENSE as KD, WINDOW, plan_tensors

    plan = PrefillPlan(sink=(0, 4), window=(DENSE, 50))
    first = plan_tensors(plan, "cpu", False, 40)
    again = plan_tensors(PrefillPlan(sink=(0, 4), window=(DENSE, 50)), "cpu", False, 40)
    assert all(a is b for a, b in zip(first[:5], again[:5]))
    assert first[0].tolist() == [KD, KD] and first[5:] == (0, 1 << KD)  # 50 >= 40 tokens: plain causal
    longer = plan_tensors(plan, "cpu", False, 60)
    assert longer[0].tolist() == [KD, WINDOW] and longer[5:] == (50, (1 << KD) | (1 << WINDOW))


def test_pdl_refused_where_unsupported():
    from sparsebench.kernels.triton_decode import use_pdl

    assert use_pdl("cpu", False) == (False, False)  # (compile the grid-dependency ops, launch as a dependent)
    with pytest.raises(ValueError, match="pdl=True needs a Hopper"):
        use_pdl("cpu", True)
    with pytest.raises(ValueError, match="pdl='trigger' needs a Hopper"):
        use_pdl("cpu", "trigger")
    with pytest.raises(ValueError, match="allowed False, True, 'trigger'"):
        use_pdl("cpu", "yes")


def test_dense_heads_include_windows_as_long_as_the_chunk():
    plan = PrefillPlan(sink=(0, 4, 4), window=(DENSE, 50, 200))
    assert plan.dense_heads(200) == [0, 2] and plan.dense_heads(201) == [0] and plan.dense_heads(50) == [0, 1, 2]


@pytest.mark.parametrize("min_len,to_sdpa", [(32, True), (64, False)])
def test_dense_heads_auto_sends_some_dense_heads_to_sdpa_only_from_the_threshold(monkeypatch, min_len, to_sdpa):
    import sparsebench.kernels.triton_backend as tb

    calls = []
    monkeypatch.setattr(tb, "SDPA_GATHER_MIN_LEN", min_len)
    monkeypatch.setattr(tb, "dense_sdpa", lambda *a: calls.append(a[0].shape) or tb.F.scaled_dot_product_attention(
        a[0], a[1], a[2], is_causal=True, scale=a[3], enable_gqa=True))
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, h, 40, 64, generator=g) for h in (8, 2, 2))
    plan = PrefillPlan(sink=(0, 4), window=(DENSE, 12))  # KV head 0 dense, KV head 1 windowed
    out = tb.TritonBackend("cpu", dense_heads="auto")._prefill_row(q, k, v, plan, 0.125)
    assert calls == ([torch.Size([1, 4, 40, 64])] if to_sdpa else [])  # the dense head's 4 query heads only
    ref = _prefill_ref(q, k, v, plan, 0.125)
    assert ((out - ref).norm() / ref.norm()).item() < 1e-4
    with pytest.raises(ValueError, match="dense_heads='cudnn'"):
        tb.TritonBackend("cpu", dense_heads="cudnn")


@pytest.mark.parametrize("tma", [False, True])
def test_block_list_plan(tma):
    from sparsebench.kernels.triton_prefill import block_sparse_prefill

    L, D, bq = 150, 64, 64
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, h, L, D, generator=g).half() for h in (4, 2, 2))
    nqb = math.ceil(L / bq)
    # head 0: key block 0 plus the diagonal block; head 1: every block up to the diagonal
    idx = torch.full((2, nqb, nqb), -1, dtype=torch.long)
    for qb in range(nqb):
        idx[0, qb, 0], idx[0, qb, 1] = 0, qb
        idx[1, qb, : qb + 1] = torch.arange(qb + 1)
    plan = PrefillPlan(sink=(0, 0), window=(DENSE, DENSE), blocks=BlockList(bq, bq, idx), block_heads=(True, True))
    out = torch.full_like(q, float("nan"))
    block_sparse_prefill(q, k, v, plan, 0.125, out=out, tma=tma)
    ref = _prefill_ref(q, k, v, plan, 0.125)
    assert not torch.isnan(out).any()
    assert ((out.float() - ref).norm() / ref.norm()).item() < 1e-2


def test_paged_attention_writes_every_element_and_skips_empty_rows():
    from sparsebench.kernels.triton_decode import paged_attention

    g = torch.Generator().manual_seed(3)
    P, page, D = 12, 16, 64
    kp, vp = torch.randn(P, page, D, generator=g).half(), torch.randn(P, page, D, generator=g).half()
    q = torch.randn(2, 3, 4, D, generator=g).half()
    pages = torch.tensor([[[0, 5, 7, -1], [1, 2, -1, -1], [3, -1, -1, -1]],
                          [[4, 6, 8, 9], [10, -1, -1, -1], [11, 0, -1, -1]]])
    plen = torch.where(pages >= 0, torch.full_like(pages, page), 0)
    plen[0, 0, 2] = 5  # a partial last page, its unwritten rows NaN (they must not leak into the output)
    kp[7, 5:], vp[7, 5:] = float("nan"), float("nan")
    out = torch.full((2, 3, 4, D), float("nan"), dtype=torch.float16)
    paged_attention(q, kp, vp, pages, plen, 0.125, pages_per_split=1, out=out)
    assert not torch.isnan(out).any()
    for b in range(2):
        for r in range(3):
            toks_k = torch.cat([kp[p, : plen[b, r, j]] for j, p in enumerate(pages[b, r].tolist()) if p >= 0]).float()
            toks_v = torch.cat([vp[p, : plen[b, r, j]] for j, p in enumerate(pages[b, r].tolist()) if p >= 0]).float()
            w = torch.softmax(q[b, r].float() @ toks_k.T * 0.125, -1)
            assert torch.allclose(out[b, r].float(), w @ toks_v, atol=2e-3)


@pytest.mark.parametrize("fuse,pps,ppi,split_first,page,strided", [
    (True, 1, 1, False, 16, True), (False, 1, 1, True, 16, False), (True, 3, 2, True, 16, True),
    (True, 3, 2, True, 16, False), (True, 5, 4, False, 16, True), (False, 4, 1, False, 8, False)])
def test_paged_attention_combines_many_splits_in_chunks(fuse, pps, ppi, split_first, page, strided):
    """20 one-page splits per row: more than one chunk of the combine (4096 // (GQ2 * D) = 8 splits at GQ 4, D 128)
    and a GQ of 3 (padded to 4 columns groups), with rows of different lengths and an empty row; also splits that
    are not a multiple of the pages read per iteration, either launch order, 8-token pages (two per tile), and
    either assignment of list entries to splits (strided or contiguous chunks)."""
    from sparsebench.kernels.triton_decode import _combine_meta, paged_attention

    P, D, GQ = 24, 128, 3
    assert _combine_meta(GQ, D, 20)["SC"] == 8
    g = torch.Generator().manual_seed(11)
    kp, vp = torch.randn(P, page, D, generator=g).half(), torch.randn(P, page, D, generator=g).half()
    q = torch.randn(1, 3, GQ, D, generator=g).half()
    pages = torch.full((1, 3, 20), -1)
    pages[0, 0] = torch.randperm(P, generator=g)[:20]
    pages[0, 1, :11] = torch.arange(11)
    plen = torch.where(pages >= 0, torch.randint(1, page + 1, pages.shape, generator=g), 0)
    out = torch.full((1, 3, GQ, D), float("nan"), dtype=torch.float16)
    paged_attention(q, kp, vp, pages, plen, 0.09, pages_per_split=pps, out=out, fuse_combine=fuse,
                    pages_per_iter=ppi, split_first=split_first, strided=strided)
    for r in range(2):
        sel = [(p, int(plen[0, r, j])) for j, p in enumerate(pages[0, r].tolist()) if p >= 0]
        k = torch.cat([kp[p, :n] for p, n in sel]).float()
        v = torch.cat([vp[p, :n] for p, n in sel]).float()
        want = torch.softmax(q[0, r].float() @ k.T * 0.09, -1) @ v
        assert (out[0, r].float() - want).abs().max().item() < 2e-3
    assert torch.equal(out[0, 2], torch.zeros(GQ, D, dtype=torch.float16))  # no pages: zeros, not NaN


def test_page_scores_kernel_matches_torch():
    from sparsebench.kernels.triton_decode import page_scores_triton

    g = torch.Generator().manual_seed(1)
    n_lp, D, lpp = 40, 64, 4
    kmin, kmax = torch.randn(n_lp, D, generator=g), torch.randn(n_lp, D, generator=g)
    kmin, kmax = torch.minimum(kmin, kmax), torch.maximum(kmin, kmax)
    q = torch.randn(2, 2, 4, D, generator=g)
    lp = torch.randint(0, n_lp, (2, 2, 24), generator=g)
    lp[1, 1, 13:] = -1  # empty tail
    for red in ("max", "sum"):
        got = page_scores_triton(q, kmin, kmax, lp, lpp, red)
        u = torch.einsum("brgd,brld->brgl", q.clamp(min=0), kmax[lp.clamp(min=0)]) + \
            torch.einsum("brgd,brld->brgl", q.clamp(max=0), kmin[lp.clamp(min=0)])
        u = u.amax(2) if red == "max" else u.sum(2)
        u = u.masked_fill(lp < 0, float("-inf"))
        want = u.view(2, 2, 6, lpp).amax(-1)
        assert torch.allclose(got, want, atol=1e-4), red


@pytest.mark.parametrize("case", ["full", "streaming_llm", "streaming_heads", "lserve", "quest", "h2o"])
def test_flex_backend_matches_reference(case):
    pytest.importorskip("torch.nn.attention.flex_attention")
    cfg, _ = CASES[case]
    data = _cast(rows(seed=9), torch.float32)
    ref, _, _ = run_session(cfg, data, layer=2, backend="reference")
    got, _, _ = run_session(cfg, data, layer=2, backend="flex")
    for a, b in zip(got, ref):
        rel = ((a - b).norm() / b.norm()).item()
        assert rel < 1e-4, f"{case}: {rel:.2e}"


def test_flex_block_tables_are_block_level():
    """Windowed heads list only the sink and window blocks; full blocks need no mask_mod."""
    from sparsebench.kernels.flex import block_tables

    plan = PrefillPlan(sink=(0, 128), window=(DENSE, 256))
    kvn, kvi, fn, fi = block_tables(plan, 1024, 1, "cpu")  # 8 blocks of 128
    assert kvn.shape == (1, 2, 8)
    # dense head: the diagonal block is partial, every earlier block full
    assert kvn[0, 0].tolist() == [1] * 8 and fn[0, 0].tolist() == list(range(8))
    # sink 128 + window 256 at query block 7 (rows 896..1023): block 0 (sink) full, blocks 5, 6 partial / full, 7 diagonal
    row7_partial = set(kvi[0, 1, 7, : kvn[0, 1, 7]].tolist())
    row7_full = set(fi[0, 1, 7, : fn[0, 1, 7]].tolist())
    assert row7_full == {0, 6} and row7_partial == {5, 7}


def test_page_scores_per_query_head_reads_summaries_once():
    """reduce=none gives one score row per query head, equal to scoring each query head alone."""
    from sparsebench.kernels.triton_decode import page_scores_triton

    g = torch.Generator().manual_seed(4)
    kmin = torch.randn(64, 32, generator=g)
    kmax = kmin + torch.rand(64, 32, generator=g)
    q = torch.randn(1, 2, 4, 32, generator=g)
    lp = torch.randint(0, 64, (1, 2, 32), generator=g)
    per_head = page_scores_triton(q, kmin, kmax, lp, 4, "none")  # [1, 2, 4, 8]
    for gq in range(4):
        alone = page_scores_triton(q[:, :, gq : gq + 1], kmin, kmax, lp, 4, "max")
        assert torch.allclose(per_head[:, :, gq], alone, atol=1e-5)


def test_select_pages_scores_then_selects():
    """The decode step's selector equals page scores then top-k (torch), for per-query-head and reduced rows,
    several programs per row, rows written through the batch mapping."""
    from sparsebench.kernels import triton_decode as td

    g = torch.Generator().manual_seed(8)
    B, R, G, D, lpp, n_phys = 2, 2, 4, 32, 4, 40
    kmin = torch.randn(B * R * n_phys * lpp, D, generator=g)
    kmax = kmin + torch.rand(B * R * n_phys * lpp, D, generator=g)
    q = torch.randn(B, R, G, D, generator=g)
    lp = torch.arange(B * R * n_phys * lpp).view(B, R, -1)
    lp[1, 0, 150:] = -1  # a shorter stream: 37 full physical pages + 2 logical pages of the 38th
    for reduce, rows in (("none", B * R * G), ("max", B * R)):
        n_valid = torch.full((rows,), n_phys)
        if reduce == "none":
            n_valid.view(B, R, G)[1, 0] = 38
        else:
            n_valid.view(B, R)[1, 0] = 38
        base = torch.arange(rows) * 1000
        k_sel = 7
        out = torch.full((rows * 2, k_sel + 2), -5, dtype=torch.int32)  # rows interleaved with untouched rows
        scores = torch.empty(rows, n_phys)
        td.select_pages(q, kmin, kmax, lp, lpp, reduce, n_valid, base, k_sel, out, rows_per_batch=1,
                        out_rows_per_batch=2, block_p=4, scores=scores)
        want_scores = td.page_scores_triton(q, kmin, kmax, lp, lpp, reduce).reshape(rows, n_phys)
        fin = want_scores > -float("inf")
        assert torch.equal(scores > -float("inf"), fin) and torch.allclose(scores[fin], want_scores[fin], atol=1e-4)
        for r in range(rows):
            n = int(n_valid[r])
            top = scores[r, : n - 1].topk(k_sel - 1).indices.sort().values
            assert out[2 * r, :k_sel].tolist() == (top + base[r]).tolist() + [int(base[r]) + n - 1], (reduce, r)
            assert (out[2 * r, k_sel:] == -5).all() and (out[2 * r + 1] == -5).all()


def test_paged_attention_fused_and_separate_combine_agree():
    from sparsebench.kernels.triton_decode import _counters, paged_attention

    g = torch.Generator().manual_seed(5)
    kp, vp = torch.randn(20, 16, 32, generator=g), torch.randn(20, 16, 32, generator=g)
    q = torch.randn(1, 5, 1, 32, generator=g)
    pages = torch.randint(0, 20, (1, 5, 11), generator=g)
    pages[0, 2, 3:] = -1
    plen = torch.where(pages >= 0, 16, 0)
    a = paged_attention(q, kp, vp, pages, plen, 0.2, pages_per_split=2)
    b = paged_attention(q, kp, vp, pages, plen, 0.2, pages_per_split=2, fuse_combine=False)
    assert torch.allclose(a, b, atol=1e-5) and not torch.isnan(a).any()
    assert int(_counters(q.device, 1)[:5].abs().sum()) == 0


@pytest.mark.parametrize("search", ["bisect", "interp"])
def test_top_pages_kernel(search):
    from sparsebench.kernels.triton_decode import top_pages

    g = torch.Generator().manual_seed(6)
    scores = torch.randn(4, 1100, generator=g)
    scores[1, 5] = scores[1, 9] = 10.0  # a tie
    scores[0, 3] = scores[0, 7] = scores[0, 8] = scores[0, 30] = scores[0, 35] = scores[0, 36] = 5.0  # a tie at the cut
    scores[1, 12] = -float("inf")
    scores[3] = torch.randint(-3, 3, (1100,), generator=g).float()  # many ties, negatives and zeros
    scores[3, :4] = torch.tensor([-0.0, 0.0, -float("inf"), float("nan")])
    n_pages = torch.tensor([40, 30, 8, 1100])
    base = torch.tensor([100, 1000, 5000, 7])
    for k_sel in (1, 6, 60):
        out = torch.full((4, 70), -7, dtype=torch.int32)
        top_pages(scores, n_pages, base, k_sel, out, search=search)
        for r in range(4):
            n = int(n_pages[r])
            cand = [j for j in range(n - 1) if scores[r, j] == scores[r, j]]  # NaN ranks last
            ranked = sorted(cand, key=lambda j: (-scores[r, j].item(), j)) + [j for j in range(n - 1) if j not in cand]
            want = sorted(ranked[: min(k_sel - 1, n - 1)])  # chosen, in page order
            got = out[r, :k_sel].tolist()
            if k_sel - 1 <= n - 1:
                assert got == [int(base[r]) + j for j in want] + [int(base[r]) + n - 1], (r, k_sel)
            assert (out[r, k_sel:] == -7).all()  # nothing written past k_sel


@pytest.mark.parametrize("fuse", [True, False])
def test_paged_attention_rows_of_their_own_query_count(fuse):
    """row_queries: one launch where rows attend with 1 or 4 queries (LServe: a row per retrieval query head, a
    row per streaming KV head) equals one row per query over the same pages; other queries stay untouched."""
    from sparsebench.kernels.triton_decode import paged_attention

    g = torch.Generator().manual_seed(9)
    kp, vp = torch.randn(30, 16, 32, generator=g), torch.randn(30, 16, 32, generator=g)
    B, n_q, D = 2, 7, 32  # per batch: queries 0-1 one row each, 2-5 one row of 4, query 6 in no row
    q = torch.randn(B, n_q, 1, D, generator=g)
    pages = torch.randint(0, 30, (B, 3, 9), generator=g, dtype=torch.int32)
    pages[1, 2, 4:] = -1
    plen = torch.where(pages >= 0, torch.randint(1, 17, pages.shape, generator=g, dtype=torch.int32), 0)
    q_off = torch.tensor([[0, 1, 2], [7, 8, 9]], dtype=torch.int32)
    q_cnt = torch.tensor([[1, 1, 4]] * 2, dtype=torch.int32)
    out = torch.full_like(q, 7.0)
    paged_attention(q, kp, vp, pages, plen, 0.3, out=out, row_queries=(q_off, q_cnt, 4), pages_per_split=2,
                    fuse_combine=fuse)
    per_q = lambda t: torch.cat([t[:, :2], t[:, 2:].repeat_interleave(4, 1)], 1)  # noqa: E731
    want = paged_attention(q[:, :6], kp, vp, per_q(pages), per_q(plen), 0.3)
    assert torch.allclose(out[:, :6], want, atol=1e-5)
    assert (out[:, 6] == 7.0).all()
    with pytest.raises(ValueError, match="row_queries"):
        paged_attention(q, kp, vp, pages, plen, 0.3, row_queries=(q_off[:, :2], q_cnt, 4))


@pytest.mark.parametrize("strided,pps,row_q", [(True, 3, False), (False, 3, False), (True, 2, True), (False, 8, True)])
def test_paged_attention_short_rows(strided, pps, row_q):
    """short_rows=(R_long, n): rows R_long.. of every batch row get only the splits their n listed pages need, in a
    1-D grid (LServe: streaming rows beside retrieval rows); the result equals the rectangular launch, per row and
    query; bad settings are refused."""
    from sparsebench.kernels.triton_decode import paged_attention

    g = torch.Generator().manual_seed(21)
    kp, vp = torch.randn(40, 16, 32, generator=g), torch.randn(40, 16, 32, generator=g)
    B, R, NP = 2, 5, 10  # rows 0-2 long (10 entries), rows 3-4 short (<= 3 pages listed)
    pages = torch.randint(0, 40, (B, R, NP), generator=g, dtype=torch.int32)
    pages[:, 3:, 3:] = -1
    pages[1, 4, 1:] = -1
    pages[0, 1, 7:] = -1
    plen = torch.where(pages >= 0, torch.randint(1, 17, pages.shape, generator=g, dtype=torch.int32), 0)
    if row_q:  # rows 0-2 one query each, rows 3-4 two queries each
        q = torch.randn(B, 7, 1, 32, generator=g)
        q_off = (torch.tensor([0, 1, 2, 3, 5]) + 7 * torch.arange(B).unsqueeze(1)).int()
        q_cnt = torch.tensor([[1, 1, 1, 2, 2]] * B, dtype=torch.int32)
        kw = {"row_queries": (q_off, q_cnt, 2)}
    else:
        q = torch.randn(B, R, 2, 32, generator=g)
        kw = {}
    want = paged_attention(q, kp, vp, pages, plen, 0.2, pages_per_split=pps, **kw)
    out = torch.full_like(q, float("nan"))
    paged_attention(q, kp, vp, pages, plen, 0.2, pages_per_split=pps, strided=strided, short_rows=(3, 3), out=out,
                    **kw)
    assert torch.allclose(out, want, atol=1e-5)
    for bad in ((0, 3), (R, 3), (3, 0)):
        with pytest.raises(ValueError, match="short_rows"):
            paged_attention(q, kp, vp, pages, plen, 0.2, short_rows=bad, **kw)
    with pytest.raises(ValueError, match="fuse_combine=True"):
        paged_attention(q, kp, vp, pages, plen, 0.2, short_rows=(3, 3), fuse_combine=False, **kw)
