"""The CUDA cluster decode kernel (kernels/cuda_decode.py) without a GPU: NVRTC compiles it for Hopper (no spills,
three CTAs per SM fit at 2 stages), and every refusal names its reason. Its output is checked on the GPU
(tests/test_gpu_kernels.py::test_cluster_paged_decode_matches_reference)."""

from __future__ import annotations

import re

import pytest
import torch

from sparsebench.kernels import cuda_decode, nvrtc
from sparsebench.kernels.triton_decode import paged_attention


def _nvrtc_or_skip():
    try:
        nvrtc.nvrtc_library()
    except RuntimeError as e:
        pytest.skip(str(e))


def test_cluster_kernel_compiles_for_sm90_without_spills_and_three_ctas_fit_an_sm():
    _nvrtc_or_skip()
    cubin, log = cuda_decode.compile_cubin("sm_90")
    assert cubin[:4] == b"\x7fELF"
    assert "0 bytes spill stores" in log and "0 bytes stack frame" in log, log
    regs = int(re.search(r"Used (\d+) registers", log).group(1))
    per_warp = -(-regs * 32 // 256) * 256  # registers are given to a warp in units of 256
    # three CTAs per SM at 2 stages (13-split configs such as 4x2x5ipfdekac: 260 CTAs on 132 SMs), two at 3 stages;
    # H100: 64K registers and 228 KB of shared memory per SM, 1 KB of it reserved per CTA
    assert 3 * per_warp * 128 // 32 <= 65536, log
    assert 3 * (cuda_decode.smem_bytes(2) + 1024) <= 228 * 1024
    assert 2 * (cuda_decode.smem_bytes(3) + 1024) <= 228 * 1024


def _inputs(dtype=torch.bfloat16, D=128, page=64):
    q = torch.zeros(1, 2, 4, D, dtype=dtype)
    kp = torch.zeros(8, page, D, dtype=dtype)
    pages = torch.zeros(1, 2, 16, dtype=torch.int32)
    return q, kp, pages, torch.full_like(pages, page)


def test_cluster_impl_refusals_name_the_reason():
    q, kp, pages, plen = _inputs()
    with pytest.raises(ValueError, match="Hopper"):  # CPU tensors
        paged_attention(q, kp, kp, pages, plen, 0.1, impl="cuda_cluster")
    with pytest.raises(ValueError, match="pos_filter, split_first"):
        paged_attention(q, kp, kp, pages, plen, 0.1, impl="cuda_cluster", split_first=True,
                        pos_filter=(kp, 0, pages[..., 0]))
    with pytest.raises(ValueError, match="num_warps=8"):
        paged_attention(q, kp, kp, pages, plen, 0.1, impl="cuda_cluster", num_warps=8)
    with pytest.raises(ValueError, match="impl='cuda'"):
        paged_attention(q, kp, kp, pages, plen, 0.1, impl="cuda")


def test_cluster_supports_lists_what_it_serves(monkeypatch):
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))

    class Props:
        shared_memory_per_block_optin = 227 * 1024

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda *a: Props())
    q, kp, pages, _ = _inputs()
    assert cuda_decode.supports(q, kp, 4, 8, 64, 3) is None
    assert "bf16 only" in cuda_decode.supports(q.half(), kp.half(), 4, 8, 64, 3)
    assert "pages of 64" in cuda_decode.supports(q, torch.zeros(8, 32, 128, dtype=torch.bfloat16), 4, 8, 64, 3)
    assert "1..4 queries" in cuda_decode.supports(q, kp, 8, 8, 64, 3)
    assert cuda_decode.supports(q, kp, 4, 16, 64, 2) is None  # clusters of 16 (non-portable; an H100 takes them)
    assert "1..16" in cuda_decode.supports(q, kp, 4, 17, 64, 3)
    assert "at most 256" in cuda_decode.supports(q, kp, 4, 2, 1000, 3)
    assert "ring must fit" in cuda_decode.supports(q, kp, 4, 8, 64, 7)  # 7 x 32 KB pages > 227 KB


def test_decode_config_flag_c_selects_the_cluster_kernel():
    from sparsebench.evals.latency_attention import decode_launch_opts

    paged, select = decode_launch_opts("4x2x8ipdc")
    assert paged == {"num_warps": 4, "num_stages": 2, "split_first": False, "strided": True, "short": False,
                     "static_pdl": True, "early": False, "pages_per_split": 8, "impl": "cuda_cluster"}
    assert select == {"top_pdl": True}
    assert "impl" not in decode_launch_opts("4x3x8sirpd")[0]
    paged, select = decode_launch_opts("4x2x8ipfdec")
    assert paged["early"] and paged["fresh_pdl"] and paged["impl"] == "cuda_cluster"
    assert select == {"top_pdl": True, "scores_early": True}


