"""Paged decode with the split-KV reduction inside a thread-block cluster (CUDA C++, compiled at run time by NVRTC).

Why a CUDA kernel beside the Triton ones: at batch 1 a paged decode launch must split each row's pages over many
SMs, and in `triton_decode.paged_attention` the splits meet through global memory (partials stored, an acq_rel
atomic, the last program's reload): ~3.3 us per launch on an H100 (run 16 in docs/benchmarks/attention.md). Here
a row's splits are the CTAs of one cluster (Hopper): each CTA merges its warps in shared memory, the cluster
barrier orders it, and rank 0 reads the other CTAs' partials through distributed shared memory. Triton 3.6 exposes
neither clusters' shared memory nor a cluster launch for such a kernel.

The kernel (one CTA of 4 warps per split, a row's splits = its cluster's CTAs, `n_splits` <= 16: clusters of more
than 8 CTAs are non-portable, and an H100 takes up to 16):
- the CTA's list entries (rank, rank + n_splits, ...) are loaded once and compacted (entries with no page or no
  tokens dropped);
- each page's K and V (16 KB each: a page of 64 tokens x 128 channels, bf16, contiguous in the pool) come in as two
  bulk asynchronous copies (TMA, no descriptor) into a ring of `stages` buffers, each with an mbarrier counting
  the bytes: one thread issues two instructions per page, so no address arithmetic runs per token;
- a warp takes 16 of a page's 64 tokens: q.k with 8 lanes per token (16 channels each, conflict-free 16-byte
  shared loads, two chains of fused multiply-adds), an online softmax per warp, p.v with 4 channels per lane and no
  branch per token (a branch per token serialised its shared loads: run 21 found a page's compute at ~0.9 us, now
  ~0.45);
- rank 0 merges the cluster's partials through distributed shared memory; the last cluster barrier (no CTA leaves
  before rank 0 has read it) is a relaxed arrive, so it does not wait for O's store (run 21);
- rows hold 1..4 queries (`row_queries`, as in paged_attention): one path compiled for 1 query, one for 4;
- as a PDL dependent it reads the row tables and requests its queries into L2 before the grid-dependency wait, and
  with `early_hot` (static lists) it also loads its list and starts its first pages there (run 18).
Compiled with STAMPS (docs/benchmarks/probe_decode_cluster_timeline.py only), thread 0 of each CTA writes %globaltimer
at its milestones (see STAMPS in SOURCE); the package never defines it, and the kernel it runs is the same without.
Shapes and the page layout are paged_attention's; this kernel serves bf16, pages of 64 tokens, head dim 128 only
(`supports` says why not otherwise). GPU only (Hopper or newer): there is no CPU interpreter for it, so CI compiles
it through NVRTC (no spills, three CTAs per SM at 2 stages) and tests its argument checks, and the `gpu` tests check
its output against the reference.
"""

from __future__ import annotations

import ctypes

import torch

from sparsebench.kernels import nvrtc

PAGE, D, GQ_MAX, MAX_SPLITS, ENTRIES_PER_CTA = 64, 128, 4, 16, 256
STAGE_BYTES = 2 * PAGE * D * 2  # K + V of one page, bf16

