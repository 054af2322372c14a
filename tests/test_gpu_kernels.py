"""GPU correctness of the Triton and Flex backends against the reference, bf16, larger sizes (marker: gpu).

Every output is poisoned with NaN first, so an element a kernel forgets to write fails the test."""

from __future__ import annotations

import math

import pytest
import torch

pytestmark = pytest.mark.gpu

from sparsebench.plans import DENSE, BlockList, PrefillPlan  # noqa: E402


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def ref_prefill(q, k, v, plan, scale):
    from sparsebench.kernels.reference import prefill_row

    return prefill_row(q.float(), k.float(), v.float(), plan, scale)


PLANS = {
    "dense": PrefillPlan(sink=(0,) * 4, window=(DENSE,) * 4),
    "lserve": PrefillPlan(sink=(128, 0, 128, 0), window=(1000, DENSE, 1000, DENSE)),
    "streaming_llm": PrefillPlan(sink=(4,) * 4, window=(300,) * 4),
}


@pytest.mark.parametrize("name", sorted(PLANS))
@pytest.mark.parametrize("L,D", [(4096, 128), (3000, 64), (777, 128)])
@pytest.mark.parametrize("tma", [False, True])
@pytest.mark.parametrize("pack", [False, True])
def test_triton_prefill_bf16(name, L, D, tma, pack):
    from sparsebench.kernels.triton_prefill import block_sparse_prefill, tma_ok

    g = torch.Generator(device="cuda").manual_seed(L)
    q = torch.randn(2, 16, L, D, device="cuda", dtype=torch.bfloat16, generator=g)
    k = torch.randn(2, 4, L, D, device="cuda", dtype=torch.bfloat16, generator=g)
    v = torch.randn(2, 4, L, D, device="cuda", dtype=torch.bfloat16, generator=g)
    if tma:  # a model's [B, L, H, D] layout seen as [B, H, L, D]: the descriptors carry its strides
        q, k, v = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
    out = torch.full_like(q, float("nan"))
    assert not tma or tma_ok(q, k, v, out)
    block_sparse_prefill(q, k, v, PLANS[name], 1 / math.sqrt(D), out=out, tma=tma, pack_gqa=pack, ws=False)
    assert not torch.isnan(out).any()
    assert rel(out, ref_prefill(q, k, v, PLANS[name], 1 / math.sqrt(D))) < 1e-2


hopper = pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9,
                            reason="the Gluon kernel is compiled for Hopper (sm_90)")


@hopper
@pytest.mark.parametrize("B,Hq,Hkv,L,D,dtype,sinks,windows,model,bn,stages", [
    (2, 16, 4, 4096, 128, torch.bfloat16, (4,) * 4, (300,) * 4, False, 64, 3),
    (2, 16, 4, 4096, 128, torch.bfloat16, (4,) * 4, (1020,) * 4, True, 64, 4),  # a model's [B, L, H, D] layout
    (2, 16, 4, 777, 128, torch.bfloat16, (4,) * 4, (300,) * 4, False, 64, 3),
    (2, 16, 4, 3000, 64, torch.bfloat16, (4,) * 4, (300,) * 4, False, 64, 3),
    (1, 8, 4, 2000, 128, torch.bfloat16, (4,) * 4, (1020,) * 4, False, 64, 3),  # G = 2
    (1, 32, 4, 2000, 128, torch.bfloat16, (4,) * 4, (1020,) * 4, False, 64, 3),  # G = 8
    (1, 16, 4, 2500, 128, torch.bfloat16, (4, 64, 0, 128), (300, 1000, 64, 2000), False, 64, 4),  # 3 stages fit
    (1, 16, 4, 2500, 128, torch.bfloat16, (0,) * 4, (500,) * 4, False, 64, 3),  # no sink step
    (1, 16, 4, 1500, 128, torch.float16, (4,) * 4, (1400,) * 4, False, 64, 2),
    (2, 16, 4, 4096, 128, torch.bfloat16, (4,) * 4, (1020,) * 4, True, 128, 2),
    (1, 16, 4, 999, 128, torch.bfloat16, (4, 64, 0, 32), (300, 700, 64, 800), False, 128, 2),
])
def test_gluon_window_prefill(B, Hq, Hkv, L, D, dtype, sinks, windows, model, bn, stages):
    """The warp-specialised Gluon kernel (`ws=True`) against the reference: GQA 2 / 4 / 8, D 64 / 128, odd lengths,
    per-head sinks (0-128) and windows, both key-block sizes, bf16 / fp16, a model's layout."""
    from sparsebench.kernels.triton_prefill import block_sparse_prefill

    g = torch.Generator(device="cuda").manual_seed(L + Hq)
    q = torch.randn(B, Hq, L, D, device="cuda", dtype=dtype, generator=g)
    k = torch.randn(B, Hkv, L, D, device="cuda", dtype=dtype, generator=g)
    v = torch.randn(B, Hkv, L, D, device="cuda", dtype=dtype, generator=g)
    if model:
        q, k, v = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
    plan = PrefillPlan(sink=sinks, window=windows)
    out = torch.full_like(q, float("nan"))
    block_sparse_prefill(q, k, v, plan, 1 / math.sqrt(D), out=out, ws=True, block_n=bn, num_stages=stages)
    assert not torch.isnan(out).any()
    assert rel(out, ref_prefill(q, k, v, plan, 1 / math.sqrt(D))) < 1e-2