def test_early_pages_options_reach_the_launch_only_where_they_apply(monkeypatch):
    from sparsebench.kernels import bench_steps as bs

    ids = torch.tensor([[[5, 9, 7, -1], [3, -1, -1, -1], [-1, -1, -1, -1]]], dtype=torch.int32)
    plen = torch.tensor([[[64, 64, 10, 0], [64, 0, 0, 0], [0, 0, 0, 0]]], dtype=torch.int32)
    assert bs.newest_pages(ids, plen).tolist() == [[7, 3, -1]]
    newest = bs.newest_pages(ids, plen)
    monkeypatch.setattr(bs, "PAGED_OPTS", {"static_pdl": True, "early": True, "fresh_pdl": True})
    assert bs._paged_opts(newest=newest)["early_kv"] is newest  # static lists: a PDL dependent, pages early
    fresh = bs._paged_opts(fresh_lists=True, newest=newest)  # after a selection: a dependent, no page early
    assert fresh == {"pdl": True}
    monkeypatch.setattr(bs, "PAGED_OPTS", {"early": True})
    assert bs._paged_opts(newest=newest) == {}  # no PDL: nothing to start before


def test_early_pages_need_the_cluster_kernel():
    q, kp, pages, plen = _inputs()
    with pytest.raises(ValueError, match="early_kv"):
        paged_attention(q, kp, kp, pages, plen, 0.1, early_kv=pages[..., 0])


def test_cuda_top_k_compiles_without_spills_and_reads_its_options():
    from sparsebench.kernels import cuda_topk

    _nvrtc_or_skip()
    _, log = cuda_topk.compile_cubin("sm_90")
    for c in cuda_topk.CANDIDATES:
        rep = nvrtc.kernel_report(log, f"top_pages_c{c}")
        assert "0 bytes spill stores" in rep and "0 bytes stack frame" in rep, rep
        assert int(re.search(r"Used (\d+) registers", rep).group(1)) <= 64, rep  # 1024 threads per CTA fit
    with pytest.raises(ValueError, match="sm_80"):  # CPU tensors
        from sparsebench.kernels.triton_decode import top_pages

        top_pages(torch.zeros(2, 16), torch.tensor([16, 16]), torch.tensor([0, 16]), 4,
                  torch.zeros(2, 4, dtype=torch.int32), impl="cuda")
    with pytest.raises(ValueError, match="impl='fast'"):
        top_pages(torch.zeros(2, 16), torch.tensor([16, 16]), torch.tensor([0, 16]), 4,
                  torch.zeros(2, 4, dtype=torch.int32), impl="fast")


def test_decode_config_flags_k_and_a_select_the_cuda_top_k_and_ready_rows(monkeypatch):
    from sparsebench.evals.latency_attention import decode_launch_opts
    from sparsebench.kernels import bench_steps as bs

    paged, select = decode_launch_opts("4x3x8ipfdekac")
    assert paged["ready"] and paged["early"] and paged["fresh_pdl"] and paged["impl"] == "cuda_cluster"
    assert select == {"top_pdl": True, "scores_early": True, "top_impl": "cuda"}
    assert decode_launch_opts("4x3x8ipfdekc")[1]["top_impl"] == "cuda"
    assert "ready" not in decode_launch_opts("4x3x8ipfdekc")[0]
    monkeypatch.setattr(bs, "PAGED_OPTS", paged)
    monkeypatch.setattr(bs, "SELECT_OPTS", select)
    assert bs.ready_flags()
    newest, ready = torch.zeros(1, 3, dtype=torch.int32), torch.zeros(1, 3, dtype=torch.int32)
    fresh = bs._paged_opts(fresh_lists=True, newest=newest, ready=ready)
    assert fresh["ready"] is ready and fresh["early_kv"] is newest and fresh["pdl"] is True
    static = bs._paged_opts(newest=newest, ready=ready)  # reuse steps: early pages, no flags
    assert "ready" not in static and static["early_kv"] is newest
    monkeypatch.setattr(bs, "SELECT_OPTS", {"top_pdl": True})  # a Triton top-k would never publish
    with pytest.raises(ValueError, match="top_impl='cuda'"):
        bs.ready_flags()