SOURCE = r"""
typedef unsigned int u32;
typedef unsigned long long u64;
#define D 128
#define PAGE 64
#define NWARP 4
#define GQM 4
#define NEG_INF __int_as_float(0xff800000)
#define MAXE 8                      /* list entries per lane when compacting: <= 256 per CTA */
#define STAGE_BYTES (2 * PAGE * D * 2)
#define HALF_BYTES (PAGE * D * 2)
#define NSTAMP 16                   /* per CTA, with STAMPS (see below) */

__device__ __forceinline__ u32 smem_u32(const void* p) {
    u64 a;
    asm("cvta.to.shared.u64 %0, %1;" : "=l"(a) : "l"(p));
    return (u32)a;
}
__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
__device__ __forceinline__ float lo_bf16(u32 w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float hi_bf16(u32 w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ unsigned short to_bf16(float x) {
    unsigned short h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(x));
    return h;
}
__device__ __forceinline__ void bar_wait(u32 bar, u32 parity) {
    u32 done;
    do {
        asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     " selp.u32 %0, 1, 0, p;\n}" : "=r"(done) : "r"(bar), "r"(parity) : "memory");
    } while (!done);
}
/* one page's K and V into a ring buffer; the barrier completes when both copies have landed */
__device__ __forceinline__ void fetch_page(u32 bar, u32 dst, const unsigned short* k, const unsigned short* v) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(bar), "r"(STAGE_BYTES) : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                 :: "r"(dst), "l"(k), "r"(HALF_BYTES), "r"(bar) : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                 :: "r"(dst + HALF_BYTES), "l"(v), "r"(HALF_BYTES), "r"(bar) : "memory");
}
__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\n barrier.cluster.wait.acquire.aligned;" ::: "memory");
}
__device__ __forceinline__ float cluster_ld(const float* p, u32 rank) {
    u32 a;
    float x;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(a) : "r"(smem_u32(p)), "r"(rank));
    asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(x) : "r"(a) : "memory");
    return x;
}

/* STAMPS (defined by docs/benchmarks/probe_decode_cluster_timeline.py only; never in the kernel the package runs):
   the kernel takes one more argument, u64 STAMP[grid][NSTAMP], and thread 0 of each CTA writes %globaltimer (ns)
   at: 0 entry, 1 list compacted, 2 past the grid-dependency wait, 3 page loop done, 4 partial published (first
   cluster barrier), 5 exit; 6 %smid, 7 its page count; 8 + i page i's buffer seen full (i < 6); 14 + i every
   warp done with page i (i < 2) */
#ifdef STAMPS
__device__ __forceinline__ u64 now_ns() {
    u64 t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t) :: "memory");
    return t;
}
#define STAMP_VAL(s, j, v) do { if (threadIdx.x == 0) (s).stamp[(u64)blockIdx.x * NSTAMP + (j)] = (u64)(v); } while (0)
#define STAMP(s, j) STAMP_VAL(s, j, now_ns())
#else
#define STAMP(s, j) do {} while (0)
#define STAMP_VAL(s, j, v) do {} while (0)
#endif

struct Smem {
#ifdef STAMPS
    u64* stamp;
#endif
    unsigned char* ring; u32 ring_u32; u32 bars;
    float* pbuf;   /* [NWARP][16 tokens][GQM] softmax weights of a warp's tokens */
    float* wacc;   /* [NWARP][GQM][D] warp partials (these four: in the ring, after the page loop) */
    float* wml;    /* [NWARP][GQM][2] warp (m, l) */
    float* cacc;   /* [GQM][D] the CTA's partial: read by rank 0 of the cluster */
    float* cml;    /* [GQM][2] */
    int* pid; int* ntok; int* count; int* flag;
};

/* the page of the CTA's compacted entry i into ring buffer `slot` */
__device__ __forceinline__ void fetch_entry(const Smem& s, int i, int slot, const unsigned short* KP,
                                            const unsigned short* VP) {
    const long long pg = (long long)s.pid[i] * (PAGE * D);
    fetch_page(s.bars + 8 * slot, s.ring_u32 + slot * STAGE_BYTES, KP + pg, VP + pg);
}

/* The CTA's compacted pages: G queries per row (compiled for 1 and GQM); q0, gq: the row's queries. */
template <int G>
__device__ __forceinline__ void attend(const Smem& s, const unsigned short* __restrict__ Q, int q0, int gq,
                                       const unsigned short* __restrict__ KP, const unsigned short* __restrict__ VP,
                                       int n, int stages, float qk_scale, bool trigger_at_last_fetch) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int t0 = lane >> 3, c = lane & 7;
    /* lane holds channels c*8..c*8+7 and 64+c*8..64+c*8+7 of each query, scaled to base-2 logits */
    float qf[G][16];
#pragma unroll
    for (int g = 0; g < G; g++) {
        uint4 a = make_uint4(0, 0, 0, 0), b = make_uint4(0, 0, 0, 0);
        if (g < gq) {
            a = *(const uint4*)(Q + (long long)(q0 + g) * D + c * 8);
            b = *(const uint4*)(Q + (long long)(q0 + g) * D + 64 + c * 8);
        }
        u32 w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
        for (int j = 0; j < 8; j++) {
            qf[g][2 * j] = lo_bf16(w[j]) * qk_scale;
            qf[g][2 * j + 1] = hi_bf16(w[j]) * qk_scale;
        }
    }
    float m[G], l[G], acc[G][4];
#pragma unroll
    for (int g = 0; g < G; g++) {
        m[g] = NEG_INF; l[g] = 0.f;
#pragma unroll
        for (int j = 0; j < 4; j++) acc[g][j] = 0.f;
    }
    /* PDL: the next launch may start once every page of this CTA has been requested */
    if (trigger_at_last_fetch && n <= stages) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    for (int i = 0; i < n; i++) {
        const int st = i % stages;
        bar_wait(s.bars + 8 * st, (i / stages) & 1);
        if (i < 6) STAMP(s, 8 + i);
        const unsigned char* kb = s.ring + st * STAGE_BYTES;
        const unsigned char* vb = kb + HALF_BYTES;
        const int ntok = s.ntok[i];
        float sc[G][4];
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const int t = 16 * warp + 4 * r + t0;
            const uint4 a = *(const uint4*)(kb + t * (D * 2) + c * 16);
            const uint4 b = *(const uint4*)(kb + t * (D * 2) + 128 + c * 16);
            const u32 w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
            for (int g = 0; g < G; g++) {
                float x0 = 0.f, x1 = 0.f;  /* two chains of fused multiply-adds (a * b + c * d + x took three) */
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    x0 = fmaf(qf[g][2 * j], lo_bf16(w[j]), x0);
                    x1 = fmaf(qf[g][2 * j + 1], hi_bf16(w[j]), x1);
                }
                sc[g][r] = x0 + x1;
            }
        }
#pragma unroll
        for (int g = 0; g < G; g++) {
            float mx = NEG_INF;
#pragma unroll
            for (int r = 0; r < 4; r++) {
                float x = sc[g][r];
                x += __shfl_xor_sync(0xffffffffu, x, 1);
                x += __shfl_xor_sync(0xffffffffu, x, 2);
                x += __shfl_xor_sync(0xffffffffu, x, 4);
                x = (16 * warp + 4 * r + t0 < ntok) ? x : NEG_INF;  /* rows past the page's tokens: never read */
                sc[g][r] = x;
                mx = fmaxf(mx, x);
            }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 8));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 16));
            const float m_new = fmaxf(m[g], mx);
            const float m_safe = m_new == NEG_INF ? 0.f : m_new;
            const float alpha = ex2(m[g] - m_safe);
            float ps = 0.f;
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const float p = ex2(sc[g][r] - m_safe);
                ps += p;
                if (c == 0) s.pbuf[(warp * 16 + 4 * r + t0) * GQM + g] = p;
            }
            ps += __shfl_xor_sync(0xffffffffu, ps, 8);
            ps += __shfl_xor_sync(0xffffffffu, ps, 16);
            l[g] = l[g] * alpha + ps;
            m[g] = m_new;
#pragma unroll
            for (int j = 0; j < 4; j++) acc[g][j] *= alpha;
        }
        __syncwarp();
        const int tend = ntok - 16 * warp;  /* the warp's tokens that hold data */
        /* branch-free, so every token's loads issue at once (a branch per token serialised them: ~0.5 us per page,
           run 21): a row past the page's tokens was not written by this page's copy (stale, or NaN in the pool) and
           its p is 0, so its values are zeroed, which adds exactly 0 */
#pragma unroll
        for (int tt = 0; tt < 16; tt++) {
            const uint2 v = *(const uint2*)(vb + (16 * warp + tt) * (D * 2) + lane * 8);
            const bool ok = tt < tend;
            const float v0 = ok ? lo_bf16(v.x) : 0.f, v1 = ok ? hi_bf16(v.x) : 0.f;
            const float v2 = ok ? lo_bf16(v.y) : 0.f, v3 = ok ? hi_bf16(v.y) : 0.f;
            const float* pp = s.pbuf + (warp * 16 + tt) * GQM;
#pragma unroll
            for (int g = 0; g < G; g++) {
                const float p = pp[g];
                acc[g][0] += p * v0; acc[g][1] += p * v1; acc[g][2] += p * v2; acc[g][3] += p * v3;
            }
        }
        __syncthreads();  /* every warp is done with this buffer (and with pbuf) */
        if (i < 2) STAMP(s, 14 + i);
        if (tid == 0 && i + stages < n) {
            asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
            fetch_entry(s, i + stages, st, KP, VP);
        }
        if (trigger_at_last_fetch && i == n - 1 - stages)
            asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    }
#pragma unroll
    for (int g = 0; g < G; g++) {
#pragma unroll
        for (int j = 0; j < 4; j++) s.wacc[(warp * GQM + g) * D + 4 * lane + j] = acc[g][j];
        if (lane == 0) {
            s.wml[(warp * GQM + g) * 2] = m[g];
            s.wml[(warp * GQM + g) * 2 + 1] = l[g];
        }
    }
}

extern "C" __global__ void __launch_bounds__(128, 3)
paged_decode_cluster(const unsigned short* __restrict__ Q, const int* __restrict__ QOFF,
                     const int* __restrict__ QCNT, const unsigned short* __restrict__ KP,
                     const unsigned short* __restrict__ VP, const int* __restrict__ PAGES,
                     const int* __restrict__ PLEN, unsigned short* __restrict__ O, const int* __restrict__ HOT,
                     int* READY, int n_list, int stages, float qk_scale, int pdl, int early
#ifdef STAMPS
                     , u64* STAMP_BUF
#endif
                     ) {
    extern __shared__ __align__(128) unsigned char smem[];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    u32 rank, ncta, row;
    asm("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
    asm("mov.u32 %0, %%cluster_nctarank;" : "=r"(ncta));
    asm("mov.u32 %0, %%clusterid.x;" : "=r"(row));
    Smem s;
#ifdef STAMPS
    s.stamp = STAMP_BUF;
    STAMP(s, 0);
    u32 smid_;
    asm("mov.u32 %0, %%smid;" : "=r"(smid_));
    STAMP_VAL(s, 6, smid_);
#endif
    s.ring = smem;
    s.ring_u32 = smem_u32(smem);
    s.bars = s.ring_u32 + stages * STAGE_BYTES;
    s.pbuf = (float*)(smem + stages * STAGE_BYTES + 64);
    /* the partials live in the ring's first buffer: no copy is in flight once the page loop is over, and 10 KB less
       per CTA lets a third CTA (the next launch's, started early) share an SM with two of this launch's */
    s.wacc = (float*)smem;
    s.wml = s.wacc + NWARP * GQM * D;
    s.cacc = s.wml + NWARP * GQM * 2;
    s.cml = s.cacc + GQM * D;
    s.pid = (int*)(s.pbuf + NWARP * 16 * GQM);
    s.ntok = s.pid + 32 * MAXE;
    s.count = s.ntok + 32 * MAXE;
    s.flag = s.count + 1;
    /* the row tables are never the launch before's to write: read before any wait, and the row's queries
       requested into L2 (a hint: the loads that use them come after the wait, so they see its writes) */
    const int q0 = QOFF[row], gq = QCNT[row];
    if (pdl && warp == 1 && lane < 2 * gq)  /* (warp 0 goes on to the page ids without waiting for q0) */
        asm volatile("prefetch.global.L2 [%0];" :: "l"(Q + (long long)(q0 + (lane >> 1)) * D + (lane & 1) * 64));
    if (pdl && !early) {  /* launched early: wait for the predecessor's results before any other load */
        asm volatile("griddepcontrol.wait;" ::: "memory");
        STAMP(s, 2);
        if (pdl == 1) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");  /* 2, 3: later */
    }
    if (tid == 0) {
        for (int i = 0; i < stages; i++)
            asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" :: "r"(s.bars + 8 * i) : "memory");
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    int ready = 2;  /* READY[row]: 1 = the row's list was just published by a top-k (consumed here), 2 = static */
    if (READY) {  /* (with early) a top-k launched before this one writes the row's list, then releases READY[row] */
        if (tid == 0) {
            u32 f;
            long long spins = 0;
            do {
                asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(f) : "l"(READY + row) : "memory");
                if (++spins > (1ll << 24)) __trap();  /* ~seconds: no top-k publishes this row (a broken pairing) */
            } while (f == 0);
            *s.flag = (int)f;
        }
        __syncthreads();  /* every thread ordered after the acquire */
        ready = *s.flag;
    }
    if (warp == 0) {  /* this CTA's list entries rank, rank + ncta, ...: loaded at once, then compacted in order */
        int pid[MAXE], nt[MAXE];
#pragma unroll
        for (int e = 0; e < MAXE; e++) {
            const int j = rank + (e * 32 + lane) * ncta;
            pid[e] = -1;
            nt[e] = 0;
            if (j < n_list) {
                pid[e] = __ldcg(PAGES + (long long)row * n_list + j);  /* (through L2: possibly just written) */
                nt[e] = __ldcg(PLEN + (long long)row * n_list + j);
            }
        }
        int base = 0;
#pragma unroll
        for (int e = 0; e < MAXE; e++) {
            const bool ok = pid[e] >= 0 && nt[e] > 0;
            const u32 bal = __ballot_sync(0xffffffffu, ok);
            if (ok) {
                const int at = base + __popc(bal & ((1u << lane) - 1u));
                s.pid[at] = pid[e];
                s.ntok[at] = min(nt[e], PAGE);
            }
            base += __popc(bal);
        }
        if (lane == 0) *s.count = base;
    }
    __syncthreads();
    const int n = *s.count;
    STAMP(s, 1);
    STAMP_VAL(s, 7, n);
    int nf = 0;  /* pages fetched before the wait (thread 0) */
    if (early) {  /* the lists and every page but the row's HOT one are not the predecessor's to write: the first
                     pages stream while it finishes; then wait before reading Q and the HOT page. A row published
                     through READY: every page was written before the top-k that published it ran (it follows the
                     append), so none is held back */
        if (tid == 0) {
            const int hot = ready == 1 ? -1 : HOT[row];
            for (; nf < stages && nf < n && s.pid[nf] != hot; nf++) fetch_entry(s, nf, nf, KP, VP);
        }
        asm volatile("griddepcontrol.wait;" ::: "memory");
        STAMP(s, 2);
        if (pdl == 1) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    }
    if (tid == 0) {
        for (int i = nf; i < stages && i < n; i++) fetch_entry(s, i, i, KP, VP);
    }
    if (gq == 1)
        attend<1>(s, Q, q0, gq, KP, VP, n, stages, qk_scale, pdl == 3);
    else
        attend<GQM>(s, Q, q0, gq, KP, VP, n, stages, qk_scale, pdl == 3);
    STAMP(s, 3);
    if (pdl == 2) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    __syncthreads();
    /* the CTA's partial: thread tid = channel, the warps merged */
    for (int g = 0; g < gq; g++) {
        float mm = NEG_INF;
#pragma unroll
        for (int w = 0; w < NWARP; w++) mm = fmaxf(mm, s.wml[(w * GQM + g) * 2]);
        const float ms = mm == NEG_INF ? 0.f : mm;
        float a = 0.f, ll = 0.f;
#pragma unroll
        for (int w = 0; w < NWARP; w++) {
            const float f = ex2(s.wml[(w * GQM + g) * 2] - ms);
            a += f * s.wacc[(w * GQM + g) * D + tid];
            ll += f * s.wml[(w * GQM + g) * 2 + 1];
        }
        s.cacc[g * D + tid] = a;
        if (tid == 0) {
            s.cml[2 * g] = mm;
            s.cml[2 * g + 1] = ll;
        }
    }
    cluster_sync();  /* every CTA's partial is written (release / acquire at cluster scope) */
    STAMP(s, 4);
    if (ready == 1 && rank == 0 && tid == 0) READY[row] = 0;  /* every CTA of the row is past its acquire */
    if (rank == 0) {
        for (int g = 0; g < gq; g++) {
            float mm = NEG_INF, a = 0.f, ll = 0.f;
            for (u32 r0 = 0; r0 < ncta; r0 += 8) {  /* 8 ranks at a time (clusters of up to 16) */
                float mr[8], lr[8], ar[8];
                float cm = NEG_INF;
#pragma unroll
                for (u32 r = 0; r < 8; r++) {  /* all loads issued before the first use */
                    mr[r] = r0 + r < ncta ? cluster_ld(s.cml + 2 * g, r0 + r) : NEG_INF;
                    lr[r] = r0 + r < ncta ? cluster_ld(s.cml + 2 * g + 1, r0 + r) : 0.f;
                    ar[r] = r0 + r < ncta ? cluster_ld(s.cacc + g * D + tid, r0 + r) : 0.f;
                    cm = fmaxf(cm, mr[r]);
                }
                const float m_new = fmaxf(mm, cm);
                const float ms = m_new == NEG_INF ? 0.f : m_new;
                const float sc = ex2(mm - ms);  /* 0 on the first chunk */
                a *= sc;
                ll *= sc;
#pragma unroll
                for (u32 r = 0; r < 8; r++) {
                    const float f = ex2(mr[r] - ms);
                    a += f * ar[r];
                    ll += f * lr[r];
                }
                mm = m_new;
            }
            O[(long long)(q0 + g) * D + tid] = to_bf16(ll == 0.f ? 0.f : a / ll);
        }
    }
    /* rank 0 has read every CTA's shared memory before any of them exits. Its loads have returned (their values are
       in O's store), so this arrive needs no release, which would hold every CTA until O's store is acknowledged
       (run 21: B1 128K, reuse step 15.1 -> 14.7-15.0 us) */
    asm volatile("barrier.cluster.arrive.relaxed.aligned;\n barrier.cluster.wait.aligned;" ::: "memory");
    STAMP(s, 5);
}
"""

