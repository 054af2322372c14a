"""Static decode steps for the attention benchmark (what an engine holds for one layer), per policy and backend.

`build_decode_step(policy, backend, B, N, Hq, Hkv, D, dtype)` returns (step(i), steps, info): `step`
only launches kernels on preallocated tensors, so a CUDA graph can capture `steps` consecutive
calls (one reuse cycle for LServe); info["bytes"] counts the bytes a step must read (selected
K / V, page summaries on selection steps, amortised); info["check"]() compares one step's output
with dense math over the same selected tokens; info["parts"] names the step's kernels (LServe:
selector = page scores + top-k, attention; ALISA: select = the token top-k, attention = with the score update),
each callable alone for a per-part time.
Policies run with their dataclass defaults (`defaults`: the POLICIES.md parameters, read from the policy classes,
not repeated here): StreamingLLM sink 4 + window 1020; DuoAttention streaming heads (half the KV heads) sink 64 +
local 256; Quest pages of 16, budget 1024; LServe pages 64 / 16, budget 4096, reuse 4, streaming heads sink 128 +
local 256; ALISA r = 0.2 (k = round(N r / 2)).
"""

from __future__ import annotations

import math

import torch

from sparsebench.kernels.triton_decode import page_scores_triton, paged_attention, select_pages


def check_close(out, ref) -> str:
    if torch.isnan(out).any():
        raise AssertionError("NaN in the output")
    rel = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
    if rel > 1e-2:
        raise AssertionError(f"relative error {rel:.2e} > 1e-2 against the reference")
    return f"rel err {rel:.1e}"


def defaults(policy: str):
    """A policy's dataclass defaults as attributes (no policy is built: streaming heads would need a pattern)."""
    from dataclasses import MISSING, fields
    from types import SimpleNamespace

    from sparsebench.policies import POLICIES

    return SimpleNamespace(**{f.name: f.default for f in fields(POLICIES.get(policy)) if f.default is not MISSING})


def n_selected(p, pages: int) -> int:
    """Pages a Quest / LServe selection (policy defaults p) reads from a history of `pages`, the last one forced."""
    from sparsebench.policies.paging import pages_per_step

    return min(pages_per_step(p.page_size, p.budget, p.min_pages), pages)


DEV = "cuda"  # the device the steps run on (tests set "cpu" under TRITON_INTERPRET=1)
PAGED_OPTS: dict = {}  # paged_attention launch options the benchmark sweeps (num_warps, num_stages, pages_per_split,
# split_first, strided; "short": LServe's streaming rows as short rows; "static_pdl": launches whose page lists are not
# fresh as PDL dependents; "early": those launches start their pages before the grid-dependency wait; "ready": the
# launch after a CUDA top-k acquires each row's list as the top-k publishes it; see `_paged_opts`)
SELECT_OPTS: dict = {}  # select_pages launch options (block_p, num_warps, top_impl, ...); the defaults unless set
ALISA_OPTS: dict = {}  # alisa_attention launch options (tok_per_split, block_t, num_warps, num_stages, block)