@hopper
def test_gluon_prefill_computes_only_the_window_heads_and_is_the_default_for_short_windows(monkeypatch):
    """Dense heads sent to cuDNN (skip_dense) are left untouched (still NaN); a launch of short windows takes the
    Gluon kernel unless ws=False."""
    import sparsebench.kernels.gluon_prefill as gp
    from sparsebench.kernels.triton_prefill import block_sparse_prefill

    g = torch.Generator(device="cuda").manual_seed(3)
    q, k, v = (torch.randn(1, h, 3000, 128, device="cuda", dtype=torch.bfloat16, generator=g) for h in (16, 4, 4))
    plan = PrefillPlan(sink=(0, 64, 0, 4), window=(DENSE, 256, DENSE, 1020))
    out = torch.full_like(q, float("nan"))
    block_sparse_prefill(q, k, v, plan, 0.1, out=out, skip_dense=True, ws=True)
    ref = ref_prefill(q, k, v, plan, 0.1)
    win = [4, 5, 6, 7, 12, 13, 14, 15]  # the query heads of KV heads 1 and 3
    assert torch.isnan(out[:, [0, 1, 2, 3, 8, 9, 10, 11]]).all() and not torch.isnan(out[:, win]).any()
    assert rel(out[:, win], ref[:, win]) < 1e-2
    calls = []
    real = gp.window_prefill_ws
    monkeypatch.setattr(gp, "window_prefill_ws", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    block_sparse_prefill(q, k, v, PLANS["streaming_llm"], 0.1)
    block_sparse_prefill(q, k, v, PLANS["streaming_llm"], 0.1, ws=False)
    block_sparse_prefill(q, k, v, PLANS["lserve"], 0.1)  # dense heads in the launch: the Triton kernel
    assert calls == [1]


@pytest.mark.parametrize("tma", [False, True])
def test_triton_prefill_block_list_bf16(tma):
    from sparsebench.kernels.triton_prefill import block_sparse_prefill

    L, bq = 2000, 128
    nqb = math.ceil(L / bq)
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(1, h, L, 128, device="cuda", dtype=torch.bfloat16, generator=g) for h in (8, 2, 2))
    idx = torch.full((2, nqb, nqb), -1, dtype=torch.long)
    for qb in range(nqb):
        idx[0, qb, :2] = torch.tensor([0, qb])
        idx[1, qb, : qb + 1] = torch.arange(qb + 1)
    plan = PrefillPlan(sink=(0, 0), window=(DENSE, DENSE), blocks=BlockList(bq, bq, idx), block_heads=(True, True))
    out = torch.full_like(q, float("nan"))
    block_sparse_prefill(q, k, v, plan, 1 / math.sqrt(128), out=out, tma=tma)
    assert not torch.isnan(out).any() and rel(out, ref_prefill(q, k, v, plan, 1 / math.sqrt(128))) < 1e-2


