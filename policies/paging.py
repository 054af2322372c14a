"""Query-aware page selection shared by quest and lserve.

Quest's bound for a logical page with per-channel key minimum m and maximum M:
    U = sum_i max(q_i * m_i, q_i * M_i) = sum_i relu(q_i) * M_i + min(q_i, 0) * m_i
(no 1/sqrt(d)). A physical page scores the max of its logical pages (LServe's
hierarchical paging; Quest is the case physical == logical). Selection: if the stream's
history fits the budget B, every page; otherwise n_sel = min(max(min_pages, B / page), #pages)
pages: the top n_sel - 1 among all but the last page, plus the last page, always.
"""

from __future__ import annotations

import importlib.util

import torch

_TRITON = importlib.util.find_spec("triton") is not None  # triton is optional: without it CUDA uses the torch path


def page_scores(q: torch.Tensor, store, heads: tuple[int, ...], per_query_head: bool, reduce: str):
    """Physical-page scores for the given KV heads (the max of each page's logical-page bounds).

    q [B, Hq, D] -> (scores [B, R, P] fp32, -inf for empty pages; R = len(heads) * G when
    per_query_head, else len(heads) after reducing each query group with max or sum;
    summary bytes read [B]). On CUDA the Triton kernel (when installed) reads each KV head's summaries once.
    """
    if q.is_cuda and _TRITON:
        return _page_scores_cuda(q, store, heads, per_query_head, reduce)
    logical, nbytes = logical_page_scores(q, store, heads, per_query_head, reduce)
    per = store.page // store.lps
    B, R, NL = logical.shape
    P = -(-NL // per)
    if P * per != NL:
        logical = torch.nn.functional.pad(logical, (0, P * per - NL), value=float("-inf"))
    return logical.view(B, R, P, per).amax(-1), nbytes


def _page_scores_cuda(q, store, heads, per_query_head, reduce):
    from sparsebench.kernels.triton_decode import page_scores_triton

    B, Hq, D = q.shape
    G = Hq // store.h
    per = store.page // store.lps
    lp = store.logical_pages(heads)  # [B, nh, NL] summary rows, -1 past the tokens held
    q_rows = q.view(B, store.h, G, D)[:, list(heads)]
    mode = "none" if per_query_head else reduce
    s = page_scores_triton(q_rows, store.kmin.view(-1, D), store.kmax.view(-1, D), lp, per, mode)
    if per_query_head:
        s = s.flatten(1, 2)
    nbytes = (lp >= 0).sum((1, 2)) * 2 * D * store.kmin.element_size()
    return s, nbytes


def logical_page_scores(q: torch.Tensor, store, heads: tuple[int, ...], per_query_head: bool, reduce: str):
    """Logical-page bounds [B, R, NL] (torch), -inf for empty logical pages; and summary bytes read [B]."""
    B, Hq, D = q.shape
    G = Hq // store.h
    kmin, kmax, valid = store.summaries(heads)  # [B, nh, NL, D], valid [B, nh, NL]
    qh = q.view(B, store.h, G, D)[:, list(heads)].float()  # [B, nh, G, D]
    u = torch.einsum("bhgd,bhnd->bhgn", qh.clamp(min=0), kmax.float())
    u = u + torch.einsum("bhgd,bhnd->bhgn", qh.clamp(max=0), kmin.float())
    u = u.masked_fill(~valid.unsqueeze(2), float("-inf"))
    if per_query_head:
        scores = u.flatten(1, 2)
    elif reduce == "max":
        scores = u.amax(2)
    else:
        scores = u.sum(2)
    summary_bytes = valid.sum((1, 2)) * 2 * D * kmin.element_size()
    return scores, summary_bytes


def pages_per_step(page: int, budget: int, min_pages: int = 3) -> int:
    """Pages a selection reads per step once the history exceeds the budget: max(min_pages, budget / page)."""
    return max(min_pages, budget // page)


def select_pages(phys: torch.Tensor, n_tokens: torch.Tensor, page: int, budget: int,
                 min_pages: int = 3) -> torch.Tensor:
    """Stream pages to read, [B, R, W] ascending, -1 padded.

    phys [B, R, P] physical-page scores; n_tokens [B, R] tokens each stream holds.
    """
    B, R, P = phys.shape
    n_pages = -(-n_tokens // page)
    ar = torch.arange(P, device=phys.device)
    n_sel = torch.clamp(n_pages, max=pages_per_step(page, budget, min_pages))
    k = (n_sel - 1).clamp(min=0)
    cand = phys.masked_fill(ar >= (n_pages - 1).unsqueeze(-1), float("-inf"))
    kmax = int(k.max()) if k.numel() else 0
    if kmax > 0:
        top = cand.topk(kmax, dim=-1)
        ok = (torch.arange(kmax, device=phys.device) < k.unsqueeze(-1)) & torch.isfinite(top.values)
        chosen = torch.where(ok, top.indices, torch.full_like(top.indices, -1))
    else:
        chosen = torch.empty(B, R, 0, dtype=torch.long, device=phys.device)
    sel = torch.cat([chosen, (n_pages - 1).unsqueeze(-1)], dim=-1)
    fits = n_tokens <= budget
    if bool(fits.any()):
        every = torch.where(ar < n_pages.unsqueeze(-1), ar, torch.full_like(ar, -1))
        w = max(sel.shape[-1], P)
        sel = torch.nn.functional.pad(sel, (0, w - sel.shape[-1]), value=-1)
        every = torch.nn.functional.pad(every, (0, w - P), value=-1)
        sel = torch.where(fits.unsqueeze(-1), every, sel)
    return sort_pages(sel)


def sort_pages(sel: torch.Tensor) -> torch.Tensor:
    """Ascending page order, -1 padding last."""
    big = torch.iinfo(sel.dtype).max
    s = torch.where(sel < 0, torch.full_like(sel, big), sel).sort(-1).values
    return torch.where(s == big, torch.full_like(s, -1), s)
