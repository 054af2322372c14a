"""Brute-force oracles: dense masked attention written from POLICIES.md, independently of the store,
the plans and the backends. One row at a time, contiguous K / V, explicit masks, plain loops.

Each oracle takes one row's tokens in logical order (prefill first, then one decode token
at a time) and returns every query's output:
    Q [Hq, N, D], K / V [Hkv, N, D], L prompt tokens, N - L decode steps -> out [N, Hq, D]
"""

from __future__ import annotations

import math

import numpy as np
import torch


def attend(q, K, V, keys, scale):
    """One query head: softmax over the key positions `keys` (a bool mask over positions)."""
    s = (K[keys].double() @ q.double()) * scale
    p = torch.softmax(s.double(), 0)
    probs = torch.zeros(K.shape[0], dtype=torch.float64)
    probs[keys.nonzero().flatten()] = p
    return (p.unsqueeze(1) * V[keys].double()).sum(0), probs


def causal(i, n):
    return torch.arange(n) <= i


def window(i, n, sink, win):
    j = torch.arange(n)
    return (j <= i) & ((j < sink) | (i - j < win))


class Oracle:
    """Default: dense prefill and decode over every token. Subclasses override the masks."""

    def __init__(self, G, scale, layer=0, n_layers=1):
        self.G, self.scale, self.layer, self.n_layers = G, scale, layer, n_layers

    def run(self, Q, K, V, L):
        Hq, N, D = Q.shape
        out = torch.zeros(N, Hq, D, dtype=torch.float64)
        self.Q, self.K, self.V, self.L = Q, K, V, L
        probs = torch.zeros(Hq, L, L, dtype=torch.float64)
        for i in range(L):
            for h in range(Hq):
                out[i, h], probs[h, i] = attend(Q[h, i], K[h // self.G, :L], V[h // self.G, :L],
                                                self.prefill_mask(h // self.G, i, L), self.scale)
        self.after_prefill(probs)
        for i in range(L, N):
            self.before_step(i)
            step_probs = torch.zeros(Hq, i + 1, dtype=torch.float64)
            kv = [self.kv_at_step(K[j, : i + 1], V[j, : i + 1], i) for j in range(K.shape[0])]
            for h in range(Hq):
                m = self.decode_mask(h, i)
                kh, vh = kv[h // self.G]
                out[i, h], step_probs[h] = attend(Q[h, i], kh, vh, m, self.scale)
            self.after_step(i, step_probs)
        return out

    def prefill_mask(self, kv, i, n):
        return causal(i, n)

    def after_prefill(self, probs):
        pass

    def kv_at_step(self, K, V, i):
        return K, V

    def before_step(self, i):
        pass

    def decode_mask(self, h, i):
        return causal(i, i + 1)

    def after_step(self, i, probs):
        pass


class StreamingLLM(Oracle):
    def __init__(self, sink, win, **kw):
        super().__init__(**kw)
        self.sink, self.win = sink, win

    def prefill_mask(self, kv, i, n):
        return window(i, n, self.sink, self.win)

    def decode_mask(self, h, i):
        return window(i, i + 1, self.sink, self.win)


class StreamingHeads(Oracle):
    """retrieval[kv] True = full attention; streaming heads: prefill (psink, plocal), decode (sink, local)."""

    def __init__(self, retrieval, sink, local, psink, plocal, page=None, **kw):
        super().__init__(**kw)
        self.retrieval, self.sink, self.local, self.psink, self.plocal, self.page = retrieval, sink, local, psink, plocal, page

    def prefill_mask(self, kv, i, n):
        return causal(i, n) if self.retrieval[kv] else window(i, n, self.psink, self.plocal)

    def streaming_decode(self, i):
        if self.page is None:
            return window(i, i + 1, self.sink, self.local)
        j = torch.arange(i + 1)
        first_page = i // self.page - self.local // self.page + 1
        return (j < self.sink) | (j // self.page >= first_page)

    def decode_mask(self, h, i):
        kv = h // self.G
        return self.retrieval_decode(h, i) if self.retrieval[kv] else self.streaming_decode(i)

    def retrieval_decode(self, h, i):
        return causal(i, i + 1)


def quest_page_scores(q, K, n, lps):
    """Quest bound per logical page of lps tokens over K[:n]: sum_d max(q_d min_d, q_d max_d)."""
    pages = math.ceil(n / lps)
    out = torch.empty(pages, dtype=torch.float64)
    for p in range(pages):
        blk = K[p * lps : min(n, (p + 1) * lps)].double()
        lo, hi = blk.min(0).values, blk.max(0).values
        out[p] = torch.maximum(q.double() * lo, q.double() * hi).sum()
    return out


def pick_pages(phys_scores, n_pages, budget, page, min_pages):
    """n_sel = min(max(min_pages, budget / page), #pages): top n_sel - 1 among all but the last, + last."""
    n_sel = min(max(min_pages, budget // page), n_pages)
    others = phys_scores[: n_pages - 1]
    top = torch.topk(others, n_sel - 1).indices.tolist() if n_sel > 1 else []
    return set(top) | {n_pages - 1}


def pages_mask(pages, page, n):
    j = torch.arange(n)
    m = torch.zeros(n, dtype=torch.bool)
    for p in pages:
        m |= (j // page) == p
    return m


class Quest(Oracle):
    def __init__(self, page, budget, min_pages=3, reduce="max", dense_layers=(), **kw):
        super().__init__(**kw)
        self.page, self.budget, self.min_pages, self.reduce, self.dense_layers = page, budget, min_pages, reduce, dense_layers

    def decode_mask(self, h, i):
        n = i + 1
        if self.layer in self.dense_layers or n <= self.budget:
            return causal(i, n)
        kv = h // self.G
        per_head = [quest_page_scores(self.Q[g, i], self.K[kv], n, self.page) for g in range(kv * self.G, (kv + 1) * self.G)]
        s = torch.stack(per_head)
        s = s.amax(0) if self.reduce == "max" else s.sum(0)
        pages = pick_pages(s, math.ceil(n / self.page), self.budget, self.page, self.min_pages)
        return pages_mask(pages, self.page, n)


class LServe(StreamingHeads):
    """Streaming heads as above; retrieval heads: hierarchical pages chosen per query head,
    recomputed when n % reuse == 0 (or first decode step), otherwise the previous choice plus
    the current last page."""

    def __init__(self, page, lpage, budget, reuse, min_pages=3, **kw):
        super().__init__(**kw)
        self.ppage, self.lpage, self.budget, self.reuse, self.min_pages = page, lpage, budget, reuse, min_pages
        self.cached = {}

    def retrieval_decode(self, h, i):
        n = i + 1
        if n <= self.budget:
            return causal(i, n)
        n_pages = math.ceil(n / self.ppage)
        if h not in self.cached or n % self.reuse == 0:
            logical = quest_page_scores(self.Q[h, i], self.K[h // self.G], n, self.lpage)
            per = self.ppage // self.lpage
            phys = torch.stack([logical[p * per : (p + 1) * per].max() for p in range(n_pages)])
            self.cached[h] = pick_pages(phys, n_pages, self.budget, self.ppage, self.min_pages)
        return pages_mask(self.cached[h] | {n_pages - 1}, self.ppage, n)


def fake_int8(x, page, n):
    """Keys / values as an INT8 store reads them when n tokens are held: every full page of `page` tokens
    quantized per channel (scale = (max - min) / 255, zero = -round(min / scale)), the open page exact."""
    out = x.clone().double()
    for p0 in range(0, (n // page) * page, page):
        blk = x[p0 : p0 + page].double()
        lo, hi = blk.min(0).values, blk.max(0).values
        scale = (hi - lo) / 255
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero = -torch.round(lo / scale)
        q = torch.clamp(torch.round(blk / scale) + zero, 0, 255)
        out[p0 : p0 + page] = (q - zero) * scale
    return out


class Alisa(Oracle):
    """k = max(1, round_half_up(n r / 2)); local = k newest; global = top-k by S outside local; S =
    sum over the last W rows (W = k, or score_window) and every head of the weights used."""

    def __init__(self, ratio, score_window=None, int8_page=None, **kw):
        super().__init__(**kw)
        self.ratio, self.score_window, self.int8_page = ratio, score_window, int8_page
        self.rows = []  # each: dense vector over positions (zeros where not attended)

    def kv_at_step(self, K, V, i):
        if self.int8_page is None:
            return K, V
        return fake_int8(K, self.int8_page, i + 1), fake_int8(V, self.int8_page, i + 1)

    def k(self, n):
        return max(1, int(math.floor(n * self.ratio / 2 + 0.5)))

    def w(self, n):
        return self.k(n) if self.score_window is None else self.score_window

    def after_prefill(self, probs):  # probs [Hq, L, L]
        L = self.L
        for i in range(max(0, L - self.w(L)), L):
            self.rows.append(probs[:, i].sum(0))

    def before_step(self, i):
        n = i + 1
        k = self.k(n)
        if 2 * k >= n:
            self.mask = causal(i, n)
            return
        S = torch.zeros(n, dtype=torch.float64)
        for r in self.rows[-self.w(n):]:
            S[: r.numel()] += r
        local = torch.arange(n) >= n - k
        cand = S.clone()
        cand[n - k :] = float("-inf")
        glob = torch.zeros(n, dtype=torch.bool)
        glob[torch.topk(cand, k).indices] = True
        self.mask = local | glob

    def decode_mask(self, h, i):
        return self.mask

    def after_step(self, i, probs):
        self.rows.append(probs.sum(0))


class H2O(Oracle):
    """Per KV head: S = attention received (summed over the group); prefill keeps the recent + top heavy;
    decode: when full, the new token replaces the lowest-S token older than the recent window, then attends."""

    def __init__(self, heavy, recent, **kw):
        super().__init__(**kw)
        self.heavy, self.recent = heavy, recent
        self.budget = heavy + recent

    def after_prefill(self, probs):
        L = self.L
        Hkv = self.K.shape[0]
        self.S = [torch.zeros(self.Q.shape[1], dtype=torch.float64) for _ in range(Hkv)]
        self.held = []
        for kv in range(Hkv):
            self.S[kv][:L] = probs[kv * self.G : (kv + 1) * self.G].sum((0, 1))
            held = set(range(L))
            if L > self.budget:
                recent = set(range(L - self.recent, L))
                older = torch.tensor(sorted(held - recent))
                top = torch.topk(self.S[kv][older], self.heavy).indices
                held = recent | set(older[top].tolist())
            self.held.append(held)

    def before_step(self, i):
        for kv, held in enumerate(self.held):
            if len(held) >= self.budget:
                cands = [j for j in held if j <= i - self.recent]
                victim = min(cands, key=lambda j: self.S[kv][j].item())
                held.discard(victim)
            held.add(i)

    def decode_mask(self, h, i):
        m = torch.zeros(i + 1, dtype=torch.bool)
        m[sorted(self.held[h // self.G])] = True
        return m

    def after_step(self, i, probs):
        for kv in range(len(self.held)):
            self.S[kv][: i + 1] += probs[kv * self.G : (kv + 1) * self.G].sum(0)


class SnapKV(Oracle):
    """Prefill dense; if L > C, per KV head keep the last `window` tokens + top (C_l - window) prefix keys by
    (window-query attention summed, max-pooled, averaged over the group); decode over kept + new."""

    def __init__(self, budget, win, kernel, beta=None, **kw):
        super().__init__(**kw)
        self.budget, self.win, self.kernel, self.beta = budget, win, kernel, beta

    def prefix_budget(self, L):
        total = self.budget - self.win
        if self.beta is None or L < 2 * total or self.n_layers == 1:
            return total
        lo = total // self.beta
        hi = 2 * total - lo
        if hi >= L - self.win:
            hi = L - self.win
            lo = 2 * total - hi
        return hi - self.layer * ((hi - lo) // (self.n_layers - 1))

    def after_prefill(self, probs):
        L, w = self.L, self.win
        Hkv = self.K.shape[0]
        self.held = []
        for kv in range(Hkv):
            if L <= self.budget:
                self.held.append(set(range(L)))
                continue
            per_head = []
            for h in range(kv * self.G, (kv + 1) * self.G):
                s = probs[h, L - w :, : L - w].sum(0)  # window queries -> prefix keys
                pooled = torch.tensor([s[max(0, j - self.kernel // 2) : j + self.kernel // 2 + 1].max().item()
                                       for j in range(L - w)], dtype=torch.float64)
                per_head.append(pooled)
            score = torch.stack(per_head).mean(0)
            order = torch.sort(score, descending=True, stable=True).indices  # ties: earlier position first
            top = order[: self.prefix_budget(L)].tolist()
            self.held.append(set(top) | set(range(L - w, L)))

    def decode_mask(self, h, i):
        m = torch.zeros(i + 1, dtype=torch.bool)
        m[sorted(self.held[h // self.G] | set(range(self.L, i + 1)))] = True
        return m


def binarize_ref(gates, sparsity, seed=42):
    g = np.clip(np.asarray(gates, dtype=np.float64), 0, 1) + np.random.RandomState(seed).uniform(0, 1e-6, np.shape(gates))
    thr = 2.0 if sparsity >= 1 else (-1.0 if sparsity <= 0 else np.quantile(g, sparsity))
    return g >= thr


def rope(x, pos, inv_freq):
    """Independent RoPE (rotate_half form) of raw vectors x [..., D] at integer positions."""
    ang = torch.as_tensor(pos, dtype=torch.float64).unsqueeze(-1) * inv_freq.double()
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    h = x.shape[-1] // 2
    x = x.double()
    return x * cos + torch.cat([-x[..., h:], x[..., :h]], -1) * sin


def streaming_cache_positions(Qraw, Kraw, V, L, sink, win, G, scale, inv_freq):
    """StreamingLLM with positions inside the cache: query i sees keys j <= i with j < sink or i - j < win;
    visible keys take positions 0..m-1 in position order, the query position m - 1."""
    Hq, N, D = Qraw.shape
    out = torch.zeros(N, Hq, D, dtype=torch.float64)
    for i in range(N):
        vis = window(i, i + 1, sink, win).nonzero().flatten()
        m = vis.numel()
        for h in range(Hq):
            kv = h // G
            q = rope(Qraw[h, i], m - 1, inv_freq)
            k = rope(Kraw[kv, vis], torch.arange(m), inv_freq)
            p = torch.softmax((k @ q) * scale, 0)
            out[i, h] = (p.unsqueeze(1) * V[kv, vis].double()).sum(0)
    return out