class Pool:
    """A paged pool for `streams` streams; stream s owns pages [s * pages_per_stream, ...) in order."""

    def __init__(self, streams: int, tokens: int, page: int, D: int, dtype, gen, summary_page: int | None = None):
        self.page, self.D, self.tokens = page, D, tokens
        self.pps = -(-tokens // page)
        P = streams * self.pps
        self.k = torch.randn(P, page, D, device=DEV, dtype=dtype, generator=gen)
        self.v = torch.randn(P, page, D, device=DEV, dtype=dtype, generator=gen)
        if summary_page:
            lpp = page // summary_page
            blk = self.k.view(P, lpp, summary_page, D)
            valid = (torch.arange(self.pps * page, device=DEV).view(self.pps, lpp, summary_page) < tokens)
            valid = valid.repeat(streams, 1, 1).unsqueeze(-1)
            big = torch.finfo(dtype).max
            self.kmin = torch.where(valid, blk, big).amin(2).reshape(P * lpp, D).contiguous()
            self.kmax = torch.where(valid, blk, -big).amax(2).reshape(P * lpp, D).contiguous()
            self.lpp = lpp

    def pages(self, stream_ids: torch.Tensor, sel: torch.Tensor | None = None):
        """(pool page ids, tokens per page) for streams [B, R] and stream pages sel [B, R, n] (None = all)."""
        if sel is None:
            sel = torch.arange(self.pps, device=DEV).expand(*stream_ids.shape, self.pps)
        ids = torch.where(sel >= 0, stream_ids.unsqueeze(-1) * self.pps + sel.clamp(min=0), -1)
        plen = (self.tokens - sel * self.page).clamp(min=0, max=self.page)
        return ids.to(torch.int32), torch.where(sel >= 0, plen, 0).to(torch.int32)

    def dense_view(self, B: int, H: int):
        return self.k.view(B, H, self.pps * self.page, self.D)[:, :, : self.tokens], \
            self.v.view(B, H, self.pps * self.page, self.D)[:, :, : self.tokens]


def ready_flags() -> bool:
    """Whether the selector step's top-k publishes its rows and the attention after it acquires them (PAGED_OPTS
    "ready"): both sides or neither, since a launch that waits on rows no top-k publishes would never start."""
    if not PAGED_OPTS.get("ready"):
        return False
    need = {"fresh_pdl": PAGED_OPTS.get("fresh_pdl"), "early": PAGED_OPTS.get("early"),
            "impl='cuda_cluster'": PAGED_OPTS.get("impl") == "cuda_cluster",
            "top_impl='cuda'": SELECT_OPTS.get("top_impl") == "cuda"}
    if not all(need.values()):
        raise ValueError(f"ready (rows published by the top-k) needs {', '.join(k for k, v in need.items() if not v)}")
    return True


def _paged_opts(short_rows=None, fresh_lists: bool = False, newest=None, ready=None) -> dict:
    """PAGED_OPTS as paged_attention's keywords: "short" becomes short_rows=short_rows where the step has short
    rows, and is dropped elsewhere; "static_pdl" makes the launch a PDL dependent (pdl=True) where its page lists
    were not just written by a selection (fresh_lists False: static lists, an LServe reuse step). After a selection
    the launch stays ordinary (as a dependent of the top-k it lost in run 12, with the Triton kernel), unless
    "fresh_pdl" (fresh_lists True: a PDL dependent too; run 18, the cluster kernel). "early" (with static_pdl) becomes
    early_kv=newest: each row's newest page ([B, R] pool ids), the one a model's append before the launch writes,
    is read after the grid-dependency wait and the others may start before it. "ready" (after a selection, with
    `ready_flags`): ready=ready ([B, R] int32 flags the top-k publishes each row through; static rows 2) and
    early_kv=newest, so each row's pages start as soon as the top-k has written its list."""
    opts = dict(PAGED_OPTS)
    if opts.pop("short", False) and short_rows is not None:
        opts["short_rows"] = short_rows
    if opts.pop("static_pdl", False) and not fresh_lists:
        opts["pdl"] = True
    if opts.pop("fresh_pdl", False) and fresh_lists:  # a PDL dependent of the top-k that wrote its lists
        opts["pdl"] = True
    if opts.pop("early", False) and not fresh_lists and opts.get("pdl") is True and newest is not None:
        opts["early_kv"] = newest
    if opts.pop("ready", False) and fresh_lists and ready is not None and ready_flags():
        opts["ready"], opts["early_kv"] = ready, newest
    return opts


def newest_pages(ids, plen) -> torch.Tensor:
    """[..., NP] page lists -> [...] int32: the pool id of each row's last entry with tokens (-1: none)."""
    has = plen > 0
    last = torch.where(has, torch.arange(ids.shape[-1], device=ids.device), -1).amax(-1, keepdim=True)
    return torch.where(last >= 0, ids.gather(-1, last.clamp(min=0)), -1).squeeze(-1).to(torch.int32).contiguous()


def ref_paged(q_flat, q_off, q_cnt, k_pool, v_pool, pages, plen, scale):
    """fp32 attention of each row's queries over its listed pages' valid tokens (rows with none: zeros).
    q_flat [T, D]; q_off / q_cnt [rows]: row r's queries q_off[r] .. + q_cnt[r]; k_pool / v_pool [P, page, D];
    pages / plen [rows, NP] (page id, -1 = none; valid tokens in the page)."""
    out = torch.zeros(q_flat.shape, dtype=torch.float32, device=q_flat.device)
    for r, (o, c) in enumerate(zip(q_off.tolist(), q_cnt.tolist())):
        keep = [(p, n) for p, n in zip(pages[r].tolist(), plen[r].tolist()) if p >= 0 and n > 0]
        if not keep:
            continue
        k = torch.cat([k_pool[p, :n] for p, n in keep]).float()
        v = torch.cat([v_pool[p, :n] for p, n in keep]).float()
        out[o: o + c] = torch.softmax(q_flat[o: o + c].float() @ k.T * scale, -1) @ v
    return out


def _ref_pages(q_rows, pool: Pool, ids, plen, scale):
    """`ref_paged` for rows of GQ queries q_rows [B, R, GQ, D], row (b, r) over its list ids / plen [B, R, NP]."""
    B, R, GQ, D = q_rows.shape
    off = torch.arange(B * R) * GQ
    return ref_paged(q_rows.reshape(-1, D), off, torch.full_like(off, GQ), pool.k, pool.v, ids.reshape(B * R, -1),
                     plen.reshape(B * R, -1), scale).view(B, R, GQ, D)


def build_decode_step(policy: str, backend: str, B: int, N: int, Hq: int, Hkv: int, D: int, dtype, cfg=None,
                      device: str = "cuda"):
    global DEV
    DEV = device
    G = Hq // Hkv
    gen = torch.Generator(device=DEV).manual_seed(N * 31 + B)
    scale = 1 / math.sqrt(D)
    q = torch.randn(B, Hq, D, device=DEV, dtype=dtype, generator=gen)
    kv_bytes = 2 * D * torch.tensor([], dtype=dtype).element_size()  # K + V per token and head
    streams = torch.arange(B * Hkv, device=DEV).view(B, Hkv)
    if backend == "flex":
        return _flex_step(policy, B, N, Hq, Hkv, D, dtype, q, gen, scale, kv_bytes)

    if policy == "full" and backend == "sdpa":
        import torch.nn.functional as F

        pool = Pool(B * Hkv, N, 64, D, dtype, gen)
        K, V = pool.dense_view(B, Hkv)
        q4 = q.unsqueeze(2)
        out = torch.empty_like(q4)

        def step(i):
            out.copy_(F.scaled_dot_product_attention(q4, K, V, scale=scale, enable_gqa=True))

        ids, plen = pool.pages(streams)
        return step, 1, {"bytes": B * Hkv * N * kv_bytes, "check": lambda: (step(0), check_close(
            out.view(B, Hkv, G, D), _ref_pages(q.view(B, Hkv, G, D), pool, ids, plen, scale)))[1]}

    if policy in ("full", "streaming_llm", "streaming_heads"):
        p = defaults(policy)
        if policy == "full":
            pool = Pool(B * Hkv, N, 64, D, dtype, gen)
            ids, plen = pool.pages(streams)
            tokens = B * Hkv * N
        elif policy == "streaming_llm":  # sink + window (4 + 1020 = 16 pages) per stream, whatever N is
            pool = Pool(B * Hkv, p.sink + p.window, 64, D, dtype, gen)
            ids, plen = pool.pages(streams)
            tokens = B * Hkv * (p.sink + p.window)
        else:  # even KV heads retrieve (all N), odd heads stream (sink + local: 64 + 256 = 5 pages)
            dense = Pool(B * Hkv // 2, N, 64, D, dtype, gen)
            small = Pool(B * Hkv // 2, p.sink + p.local, 64, D, dtype, gen)
            pool = Pool.__new__(Pool)
            pool.page, pool.D = 64, D
            pool.k = torch.cat([dense.k, small.k])
            pool.v = torch.cat([dense.v, small.v])
            half = torch.arange(B * Hkv // 2, device=DEV).view(B, Hkv // 2)
            d_ids, d_len = dense.pages(half)
            s_ids, s_len = small.pages(half)
            s_ids = s_ids + dense.k.shape[0]
            pad = d_ids.shape[-1] - s_ids.shape[-1]
            s_ids = torch.nn.functional.pad(s_ids, (0, pad), value=-1)
            s_len = torch.nn.functional.pad(s_len, (0, pad), value=0)
            ids = torch.stack([d_ids, s_ids], 2).reshape(B, Hkv, -1)
            plen = torch.stack([d_len, s_len], 2).reshape(B, Hkv, -1)
            tokens = B * (Hkv // 2) * (N + p.sink + p.local)
        q_rows = q.view(B, Hkv, G, D)
        out = torch.empty_like(q_rows)
        newest = newest_pages(ids, plen)

        def step(i):
            paged_attention(q_rows, pool.k, pool.v, ids, plen, scale, out=out, **_paged_opts(newest=newest))

        return step, 1, {"bytes": tokens * kv_bytes,
                         "check": lambda: (step(0), check_close(out, _ref_pages(q_rows, pool, ids, plen, scale)))[1]}

    elem = kv_bytes // (2 * D)
    if policy == "quest":  # pages of 16, budget 1024 -> 64 pages (the last one forced), max over the group
        p = defaults("quest")
        if p.per_query_head:  # this step selects once per KV head, reduced over its query group
            raise ValueError("the Quest decode step selects per KV head (policy.per_query_head=False)")
        page = p.page_size
        pool = Pool(B * Hkv, N, page, D, dtype, gen, summary_page=page)
        lp_rows, _ = pool.pages(streams)
        n_sel = n_selected(p, pool.pps)
        q_rows = q.view(B, Hkv, G, D)
        out = torch.empty_like(q_rows)
        base = (streams * pool.pps).unsqueeze(-1)
        ids_buf = torch.zeros(B, Hkv, n_sel, dtype=torch.int32, device=DEV)
        len_buf = torch.full((B, Hkv, n_sel), page, dtype=torch.int32, device=DEV)
        len_buf[..., -1] = N - (pool.pps - 1) * page  # only the forced last page is partial

        n_valid = torch.full((B * Hkv,), pool.pps, dtype=torch.int32, device=DEV)  # kernel dtypes: no cast in the step

        def step(i):
            select_pages(q_rows, pool.kmin, pool.kmax, lp_rows, 1, p.gqa_reduce, n_valid, base.view(-1), n_sel,
                         ids_buf, **SELECT_OPTS)
            paged_attention(q_rows, pool.k, pool.v, ids_buf, len_buf, scale, out=out, **_paged_opts(fresh_lists=True))

        summaries = B * Hkv * pool.pps * 2 * D * elem
        return step, 1, {"bytes": B * Hkv * n_sel * page * kv_bytes + summaries, "selected_tokens": n_sel * page,
                         "check": lambda: (step(0), check_close(out, _ref_pages(q_rows, pool, ids_buf, len_buf, scale)))[1]}

    if policy == "lserve":
        p = defaults("lserve")
        if not p.per_query_head:  # this step's selector and byte count are the per-query-head form
            raise ValueError("the LServe decode step selects per query head (policy.per_query_head=True)")
        page, lps, reuse, n_stream = p.page_size, p.logical_page_size, p.reuse_interval, p.sink + p.local
        R = Hkv // 2  # retrieval KV heads (even), streaming (odd): sink 128 + local 256 = 6 pages
        ret = Pool(B * R, N, page, D, dtype, gen, summary_page=lps)
        st = Pool(B * R, n_stream, page, D, dtype, gen)
        pool = Pool.__new__(Pool)  # one pool, so retrieval and streaming heads run in one launch
        pool.page, pool.D = page, D
        pool.k, pool.v = torch.cat([ret.k, st.k]), torch.cat([ret.v, st.v])
        q4 = q.view(B, Hkv, G, D)
        q_rows = torch.cat([q4[:, 0::2].reshape(B, R * G, 1, D), q4[:, 1::2].reshape(B, R * G, 1, D)], 1)
        q_ret = q_rows[:, : R * G].view(B, R, G, D)  # per KV head, for the scores (summaries read once)
        rstreams = torch.arange(B * R, device=DEV).view(B, R)
        lp_all, _ = ret.pages(rstreams)
        lp_rows = (lp_all.unsqueeze(-1).long() * ret.lpp + torch.arange(ret.lpp, device=DEV)).flatten(-2).int()
        n_sel = n_selected(p, ret.pps)
        width = max(n_sel, st.pps)
        ret_base = (rstreams * ret.pps).repeat_interleave(G, 1).unsqueeze(-1)  # [B, R*G, 1]
        # one launch, rows of their own query count: a row per retrieval query head (it selects its own pages)
        # and a row per streaming KV head (its G query heads share sink + local pages: read once)
        RO = R * G + R
        s_ids, s_len = st.pages(rstreams)  # [B, R, 6]
        ids_buf = torch.full((B, RO, width), -1, dtype=torch.int32, device=DEV)
        len_buf = torch.zeros(B, RO, width, dtype=torch.int32, device=DEV)
        ids_buf[:, R * G :, : st.pps] = s_ids + ret.k.shape[0]
        len_buf[:, R * G :, : st.pps] = s_len
        len_buf[:, : R * G, :n_sel] = page
        len_buf[:, : R * G, n_sel - 1] = N - (ret.pps - 1) * page
        first = torch.cat([torch.arange(R * G), R * G + torch.arange(R) * G]).to(DEV)
        q_off = (torch.arange(B, device=DEV).unsqueeze(1) * 2 * R * G + first).to(torch.int32)  # [B, RO]
        q_cnt = torch.cat([torch.ones(R * G), torch.full((R,), G)]).to(DEV, torch.int32).expand(B, RO).contiguous()
        out = torch.empty_like(q_rows)
        # each row's newest page: a retrieval row's forced last page, a streaming row's last local page
        newest = torch.cat([(ret_base.squeeze(-1) + ret.pps - 1).to(torch.int32),
                            newest_pages(ids_buf[:, R * G :], len_buf[:, R * G :])], 1)

        n_valid = torch.full((B * R * G,), ret.pps, dtype=torch.int32, device=DEV)

        scores = torch.empty(B * R * G, ret.pps, device=DEV)
        # with "ready": a flag per row, the retrieval rows' published by the top-k (1) and reset by the attention
        # that reads them (0); the streaming rows' lists are static (2)
        ready = torch.zeros(B, RO, dtype=torch.int32, device=DEV)
        ready[:, R * G :] = 2

        def select(publish=False):  # per query head: each KV head's summaries read once for its G query heads
            select_pages(q_ret, ret.kmin, ret.kmax, lp_rows, ret.lpp, "none", n_valid, ret_base.reshape(-1), n_sel,
                         ids_buf, R * G, RO, scores=scores, ready=ready if publish else None, **SELECT_OPTS)

        def attend(fresh_lists=False):  # streaming rows (R * G ..) list st.pps pages: short rows when "short"
            paged_attention(q_rows, pool.k, pool.v, ids_buf, len_buf, scale, out=out, row_queries=(q_off, q_cnt, G),
                            **_paged_opts(short_rows=(R * G, st.pps), fresh_lists=fresh_lists, newest=newest,
                                          ready=ready))

        def step(i):
            if i % reuse == 0:  # the selector runs when the history length is a multiple of 4
                select(publish=ready_flags())  # (each publishing top-k is followed by the attention that acquires)
            attend(fresh_lists=i % reuse == 0)

        def check():  # per query head: a streaming head attends over its KV head's row of pages
            step(0)
            per_q = lambda t: torch.cat([t[:, : R * G], t[:, R * G :].repeat_interleave(G, 1)], 1)  # noqa: E731
            return check_close(out, _ref_pages(q_rows, pool, per_q(ids_buf), per_q(len_buf), scale))

        summary_bytes = B * R * ret.pps * ret.lpp * 2 * D * elem / reuse
        attn = B * (R * G * n_sel * page + R * n_stream) * kv_bytes  # retrieval: each query head its own pages
        return step, reuse, {"bytes": attn + summary_bytes, "selected_tokens": n_sel * page,
                             "parts": {"selector": select, "attention": attend}, "check": check}

    if policy == "alisa_swa":  # kernels/alisa_decode.py: one token set per batch row, shared by its KV heads
        from sparsebench.kernels.alisa_decode import AlisaState, alisa_attention
        from sparsebench.kernels.token_topk import top_tokens

        r = defaults("alisa_swa").caching_ratio
        k = max(1, int(math.floor(N * r / 2 + 0.5)))
        T = 2 * k
        W = getattr(cfg, "alisa_score_window", 256) if cfg is not None else 256
        pool = Pool(B * Hkv, N, 64, D, dtype, gen)
        state = AlisaState.empty(B, N, T, W, DEV)
        # a full window (the steady state: every step takes the oldest row out of S): W rows of T distinct
        # positions with small weights, S = a random base plus their sum
        first = torch.randperm(N, device=DEV, generator=gen)[:T].sort().values.to(torch.int32)
        state.hist_idx.copy_(((first + 7 * torch.arange(W, device=DEV, dtype=torch.int32).view(W, 1)) % N)
                             .unsqueeze(1).expand(W, B, T))
        state.hist_w.copy_(torch.rand(W, B, T, device=DEV, generator=gen) * 1e-3)
        state.S.copy_(torch.rand(B, N, device=DEV, generator=gen))
        for w in range(W):
            state.S.scatter_add_(1, state.hist_idx[w].long(), state.hist_w[w])
        sets = torch.empty(B, T, dtype=torch.int32, device=DEV)
        sets[:, k:] = torch.arange(N - k, N, device=DEV, dtype=torch.int32)  # the local set: the k newest
        q_rows = q.view(B, Hkv, G, D)
        out = torch.empty_like(q_rows)
        base = streams.long() * pool.pps * 64  # [B, Hkv] flat pool row of each stream's position 0

        def select():  # the global set: the top-k of S before the local set, ascending, into sets[:, :k]
            top_tokens(state.S[:, : N - k], k, sets)

        def attend():  # drop the leaving window row, attention over the set, its weights into S and the window
            alisa_attention(q_rows, pool.k.view(-1, D), pool.v.view(-1, D), sets, base, scale, state, out=out,
                            **ALISA_OPTS)

        def step(i):
            select()
            attend()

        def check():
            step(0)
            ref = torch.empty(B, Hkv, G, D, device=DEV)
            kf, vf = pool.k.view(-1, D), pool.v.view(-1, D)
            for b in range(B):
                for h in range(Hkv):
                    rows = base[b, h] + sets[b].long()
                    kk, vv = kf[rows].float(), vf[rows].float()
                    ref[b, h] = torch.softmax(q_rows[b, h].float() @ kk.T * scale, -1) @ vv
            return check_close(out, ref)

        # bytes: the set's K / V per KV head, S read by the select, the window's two rows (read, written)
        return step, 1, {"bytes": B * Hkv * T * kv_bytes + B * N * 4 + 2 * B * T * 8, "selected_tokens": T,
                         "score_window": W, "check": check, "parts": {"select": select, "attention": attend}}

    raise ValueError(f"no decode step for policy={policy} backend={backend}")


def _flex_step(policy, B, N, Hq, Hkv, D, dtype, q, gen, scale, kv_bytes):
    """FlexAttention decode over the dense-layout cache with a BlockMask of the selected pages."""
    from torch.nn.attention.flex_attention import BlockMask

    from sparsebench.kernels.flex import _flex_fn

    if policy == "alisa_swa":
        raise ValueError("not applicable: ALISA selects single tokens; a BlockMask selects blocks")
    if policy == "quest":
        raise ValueError("not applicable: FlexAttention's KV blocks must be multiples of its 64/128 tile; "
                         "Quest's pages are 16 tokens")
    page = 64  # FlexAttention's KV block
    lps = defaults("lserve").logical_page_size if policy == "lserve" else None
    pool = Pool(B * Hkv, N, page, D, dtype, gen, summary_page=lps)
    K, V = pool.dense_view(B, Hkv)
    G = Hq // Hkv
    nb = pool.pps
    q4 = q.unsqueeze(2)
    flex = _flex_fn(q.device)
    if policy == "full":
        sel = torch.arange(nb, device=DEV).expand(B, Hq, nb)
        tokens = N
    elif policy in ("streaming_llm", "streaming_heads"):  # the sink's and the window's pages (page-granular)
        p = defaults(policy)
        recent = -(-(p.window if policy == "streaming_llm" else p.local) // page)
        stream = torch.cat([torch.arange(-(-p.sink // page), device=DEV), torch.arange(nb - recent, nb, device=DEV)])
        if policy == "streaming_llm":
            sel = stream.expand(B, Hq, stream.numel())
            tokens = p.sink + p.window
        else:  # even KV heads read every page
            stream = torch.nn.functional.pad(stream, (0, nb - stream.numel()), value=-1)
            per_kv = torch.stack([torch.arange(nb, device=DEV) if h % 2 == 0 else stream for h in range(Hkv)])
            sel = per_kv.repeat_interleave(G, 0).expand(B, Hq, nb)
            tokens = (N + p.sink + p.local) // 2
    else:  # quest / lserve: top pages by the bound (one selection, reused: flex has no in-graph selector here)
        n_sel = n_selected(defaults(policy), nb)
        streams = torch.arange(B * Hkv, device=DEV).view(B, Hkv)
        lp, _ = pool.pages(streams)
        lp_rows = (lp.unsqueeze(-1).long() * pool.lpp + torch.arange(pool.lpp, device=DEV)).flatten(-2)
        s = page_scores_triton(q.view(B, Hkv, G, D), pool.kmin, pool.kmax, lp_rows, pool.lpp, "max")
        s[..., -1] = float("-inf")
        top = torch.cat([s.topk(n_sel - 1, -1).indices, torch.full((B, Hkv, 1), nb - 1, device=DEV)], -1)
        sel = top.sort(-1).values.repeat_interleave(G, 1)
        tokens = n_sel * page
    cnt = (sel >= 0).sum(-1, dtype=torch.int32).unsqueeze(-1)  # [B, Hq, 1]
    sel = torch.nn.functional.pad(sel, (0, nb - sel.shape[-1]), value=-1)  # BlockMask wants every KV block's slot
    idx = torch.where(sel >= 0, sel, 0).to(torch.int32).unsqueeze(2)  # [B, Hq, 1, nb]
    n_tok = N

    def mask_mod(b, h, q_idx, kv_idx):
        return kv_idx < n_tok

    bm = BlockMask.from_kv_blocks(cnt, idx, BLOCK_SIZE=(128, page), mask_mod=mask_mod, seq_lengths=(1, nb * page))
    Kp = torch.nn.functional.pad(K, (0, 0, 0, nb * page - N))
    Vp = torch.nn.functional.pad(V, (0, 0, 0, nb * page - N))
    out = torch.empty_like(q4)

    def step(i):
        out.copy_(flex(q4, Kp, Vp, block_mask=bm, scale=scale, enable_gqa=True))

    return step, 1, {"bytes": B * Hkv * tokens * kv_bytes}