@pytest.mark.parametrize("backend", ["triton", "flex"])
@pytest.mark.parametrize("case", ["full", "streaming_llm", "streaming_heads", "streaming_heads_page", "quest",
                                  "lserve", "alisa_swa", "h2o", "snapkv", "pyramidkv"])
def test_policies_on_gpu_backends_match_reference(case, backend):
    from test_policies_vs_bruteforce import CASES, rows, run_session_on

    cfg, _ = CASES[case]
    data = [tuple(t.to("cuda", torch.bfloat16) for t in r) for r in rows(seed=4)]
    ref = run_session_on(cfg, data, layer=2, backend="reference", device="cuda")
    got = run_session_on(cfg, data, layer=2, backend=backend, device="cuda")
    for a, b in zip(got, ref):
        assert not torch.isnan(a).any()
        assert rel(a, b) < 1e-2, case


def test_paged_decode_and_gather_bf16_at_128k_pages():
    from sparsebench.kernels.triton_decode import gathered_attention, paged_attention

    g = torch.Generator(device="cuda").manual_seed(2)
    P, page, D = 4096, 64, 128
    kp = torch.randn(P, page, D, device="cuda", dtype=torch.bfloat16, generator=g)
    vp = torch.randn(P, page, D, device="cuda", dtype=torch.bfloat16, generator=g)
    q = torch.randn(2, 8, 4, D, device="cuda", dtype=torch.bfloat16, generator=g)
    pages = torch.randint(0, P, (2, 8, 300), device="cuda", generator=g)
    pages[1, 3, 100:] = -1
    plen = torch.where(pages >= 0, page, 0)
    out = torch.full_like(q, float("nan"))
    paged_attention(q, kp, vp, pages, plen, 0.1, out=out)
    first = paged_attention(q, kp, vp, pages, plen, 0.1, pages_per_split=4)
    for _ in range(3):  # the fused combine's row counters reset themselves: relaunches give the same bits
        assert torch.equal(paged_attention(q, kp, vp, pages, plen, 0.1, pages_per_split=4), first)
    two = paged_attention(q, kp, vp, pages, plen, 0.1, pages_per_split=4, fuse_combine=False)
    assert rel(first, two) < 1e-3
    # other launch settings (checked against the reference below): pages per tile, split-first launch order
    variants = {str(o): paged_attention(q, kp, vp, pages, plen, 0.1, **o)
                for o in ({"pages_per_iter": 2}, {"split_first": True, "pages_per_split": 16}, {"pages_per_iter": 4},
                          {"strided": False, "pages_per_split": 16})}
    # short rows (rows 6-7 list 5 pages): the rectangular launch's result up to bf16 rounding (another split order;
    # the exact equality is checked in fp32 on the CPU: test_paged_attention_short_rows)
    pages_s = pages.clone()
    pages_s[:, 6:, 5:] = -1
    plen_s = torch.where(pages_s >= 0, page, 0)
    for strided in (True, False):
        assert rel(paged_attention(q, kp, vp, pages_s, plen_s, 0.1, pages_per_split=8, short_rows=(6, 5),
                                   strided=strided),
                   paged_attention(q, kp, vp, pages_s, plen_s, 0.1, pages_per_split=8)) < 1e-2
    # programmatic dependent launch inside a CUDA graph: the same bits as ordinary launches
    pdl_out = torch.empty_like(q)
    paged_attention(q, kp, vp, pages, plen, 0.1, pages_per_split=4, out=pdl_out, pdl=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(3):
            paged_attention(q, kp, vp, pages, plen, 0.1, pages_per_split=4, out=pdl_out, pdl=True)
    pdl_out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(pdl_out, first)
    # PDL on one edge only: a kernel compiled to trigger ("trigger", launched normally), its successor a dependent
    mid = torch.empty_like(q)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        paged_attention(q, kp, vp, pages, plen, 0.1, pages_per_split=4, out=mid, pdl="trigger")
        paged_attention(q, kp, vp, pages, plen, 0.1, pages_per_split=4, out=pdl_out, pdl=True)
    mid.fill_(float("nan"))
    pdl_out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(mid, first) and torch.equal(pdl_out, first)
    flat = (pages.unsqueeze(-1) * page + torch.arange(page, device="cuda")).flatten(-2)
    flat = torch.where(flat >= 0, flat, -1)
    flat[pages.repeat_interleave(page, -1) < 0] = -1
    o2, probs = gathered_attention(q, kp.view(-1, D), vp.view(-1, D), flat, 0.1)
    k = kp.view(-1, D)[flat.clamp(min=0)].float()
    s = torch.einsum("brgd,brtd->brgt", q.float(), k) * 0.1
    s = s.masked_fill((flat < 0).unsqueeze(2), float("-inf"))
    w = torch.softmax(s, -1)
    ref = torch.einsum("brgt,brtd->brgd", w, vp.view(-1, D)[flat.clamp(min=0)].float())
    assert not torch.isnan(out).any() and rel(out, ref) < 1e-2 and rel(o2, ref) < 1e-2
    for name, o in variants.items():
        assert rel(o, ref) < 1e-2, name
    assert (probs - w).abs().max().item() < 1e-3


def test_cluster_paged_decode_matches_reference():
    """The CUDA kernel whose splits meet in a thread-block cluster (impl="cuda_cluster"): rows of 1 and 4 queries,
    partial pages whose unwritten rows are NaN, empty entries and empty rows, 1-16 splits (clusters of more than 8:
    non-portable), 1-4 stages, PDL in a graph."""
    from sparsebench.kernels.bench_steps import ref_paged
    from sparsebench.kernels.triton_decode import paged_attention

    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("thread-block clusters need Hopper or newer")
    g = torch.Generator(device="cuda").manual_seed(5)
    P, page, D = 2048, 64, 128
    kp = torch.randn(P, page, D, device="cuda", dtype=torch.bfloat16, generator=g)
    vp = torch.randn(P, page, D, device="cuda", dtype=torch.bfloat16, generator=g)
    B, R, NP = 2, 10, 300
    pages = torch.randint(0, P, (B, R, NP), device="cuda", generator=g, dtype=torch.int32)
    filled = torch.randint(1, page + 1, (P,), device="cuda", generator=g, dtype=torch.int32)  # tokens per page
    unwritten = torch.arange(page, device="cuda") >= filled[:, None]
    kp[unwritten] = float("nan")  # rows past a page's tokens hold NaN: they must never be read
    vp[unwritten] = float("nan")
    plen = filled[pages.long()]
    pages[0, 2, 7:] = -1  # a short row
    pages[1, 4] = -1  # a row with no pages: zeros
    pages[1, 5, ::3] = -1
    plen[0, 3, ::5] = 0  # entries with no tokens
    # rows of 1 query (per query head) and of 4 (a GQA group), as LServe's launch holds them
    q_cnt = torch.tensor([1, 4] * (R // 2), dtype=torch.int32, device="cuda").repeat(B, 1)
    q_off = (torch.cumsum(q_cnt.flatten(), 0) - q_cnt.flatten()).view(B, R).to(torch.int32)
    T = int(q_cnt.sum())
    q = torch.randn(T, 1, 1, D, device="cuda", dtype=torch.bfloat16, generator=g)
    ref = ref_paged(q.view(T, D), q_off.flatten(), q_cnt.flatten(), kp, vp, pages.view(-1, NP),
                     plen.view(-1, NP), 0.1)
    assert torch.isfinite(ref).all()
    for pps, stages in ((150, 1), (100, 2), (60, 3), (38, 4), (23, 2), (19, 2), (43, 3)):  # 2, 3, 5, 8, 14, 16, 7
        out = torch.full_like(q, float("nan"))
        paged_attention(q, kp, vp, pages, plen, 0.1, out=out, row_queries=(q_off, q_cnt, 4), pages_per_split=pps,
                        num_stages=stages, impl="cuda_cluster")
        assert not torch.isnan(out).any(), (pps, stages)
        assert rel(out.view(T, D), ref) < 1e-2, (pps, stages)
        assert out.view(T, D)[int(q_off[1, 4]): int(q_off[1, 4]) + 1].abs().max() == 0
    one = paged_attention(q, kp, vp, pages[..., :200], plen[..., :200], 0.1, row_queries=(q_off, q_cnt, 4),
                          pages_per_split=200, num_stages=2, impl="cuda_cluster")  # 1 split: no cluster partner
    ref1 = ref_paged(q.view(T, D), q_off.flatten(), q_cnt.flatten(), kp, vp, pages[..., :200].reshape(-1, 200),
                      plen[..., :200].reshape(-1, 200), 0.1)
    assert rel(one.view(T, D), ref1) < 1e-2
    # the same bits again, and as PDL dependents replayed in a CUDA graph
    first = out.clone()
    paged_attention(q, kp, vp, pages, plen, 0.1, out=out, row_queries=(q_off, q_cnt, 4), pages_per_split=43,
                    num_stages=3, impl="cuda_cluster")
    assert torch.equal(out, first)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(3):
            paged_attention(q, kp, vp, pages, plen, 0.1, out=out, row_queries=(q_off, q_cnt, 4),
                            pages_per_split=43, num_stages=3, impl="cuda_cluster", pdl=True)
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, first)
    # pages started before the dependency wait (early_kv): each row gets its own newest page (pool pages P.. P+rows),
    # which a kernel rewrites right before the launch in a graph; the launch must read the new contents (it reads
    # that page after the wait), and a second early launch, a PDL dependent of the first, gives the same bits
    rows = B * R
    hot = (P + torch.arange(rows, device="cuda", dtype=torch.int32)).view(B, R)
    pages_h = torch.cat([pages, hot.unsqueeze(-1)], -1).contiguous()
    plen_h = torch.cat([plen, torch.full((B, R, 1), page, device="cuda", dtype=plen.dtype)], -1).contiguous()
    kx = torch.cat([kp, torch.zeros(rows, page, D, device="cuda", dtype=kp.dtype)])
    vx = torch.cat([vp, torch.zeros(rows, page, D, device="cuda", dtype=vp.dtype)])
    new_k = torch.randn(rows, page, D, device="cuda", dtype=kp.dtype, generator=g)
    new_v = torch.randn(rows, page, D, device="cuda", dtype=kp.dtype, generator=g)
    ref_h = ref_paged(q.view(T, D), q_off.flatten(), q_cnt.flatten(), torch.cat([kp, new_k]), torch.cat([vp, new_v]),
                       pages_h.view(-1, NP + 1), plen_h.view(-1, NP + 1), 0.1)
    early = [torch.full_like(q, float("nan")) for _ in range(2)]
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        kx.index_copy_(0, hot.flatten().long(), new_k)
        vx.index_copy_(0, hot.flatten().long(), new_v)
        for o in early:
            paged_attention(q, kx, vx, pages_h, plen_h, 0.1, out=o, row_queries=(q_off, q_cnt, 4), pages_per_split=43,
                            num_stages=2, impl="cuda_cluster", pdl=True, early_kv=hot)
    graph.replay()
    torch.cuda.synchronize()
    assert rel(early[0].view(T, D), ref_h) < 1e-2 and torch.equal(early[0], early[1])
    plain = paged_attention(q, kx, vx, pages_h, plen_h, 0.1, row_queries=(q_off, q_cnt, 4), pages_per_split=43,
                            num_stages=2, impl="cuda_cluster")
    assert torch.equal(plain, early[0])
    with pytest.raises(ValueError, match="needs pdl"):
        paged_attention(q, kx, vx, pages_h, plen_h, 0.1, row_queries=(q_off, q_cnt, 4), pages_per_split=43,
                        impl="cuda_cluster", early_kv=hot)
    # rows of GQ queries each (no row tables) against the Triton kernel
    q4 = torch.randn(B, R, 4, D, device="cuda", dtype=torch.bfloat16, generator=g)
    got = paged_attention(q4, kp, vp, pages, plen, 0.1, pages_per_split=38, impl="cuda_cluster")
    assert rel(got, paged_attention(q4, kp, vp, pages, plen, 0.1, pages_per_split=38)) < 1e-2
    with pytest.raises(ValueError, match="pos_filter"):
        paged_attention(q4, kp, vp, pages, plen, 0.1, pages_per_split=38, impl="cuda_cluster",
                        pos_filter=(kp, 0, pages[..., 0]))
    with pytest.raises(ValueError, match="n_splits"):
        paged_attention(q4, kp, vp, pages, plen, 0.1, pages_per_split=4, impl="cuda_cluster")


def test_page_scores_with_summaries_read_before_the_dependency_wait():
    """page_scores_triton(early=True) as a PDL dependent in a graph: the same bits as an ordinary launch, with Q
    rewritten by the kernel before it (Q is read after the wait)."""
    from sparsebench.kernels.triton_decode import page_scores_triton

    g = torch.Generator(device="cuda").manual_seed(4)
    B, R, G, D, n_lp, lpp = 1, 4, 4, 128, 8192, 4
    kmin = torch.randn(B * R * n_lp, D, device="cuda", dtype=torch.bfloat16, generator=g)
    kmax = kmin + torch.rand(B * R * n_lp, D, device="cuda", generator=g).to(torch.bfloat16)
    lp = (torch.arange(B * R, device="cuda").view(B, R, 1) * n_lp + torch.arange(n_lp, device="cuda")).int()
    q = torch.randn(B, R, G, D, device="cuda", dtype=torch.bfloat16, generator=g)
    q_new = torch.randn_like(q)
    want = page_scores_triton(q_new, kmin, kmax, lp, lpp, "none", block_p=8, num_warps=2)
    out = [torch.full_like(want, float("nan")) for _ in range(2)]
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        q.copy_(q_new)
        for o in out:
            page_scores_triton(q, kmin, kmax, lp, lpp, "none", block_p=8, out=o, num_warps=2, pdl=True, early=True)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out[0], want) and torch.equal(out[1], want)


def test_top_pages_at_128k_pages_matches_torch_topk():
    """2048 physical pages per row (128K tokens of 64-token pages), 63 chosen + the forced last page."""
    from sparsebench.kernels.triton_decode import top_pages

    g = torch.Generator(device="cuda").manual_seed(3)
    rows, P, k_sel = 32, 2048, 64
    scores = torch.randn(rows, P, device="cuda", generator=g)
    n_pages = torch.randint(P // 2, P + 1, (rows,), device="cuda", generator=g)
    base = torch.arange(rows, device="cuda") * 10_000
    out = torch.full((rows, k_sel), -1, dtype=torch.int32, device="cuda")
    top_pages(scores, n_pages, base, k_sel, out)
    # the top-k launched as a PDL dependent of a kernel that triggers (LServe's selector step, config 'p')
    pdl_out = torch.full_like(out, -1)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        top_pages(scores, n_pages, base, k_sel, pdl_out, pdl="trigger")
        top_pages(scores, n_pages, base, k_sel, pdl_out, pdl=True)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(pdl_out, out)
    for r in range(rows):
        n = int(n_pages[r])
        want = scores[r, : n - 1].topk(k_sel - 1).indices.sort().values  # distinct random scores: no ties
        assert out[r, :-1].tolist() == (want + base[r]).tolist()
        assert int(out[r, -1]) == int(base[r]) + n - 1


def _top_pages_fixture(device):
    """Score rows with ties (at the cut too), -inf, NaN, many equal values, short histories (test_triton_kernels')."""
    g = torch.Generator().manual_seed(6)
    scores = torch.randn(4, 1100, generator=g)
    scores[1, 5] = scores[1, 9] = 10.0
    scores[0, 3] = scores[0, 7] = scores[0, 8] = scores[0, 30] = scores[0, 35] = scores[0, 36] = 5.0
    scores[1, 12] = -float("inf")
    scores[3] = torch.randint(-3, 3, (1100,), generator=g).float()
    scores[3, :4] = torch.tensor([-0.0, 0.0, -float("inf"), float("nan")])
    return scores.to(device), torch.tensor([40, 30, 8, 1100], device=device), \
        torch.tensor([100, 1000, 5000, 7], device=device)


@pytest.mark.parametrize("candidates", [1, 3, 7])
def test_cuda_top_pages_matches_the_triton_kernel(candidates):
    """impl="cuda" (kernels/cuda_topk.py) writes exactly what the Triton top-k writes: ties (at the cut too), NaN,
    -inf, short histories, k_sel 1 / 6 / 60 / 64, rows mapped into a wider output, 2048 pages (128K tokens), odd
    widths (scalar loads), and as a PDL dependent in a CUDA graph."""
    from sparsebench.kernels.triton_decode import top_pages

    scores, n_pages, base = _top_pages_fixture("cuda")
    for k_sel in (1, 6, 60):
        want = torch.full((4, 70), -7, dtype=torch.int32, device="cuda")
        got = torch.full_like(want, -7)
        top_pages(scores, n_pages, base, k_sel, want)
        top_pages(scores, n_pages, base, k_sel, got, impl="cuda", candidates=candidates)
        assert torch.equal(got, want), k_sel
    g = torch.Generator(device="cuda").manual_seed(3)
    for P in (2048, 1999, 200, 8192):
        rows = 32
        sc = torch.randn(rows, P, device="cuda", generator=g)
        sc[::3] = sc[::3].round()  # many ties
        sc[1::4] = sc[1::4].abs() * 1e-3 + 7  # a narrow range
        n_pages = torch.randint(1, P + 1, (rows,), device="cuda", generator=g)
        base = torch.arange(rows, device="cuda") * 10_000
        want = torch.full((2, 24, 64), -1, dtype=torch.int32, device="cuda")  # 16 rows per batch row into 24
        got = torch.full_like(want, -1)
        top_pages(sc, n_pages, base, 64, want, 16, 24)
        top_pages(sc, n_pages, base, 64, got, 16, 24, impl="cuda", candidates=candidates)
        assert torch.equal(got, want), P
    pdl_out = torch.full_like(got, -1)
    top_pages(sc, n_pages, base, 64, pdl_out, 16, 24, impl="cuda")  # (the default candidates' kernel loaded)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        top_pages(sc, n_pages, base, 64, pdl_out, 16, 24, pdl="trigger", impl="cuda")
        top_pages(sc, n_pages, base, 64, pdl_out, 16, 24, pdl=True, impl="cuda", candidates=candidates)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(pdl_out, want)
    with pytest.raises(ValueError, match="at most 8192"):
        top_pages(torch.zeros(1, 8193, device="cuda"), n_pages[:1], base[:1], 4, got, impl="cuda")
    with pytest.raises(ValueError, match="impl='cuda'"):
        top_pages(sc, n_pages, base, 64, got, 16, 24, ready=torch.zeros(48, dtype=torch.int32, device="cuda"))


def test_attention_acquires_rows_the_cuda_top_k_publishes():
    """top_pages(impl="cuda", ready=flags) then paged_attention(impl="cuda_cluster", pdl=True, early_kv=, ready=)
    in one CUDA graph, replayed with new scores each time: the attention starts each row's pages once the top-k has
    published that row, so it must read this replay's lists (every replay selects other pages), and the newest pages
    and Q that kernels rewrite before the top-k; static rows (flag 2) read as with early_kv; flags end as they began."""
    from sparsebench.kernels.triton_decode import paged_attention, top_pages

    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("thread-block clusters need Hopper or newer")
    g = torch.Generator(device="cuda").manual_seed(8)
    B, R_sel, R_st, P, k_sel, page, D = 2, 6, 2, 1024, 64, 64, 128
    R = R_sel + R_st
    n_st = B * R_st * 8  # static rows: 8 pages each, after the selecting rows' streams of P pages
    kp = torch.randn(B * R_sel * P + n_st, page, D, device="cuda", dtype=torch.bfloat16, generator=g)
    vp = torch.randn_like(kp)
    base = torch.arange(B * R_sel, device="cuda") * P  # each selecting row's first stream page
    n_pages = torch.full((B * R_sel,), P, device="cuda")
    ids = torch.full((B, R, k_sel), -1, dtype=torch.int32, device="cuda")
    plen = torch.full((B, R, k_sel), page, dtype=torch.int32, device="cuda")
    st_ids = (B * R_sel * P + torch.arange(n_st, device="cuda", dtype=torch.int32)).view(B, R_st, 8)
    ids[:, R_sel:, :8] = st_ids
    plen[:, R_sel:, 8:] = 0
    newest = torch.cat([(base.view(B, R_sel) + P - 1).int(), st_ids[..., -1]], 1).contiguous()
    ready = torch.zeros(B, R, dtype=torch.int32, device="cuda")
    ready[:, R_sel:] = 2
    q = torch.randn(B, R, 1, D, device="cuda", dtype=torch.bfloat16, generator=g)
    scores = torch.empty(B * R_sel, P, device="cuda")
    new_k = torch.empty(B * R, page, D, device="cuda", dtype=torch.bfloat16)
    new_v = torch.empty_like(new_k)
    new_q = torch.empty_like(q)
    out = torch.full_like(q, float("nan"))
    # the kernels' first launches (they load the modules, which a capture does not allow), then the graph
    top_pages(torch.zeros_like(scores), n_pages, base, k_sel, ids, R_sel, R, impl="cuda")
    paged_attention(q, kp, vp, ids, plen, 0.1, out=out, pages_per_split=16, num_stages=3, impl="cuda_cluster")
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        kp.index_copy_(0, newest.flatten().long(), new_k)  # the append: each row's newest page
        vp.index_copy_(0, newest.flatten().long(), new_v)
        q.copy_(new_q)  # the projection
        top_pages(scores, n_pages, base, k_sel, ids, R_sel, R, pdl="trigger", impl="cuda", ready=ready)
        paged_attention(q, kp, vp, ids, plen, 0.1, out=out, pages_per_split=16, num_stages=3, impl="cuda_cluster",
                        pdl=True, early_kv=newest, ready=ready)
    for _ in range(3):
        scores.copy_(torch.randn(B * R_sel, P, device="cuda", generator=g))
        new_q.copy_(torch.randn(new_q.shape, device="cuda", generator=g))
        new_k.copy_(torch.randn(new_k.shape, device="cuda", generator=g))
        new_v.copy_(torch.randn(new_v.shape, device="cuda", generator=g))
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        want_ids = torch.full_like(ids, -1)
        want_ids[:, R_sel:, :8] = st_ids
        top_pages(scores, n_pages, base, k_sel, want_ids, R_sel, R)
        assert torch.equal(ids, want_ids)
        assert ready[:, :R_sel].eq(0).all() and ready[:, R_sel:].eq(2).all()
        want = paged_attention(q, kp, vp, want_ids, plen, 0.1, pages_per_split=16)
        assert not torch.isnan(out).any() and rel(out, want) < 1e-2
    with pytest.raises(ValueError, match="ready must come with early_hot"):
        paged_attention(q, kp, vp, ids, plen, 0.1, pages_per_split=16, impl="cuda_cluster", pdl=True, ready=ready)



@pytest.mark.parametrize("rows,n,k,case", [(1, 117965, 13107, "uniform"), (8, 117965, 13107, "uniform"),
                                           (1, 7373, 819, "uniform"), (2, 117965, 13107, "sparse_zeros"),
                                           (2, 60000, 6000, "ties")])
def test_top_tokens_matches_sorted_reference(rows, n, k, case):
    """ALISA's token top-k at the benchmark's sizes (128K and 8K tokens, r = 0.2), also with most scores 0 and
    with five distinct values (ties from the lowest column), then replayed in a CUDA graph on new scores."""
    from alisa_kernel_checks import check_top_tokens, ref_top

    from sparsebench.kernels.token_topk import top_tokens

    g = torch.Generator(device="cuda").manual_seed(n + rows)
    if case == "uniform":
        S = torch.rand(rows, n, device="cuda", generator=g)
    elif case == "ties":
        S = torch.randint(0, 5, (rows, n), device="cuda", generator=g).float()
    else:
        S = torch.zeros(rows, n, device="cuda")
        S[:, ::23] = torch.rand(rows, len(range(0, n, 23)), device="cuda", generator=g)
    check_top_tokens(S, k)
    out = torch.empty(rows, k, dtype=torch.int32, device="cuda")
    top_tokens(S, k, out)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        top_tokens(S, k, out)
    for _ in range(2):
        S.copy_(torch.rand(rows, n, device="cuda", generator=g))
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out.long(), ref_top(S, k))


def test_alisa_decode_steps_match_torch_bf16():
    """ALISA's decode kernels (token top-k, attention with the score update) for 5 steps, window 3, against torch:
    sets, outputs (bf16), S and the ring, Llama-3-8B heads at 32K tokens."""
    from alisa_kernel_checks import check_alisa_steps

    check_alisa_steps(B=2, Hkv=8, G=4, D=128, N=32768, k=3277, W=3, steps=5, dtype=torch.bfloat16, device="cuda",
                      tol=1e-2)