# the kernel's shared memory past its ring (see `Smem` in SOURCE): 8 mbarriers, pbuf, the page ids and token counts
# of 256 entries, the count, the READY flag read (the partials wacc, wml, cacc, cml reuse the ring: ALIASED bytes <=
# one page's buffer)
SMEM_EXTRA = 64 + 4 * 4 * 16 * GQ_MAX + 4 * (2 * 256 + 2)
ALIASED = 4 * (4 * GQ_MAX * D + 4 * GQ_MAX * 2 + GQ_MAX * D + GQ_MAX * 2)


def smem_bytes(stages: int) -> int:
    return stages * STAGE_BYTES + SMEM_EXTRA


def compile_cubin(arch: str = "sm_90") -> tuple[bytes, str]:
    """(cubin, ptxas' resource report) of the kernel compiled for `arch` by NVRTC (no GPU needed)."""
    return nvrtc.compile_cubin(SOURCE, arch, "paged_decode_cluster.cu")


# with PDL, where a launch lets its successor launch: "start", "pages_done" (after its page loop) or "fetches_done"
# (once each CTA has requested its last page). H100, LServe at 128K, batch 1 (docs/benchmarks/attention.md): run 17,
# reuse step 16.6 us after the pages against 17.0 at the start; run 18, with the pages started early (early_hot),
# selector step 29.1-29.2 us against 30.8 after the pages, reuse step 15.5 against 16.7 at 3 stages
PDL_TRIGGERS = {"start": 1, "pages_done": 2, "fetches_done": 3}
PDL_TRIGGER = "fetches_done"


