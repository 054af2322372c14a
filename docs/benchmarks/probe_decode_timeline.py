"""Where a batch-1 paged decode launch spends its time (run 16, docs/benchmarks/attention.md): the one-query kernel's
loop (data/run16_one_query_kernel.diff) with %globaltimer stamps per program: launched, after the PDL wait, first page
reduced, pages done, partial stored + row counter incremented, row combined. 16 rows of one query x `pages` random
64-token pages, `pps` pages per program (128 programs), 8 layers per CUDA graph, L2 evicted before each replay; the
stamps of the last timed replay. Run on a GPU box in a checkout with the diff applied:
  OUT=/tmp python3 docs/benchmarks/probe_decode_timeline.py 64 8 [pdl]   # writes $OUT/timeline_64_8[_pdl].json
"""
import json
import os
import sys

import torch
import triton
import triton.language as tl

from sparsebench.kernels import triton_decode as td
from sparsebench.timing import graph_ms

OUT = os.environ.get("OUT", "/tmp")
L_, PAGE, D = 8, 64, 128  # layers per graph, tokens per page, head dim


@triton.jit
def _now():
    """The GPU's nanosecond clock (%globaltimer: one clock for every SM)."""
    return tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False, pack=1)


@triton.jit
def _after(x):
    """_now(), read only once x is computed (its value is added as 0: a data dependence orders the read)."""
    return _now() + (tl.sum(x) > 1e30).to(tl.int64)