def supports(q, k_pool, n_queries: int, n_splits: int, n_list: int, stages: int) -> str | None:
    """None if the kernel serves these inputs, else why not."""
    if not q.is_cuda or torch.cuda.get_device_capability(q.device)[0] < 9:
        return "needs a Hopper-or-newer GPU (thread-block clusters)"
    if q.dtype != torch.bfloat16 or k_pool.dtype != torch.bfloat16:
        return f"bf16 only (got {q.dtype}, {k_pool.dtype})"
    if tuple(k_pool.shape[1:]) != (PAGE, D):
        return f"pages of {PAGE} tokens x head dim {D} only (got {tuple(k_pool.shape[1:])})"
    if not 1 <= n_queries <= GQ_MAX:
        return f"rows of 1..{GQ_MAX} queries (got {n_queries})"
    if not 1 <= n_splits <= MAX_SPLITS:
        return f"n_splits (a cluster's CTAs) in 1..{MAX_SPLITS} (got {n_splits})"
    if -(-n_list // n_splits) > ENTRIES_PER_CTA:
        return f"at most {ENTRIES_PER_CTA} list entries per split (got {n_list} entries over {n_splits} splits)"
    optin = torch.cuda.get_device_properties(q.device).shared_memory_per_block_optin
    if not 1 <= stages <= 8 or smem_bytes(stages) > optin:
        return f"stages={stages}: 1..8 and the ring must fit in shared memory"
    return None


def cluster_paged_attention(q_flat, q_off, q_cnt, k_pool, v_pool, pages, page_len, scaling: float, out_flat,
                            n_splits: int, stages: int = 3, pdl: tuple = (False, False),
                            n_queries: int = GQ_MAX, early_hot=None, ready=None) -> None:
    """out_flat[q_off[r] + g] = attention of q_flat[q_off[r] + g] (g < q_cnt[r]) over row r's listed pages.

    q_flat / out_flat [T, 128] bf16; q_off / q_cnt [rows] int32; k_pool / v_pool [P, 64, 128] bf16 contiguous;
    pages / page_len [rows, NP] int32 (page id, -1 = none; tokens valid in the page). A row's splits are the
    n_splits CTAs of one cluster (split s reads entries s, s + n_splits, ...); stages: pages in flight per CTA;
    pdl: (run the grid-dependency ops, launch as a programmatic dependent), triton_decode.use_pdl's pair.
    early_hot: None, or [rows] int32 pool page ids (-1 = none), with pdl: each CTA loads its list and starts its
    first `stages` pages before the grid-dependency wait, in list order up to the row's early_hot page, so they
    stream while the launch before finishes; Q and the early_hot page are read after it. Valid only where the
    launch before writes neither the lists nor any listed page but early_hot (e.g. an LServe reuse step: the lists
    come from an earlier selection, and an append writes only each row's newest page).
    ready: None, or [rows] int32 flags, with early_hot, for a launch right after the top-k that writes its lists
    (`cuda_topk.top_pages_cuda(..., ready=)`, which lets this launch start at once): each CTA spins (acquire) until
    its row's flag is non-zero. 1: the top-k has just published the row's list; every page may start before the
    wait (the top-k ran after the append), and the launch resets the flag to 0. 2: a static list (read as with
    early_hot; never reset). The contract: each top-k that publishes is followed by exactly one launch that
    consumes, before the next top-k (a flag left at 1 would let a later launch read its list before the top-k
    writes it; no top-k at all traps the kernel after ~seconds of spinning)."""
    why = supports(q_flat, k_pool, n_queries, n_splits, pages.shape[-1], stages)
    if why:
        raise ValueError(f"cluster_paged_attention: {why}")
    if early_hot is not None:
        if not pdl[0]:
            raise ValueError("cluster_paged_attention: early_hot (pages fetched before the grid-dependency wait) "
                             "needs pdl")
        if early_hot.dtype != torch.int32 or early_hot.numel() != pages.shape[0]:
            raise ValueError(f"cluster_paged_attention: early_hot must be int32 with one entry per row "
                             f"({pages.shape[0]}), got {early_hot.dtype} x {early_hot.numel()}")
    if ready is not None and (early_hot is None or ready.dtype != torch.int32 or ready.numel() != pages.shape[0]
                              or not ready.is_contiguous()):
        raise ValueError(f"cluster_paged_attention: ready must come with early_hot and be contiguous int32 with one "
                         f"entry per row ({pages.shape[0]}), got {ready.dtype} x {ready.numel()}")
    hot = early_hot if early_hot is not None else pages  # (not read without early_hot)
    for name, t in (("k_pool", k_pool), ("v_pool", v_pool), ("q", q_flat), ("out", out_flat), ("pages", pages),
                    ("page_len", page_len), ("early_hot", hot)):
        if not t.is_contiguous():
            raise ValueError(f"cluster_paged_attention: {name} must be contiguous")
    rows, n_list = pages.shape
    vals = [ctypes.c_void_p(t.data_ptr()) for t in (q_flat, q_off, q_cnt, k_pool, v_pool, pages, page_len,
                                                     out_flat, hot)]
    vals.append(ctypes.c_void_p(0 if ready is None else ready.data_ptr()))
    vals += [ctypes.c_int(n_list), ctypes.c_int(stages), ctypes.c_float(scaling * 1.4426950408889634),
             ctypes.c_int(PDL_TRIGGERS[PDL_TRIGGER] if pdl[0] else 0),
             ctypes.c_int(early_hot is not None)]
    fn = nvrtc.function(SOURCE, "paged_decode_cluster.cu", "paged_decode_cluster", q_flat.device, big_smem=True,
                        wide_clusters=True)
    try:
        nvrtc.launch(fn, q_flat.device, rows * n_splits, 128, smem_bytes(stages), vals, cluster=n_splits, pdl=pdl[1])
    except RuntimeError as e:
        if n_splits <= 8:
            raise
        raise RuntimeError(f"cluster_paged_attention: {e}: clusters of {n_splits} CTAs are non-portable (an H100 takes "
                           "up to 16 at this kernel's shared memory; this device or its settings may not): use "
                           "n_splits <= 8") from e