@triton.jit
def _smid():
    return tl.inline_asm_elementwise("mov.u32 $0, %smid;", "=r", [], dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def _kern(Q, KW, VW, PAGES, PLEN, ACC, M, L, O, CNT, TS, n_pages, pages_per_split, n_splits, sm_scale,
          PAGE: tl.constexpr, D: tl.constexpr, C: tl.constexpr, J: tl.constexpr, G: tl.constexpr, E: tl.constexpr,
          SC: tl.constexpr, PPS: tl.constexpr, PDL: tl.constexpr):
    DW: tl.constexpr = D // 2
    t00 = _now()
    split = tl.program_id(0)
    row = tl.program_id(1)
    first = split
    step = n_splits
    n_mine = tl.minimum(tl.cdiv(tl.maximum(n_pages - split, 0), n_splits), pages_per_split)
    lst = row * n_pages + first
    tok = tl.arange(0, G)[:, None, None, None] + tl.arange(0, J)[None, :, None, None] * G
    word = tl.arange(0, C)[None, None, :, None] * E + tl.arange(0, E)[None, None, None, :]
    off = tok * DW + word
    n_iter = td._split_entries(PAGES, PLEN, lst, step, n_mine, PPS)  # (static lists: read before the wait)
    td._pdl_enter(PDL)
    t0 = _now() + n_iter.to(tl.int64) * 0  # after the wait
    k_a, v_a, nt_a = td._entry_words(KW, VW, PAGES, PLEN, lst, 0, step, n_iter, tok, off, PAGE, DW)
    qk_scale = sm_scale * 1.44269504
    q_ev = tl.load(Q + row * D + 2 * word).to(tl.float32) * qk_scale
    q_od = tl.load(Q + row * D + 2 * word + 1).to(tl.float32) * qk_scale
    m_i = tl.full([G, 1, 1, 1], float("-inf"), tl.float32)
    l_i = tl.zeros([G, 1, 1, 1], tl.float32)
    acc_ev = tl.zeros([G, 1, C, E], tl.float32)
    acc_od = tl.zeros([G, 1, C, E], tl.float32)
    t1 = t0
    for it in range(0, n_iter, 2):
        k_b, v_b, nt_b = td._entry_words(KW, VW, PAGES, PLEN, lst, it + 1, step, n_iter, tok, off, PAGE, DW)
        m_i, l_i, acc_ev, acc_od = td._one_query_page(k_a, v_a, nt_a, tok, q_ev, q_od, m_i, l_i, acc_ev, acc_od, 0)
        if it == 0:
            t1 = _after(m_i)  # the first page reduced
        k_a, v_a, nt_a = td._entry_words(KW, VW, PAGES, PLEN, lst, it + 2, step, n_iter, tok, off, PAGE, DW)
        m_i, l_i, acc_ev, acc_od = td._one_query_page(k_b, v_b, nt_b, tok, q_ev, q_od, m_i, l_i, acc_ev, acc_od, 0)
    t2 = _after(m_i)
    m_row = tl.max(m_i, 0, keep_dims=True)
    m_rs = tl.where(m_row == float("-inf"), 0.0, m_row)
    w = tl.where(m_i == float("-inf"), 0.0, tl.exp2(m_i - m_rs))
    out = row * n_splits + split
    tl.store(ACC + out * D + 2 * word, tl.sum(acc_ev * w, 0, keep_dims=True))
    tl.store(ACC + out * D + 2 * word + 1, tl.sum(acc_od * w, 0, keep_dims=True))
    tl.store(M + out + tl.zeros([1, 1, 1, 1], tl.int32), m_row)
    tl.store(L + out + tl.zeros([1, 1, 1, 1], tl.int32), tl.sum(l_i * w, 0, keep_dims=True))
    last = td._last_of_row(CNT, row, n_splits)
    t3 = _now()
    if last:
        td._combine_row(ACC, M, L, O, row, row, 1, n_splits, 1, 1, D, SC, n_splits)
    t4 = _now() + last.to(tl.int64) * 0
    base = TS + (row * n_splits + split) * 8  # stamps 0-4, the row's last program?, SM id, launched
    tl.store(base + 0, t0)
    tl.store(base + 1, t1)
    tl.store(base + 2, t2)
    tl.store(base + 3, t3)
    tl.store(base + 4, t4)
    tl.store(base + 5, last.to(tl.int64))
    tl.store(base + 6, _smid().to(tl.int64))
    tl.store(base + 7, t00)


def layer_inputs(gen, n_pages: int, pps: int):
    """One layer: K / V pools as int32 words (4 KV heads x 2048 pages), 16 rows of n_pages random pages of their KV
    head's, q, the split partials, the stamps."""
    kp = torch.randn(4 * 2048, PAGE, D, device="cuda", dtype=torch.bfloat16, generator=gen)
    vp = torch.randn_like(kp)
    ret = torch.stack([torch.randperm(2048, device="cuda", generator=gen)[:n_pages] + (r // 4) * 2048
                       for r in range(16)]).int()
    q = torch.randn(16, D, device="cuda", dtype=torch.bfloat16, generator=gen)
    n_splits = triton.cdiv(n_pages, pps)
    acc = torch.empty(16, n_splits, D, device="cuda")
    m = torch.empty(16, n_splits, device="cuda")
    ts = torch.zeros(16 * n_splits, 8, dtype=torch.int64, device="cuda")
    return (kp.view(torch.int32), vp.view(torch.int32), ret, torch.full_like(ret, PAGE), q, acc, m,
            torch.empty_like(m), torch.empty_like(q), ts, n_splits)


def summary(ts, t0: int, layer: int) -> dict:
    """A layer's stamps in µs from t0: spreads and medians over its programs."""
    rel = lambda c: (ts[:, c] - t0) / 1000.0  # noqa: E731
    s, f1, e, a, c = rel(0), rel(1), rel(2), rel(3), rel(4)
    last = ts[:, 5].bool()
    return dict(layer=layer, launched_min=rel(7).min().item(), start_min=s.min().item(), start_max=s.max().item(),
                first_page_med=(f1 - s).median().item(), loop_end_min=e.min().item(),
                loop_end_med=e.median().item(), loop_end_max=e.max().item(), atomic_med=(a - e).median().item(),
                combine_med=(c - a)[last].median().item(), end_max=c.max().item(), loop_med=(e - s).median().item(),
                loop_max=(e - s).max().item(), sms=len(set(ts[:, 6].tolist())))


def main():
    npg = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    pps = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    pdl = len(sys.argv) > 3 and sys.argv[3] == "pdl"
    gen = torch.Generator(device="cuda").manual_seed(0)
    layers = [layer_inputs(gen, npg, pps) for _ in range(L_)]
    cnt = torch.zeros(1 << 14, dtype=torch.int32, device="cuda")

    def step(i):
        for kw, vw, ret, plen, q, acc, m, lse, o, ts, ns in layers:
            _kern[(ns, 16)](q, kw, vw, ret, plen, acc, m, lse, o, cnt, ts, npg, pps, ns, 0.088, PAGE=PAGE, D=D, C=4,
                            J=2, G=32, E=16, SC=8, PPS=triton.next_power_of_2(pps), PDL=pdl, num_warps=4,
                            launch_pdl=pdl)

    t = graph_ms(step, l2="evicted", replays=50) / L_ * 1e3
    print(f"pages/row {npg} pps {pps} pdl {pdl}: {t:.2f} us per layer")
    # the stamps of the last timed graph replay (L2 evicted before it), from the first layer's first start
    torch.cuda.synchronize()
    t0 = min(lay[9][:, 0].min().item() for lay in layers)
    res = [summary(lay[9].cpu(), t0, li) for li, lay in enumerate(layers)]
    for row in res:
        print({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()})
    json.dump(res, open(f"{OUT}/timeline_{npg}_{pps}{'_pdl' if pdl else ''}.json", "w"), indent=1)


if __name__ == "__main__":
    main()
