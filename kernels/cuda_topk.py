"""Top-k pages of each score row in CUDA C++ (compiled at run time by NVRTC): `triton_decode.top_pages`'s rule, with
fewer, cheaper passes.

Why beside the Triton kernel: at batch 1 the LServe selector step waits on its top-k, one CTA per score row, whose
threshold search is ~15 serial passes of a CTA-wide count (run 8: 7.25 us per layer at 128K, launch included). Each
pass is a barrier and a few reductions, so the passes' latency, not their arithmetic, is the cost. Here:
- a thread holds 8 consecutive pages' keys in registers (a CTA of n_cols / 8 threads, <= 1024);
- a pass counts `C` candidate thresholds at once (C = 1, 3 or 7, evenly spaced in the bracket; 3 by default), so
  the bracket shrinks (C + 1)-fold per pass; a warp sums three counts with one `redux.sync` (packed in 10-bit
  fields), and the CTA meets in one barrier per pass (the warps' counts in double-buffered shared memory, summed
  two to a `redux.sync`);
- the search stops as soon as a candidate has exactly k - 1 keys at or above it (as the Triton search does);
- one block-wide scan of (taken, tied) counts places each chosen page in page order.
The rule (see `_select_rows` in triton_decode): the k_sel - 1 best pages among all but the last valid page (ties to
the lower page, NaN and pages past the row's valid ones rank last), in page order, then the last page, as pool ids
base + page. With `ready`, each row is published (a flag per row, set with a release) once its ids are written, so a
launch after it can start that row's pages before the whole top-k ends. GPU only (sm_80 or newer); CI compiles it
through NVRTC and the `gpu` tests compare it with the Triton kernel bit for bit.
"""

from __future__ import annotations

import ctypes

import torch

from sparsebench.kernels import nvrtc

KEYS_PER_THREAD, MAX_THREADS = 8, 1024
MAX_COLS = KEYS_PER_THREAD * MAX_THREADS
CANDIDATES = (1, 3, 7)  # thresholds counted per pass (kernel top_pages_c<C>)
DEFAULT_CANDIDATES = 3

SOURCE = r"""
typedef unsigned int u32;
typedef unsigned long long u64;
#define KPT 8
#define FULL 0xffffffffu
/* STAMPS (docs/benchmarks/probe_decode_cluster_timeline.py only): one more argument, u64 STAMP[rows][4]; thread 0
   writes %globaltimer (ns) at entry, past the grid-dependency wait, after the threshold search, after the row's
   ids are written (published) */
#ifdef STAMPS
__device__ __forceinline__ u64 now_ns() {
    u64 t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t) :: "memory");
    return t;
}
#define STAMP(j) do { if (threadIdx.x == 0) STAMP_BUF[(u64)blockIdx.x * 4 + (j)] = now_ns(); } while (0)
#define STAMP_ARG , u64* STAMP_BUF
#define STAMP_PASS , STAMP_BUF
#else
#define STAMP(j) do {} while (0)
#define STAMP_ARG
#define STAMP_PASS
#endif

/* a float's bits as a uint32 that orders like the float; NaN and pages that do not compete: 0 (below -inf) */
__device__ __forceinline__ u32 sort_key(float s, bool ok) {
    const u32 b = __float_as_uint(s);
    const u32 k = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
    return (ok && s == s) ? k : 0u;
}

template <int C, int W1 = (C + 2) / 3, int W2 = (C + 1) / 2>
__device__ __forceinline__ void top_pages_row(const float* __restrict__ SC, const int* __restrict__ NPAGES,
                                              const long long* __restrict__ BASE, int* __restrict__ OUT, int n_cols,
                                              int k_sel, int out_width, int rows_per_batch, int out_rows_per_batch,
                                              int vec, int* READY STAMP_ARG) {
    __shared__ u32 red[2][8][32];  /* per pass (parity): up to 8 values per warp */
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nw = blockDim.x >> 5;
    const int row = blockIdx.x;
    const float* s = SC + (long long)row * n_cols;
    const int j0 = tid * KPT;  /* this thread's pages: j0 .. j0 + 7 */
    /* the row's tables first, so their (DRAM) latency runs under the scores' load; asm keeps them here (a plain
       load of BASE would sink to its first use, the output stores, and end the kernel with a DRAM round trip) */
    int nv;
    long long base;
    asm volatile("ld.global.s32 %0, [%1];" : "=r"(nv) : "l"(NPAGES + row));
    asm volatile("ld.global.s64 %0, [%1];" : "=l"(base) : "l"(BASE + row));
    float v[KPT];
    if (vec && j0 + KPT <= n_cols) {  /* (scores are the launch before's output: loaded through L2, .cg) */
        const float4 a = __ldcg((const float4*)(s + j0)), b = __ldcg((const float4*)(s + j0 + 4));
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    } else {
#pragma unroll
        for (int e = 0; e < KPT; e++) v[e] = j0 + e < n_cols ? __ldcg(s + j0 + e) : 0.f;
    }
    const int lim = min(nv - 1, n_cols);  /* pages 0 .. lim - 1 compete; page nv - 1 is forced */
    u32 key[KPT], n_ok = 0, kmax = 0, kmin = 0xffffffffu;
#pragma unroll
    for (int e = 0; e < KPT; e++) {
        const bool ok = j0 + e < lim;
        key[e] = sort_key(v[e], ok);
        if (ok) { n_ok++; kmax = max(kmax, key[e]); kmin = min(kmin, key[e]); }
    }
    n_ok = __reduce_add_sync(FULL, n_ok);
    kmax = __reduce_max_sync(FULL, kmax);
    kmin = __reduce_min_sync(FULL, kmin);
    if (lane == 0) { red[0][0][warp] = n_ok; red[0][1][warp] = kmax; red[0][2][warp] = kmin; }
    __syncthreads();
    n_ok = __reduce_add_sync(FULL, lane < nw ? red[0][0][lane] : 0u);
    kmax = __reduce_max_sync(FULL, lane < nw ? red[0][1][lane] : 0u);
    kmin = __reduce_min_sync(FULL, lane < nw ? red[0][2][lane] : 0xffffffffu);
    const int kk = k_sel - 1;
    /* the threshold T: take the keys above T, and of those equal to T the first `need` by page (all of them when
       `exact`). Fewer competing pages than kk: every one is taken (T = 0, need = kk). */
    u32 T = 0;
    int need = kk, par = 1;
    bool exact = false;
    if ((int)n_ok > kk && kk > 0) {
        /* invariant: count(key >= lo) >= kk, the answer (the largest t with count(key >= t) >= kk) is in
           [lo, hi], and `above` = count(key > hi). Every thread holds the same values: the counts are CTA-wide. */
        u64 lo = kmin, hi = kmax;
        u32 above = 0;
        while (lo < hi) {
            const u64 d = hi - lo;
            u32 t[C], cnt[C], w1[W1], w2[W2];
#pragma unroll
            for (int c = 0; c < C; c++) t[c] = (u32)(lo + (d * (c + 1) + C) / (C + 1));  /* in (lo, hi] */
            /* the counts packed: a thread's (<= 8) and a warp's (<= 256) three to a word in 10-bit fields, one
               redux.sync per word; the CTA's (<= 8192) two to a word in 16-bit fields */
#pragma unroll
            for (int w = 0; w < W1; w++) w1[w] = 0;
#pragma unroll
            for (int c = 0; c < C; c++) {
                u32 n = 0;
#pragma unroll
                for (int e = 0; e < KPT; e++) n += key[e] >= t[c];
                w1[c / 3] += n << (10 * (c % 3));
            }
#pragma unroll
            for (int w = 0; w < W1; w++) w1[w] = __reduce_add_sync(FULL, w1[w]);
            if (lane == 0) {
#pragma unroll
                for (int w = 0; w < W1; w++) red[par][w][warp] = w1[w];
            }
            __syncthreads();  /* (double-buffered: the buffer written next pass was last read before this barrier) */
#pragma unroll
            for (int w = 0; w < W1; w++) w1[w] = lane < nw ? red[par][w][lane] : 0u;
#pragma unroll
            for (int w = 0; w < W2; w++) w2[w] = 0;
#pragma unroll
            for (int c = 0; c < C; c++) w2[c / 2] += ((w1[c / 3] >> (10 * (c % 3))) & 1023u) << (16 * (c % 2));
#pragma unroll
            for (int w = 0; w < W2; w++) w2[w] = __reduce_add_sync(FULL, w2[w]);
#pragma unroll
            for (int c = 0; c < C; c++) cnt[c] = (w2[c / 2] >> (16 * (c % 2))) & 0xffffu;
            par ^= 1;
            bool hit = false;
#pragma unroll
            for (int c = 0; c < C; c++) {  /* thresholds ascending, counts non-increasing */
                if (cnt[c] == (u32)kk) { lo = hi = t[c]; hit = true; break; }
                if (cnt[c] > (u32)kk) { lo = t[c]; }
                else { hi = t[c] - 1; above = cnt[c]; break; }
            }
            if (hit) { exact = true; break; }
        }
        T = (u32)lo;
        need = kk - (int)above;
    }
    STAMP(2);
    const long long out_row = (long long)(row / rows_per_batch) * out_rows_per_batch + row % rows_per_batch;
    int* o = OUT + out_row * out_width;
    if (kk > 0) {
        u32 dm = 0, em = 0;  /* this thread's pages taken outright / tied at T */
#pragma unroll
        for (int e = 0; e < KPT; e++) {  /* bitwise, not && / if: branches per key diverged (run 21) */
            const bool ok = j0 + e < lim, eq = key[e] == T;
            const u32 take = (u32)(ok & ((key[e] > T) | (exact & eq)));
            dm |= take << e;
            em |= ((u32)(ok & eq) & (take ^ 1u)) << e;
        }
        const u32 mine = __popc(dm) | ((u32)__popc(em) << 16);  /* both counts < 2^16: no carry between them */
        u32 x = mine;
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
            const u32 y = __shfl_up_sync(FULL, x, off);
            if (lane >= off) x += y;
        }
        if (lane == 31) red[par][0][warp] = x;
        __syncthreads();
        x += __reduce_add_sync(FULL, lane < warp ? red[par][0][lane] : 0u) - mine;  /* exclusive, in page order */
        int g = x & 0xffff, q = x >> 16;  /* pages taken outright / tied before this thread's */
        for (u32 bits = dm | em; bits; bits &= bits - 1) {  /* (rolled: this code runs once, from a cold cache) */
            const int e = __ffs(bits) - 1;
            const int at = (dm >> e) & 1 ? g++ + min(q, need) : (q < need ? g + q : -1);
            if (!((dm >> e) & 1)) q++;
            if (at >= 0) o[at] = (int)(base + j0 + e);
        }
    }
    if (tid == 0) o[kk] = (int)(base + nv - 1);
    if (READY) {  /* publish the row: every thread's stores, then a release the consumer's acquire pairs with */
        __syncthreads();
        if (tid == 0) asm volatile("st.release.gpu.global.u32 [%0], %1;" :: "l"(READY + out_row), "r"(1u) : "memory");
    }
    STAMP(3);
}

#define TOP_PAGES(C)                                                                                               \
extern "C" __global__ void __launch_bounds__(1024)                                                                 \
top_pages_c##C(const float* __restrict__ SC, const int* __restrict__ NPAGES, const long long* __restrict__ BASE,   \
               int* __restrict__ OUT, int n_cols, int k_sel, int out_width, int rows_per_batch,                    \
               int out_rows_per_batch, int vec, int pdl, int* READY STAMP_ARG) {                                   \
    STAMP(0);                                                                                                      \
    if (pdl) {  /* a PDL dependent: the scores are the launch before's; its successor may launch at once */       \
        asm volatile("griddepcontrol.wait;" ::: "memory");                                                         \
        asm volatile("griddepcontrol.launch_dependents;" ::: "memory");                                            \
    }                                                                                                              \
    STAMP(1);                                                                                                      \
    top_pages_row<C>(SC, NPAGES, BASE, OUT, n_cols, k_sel, out_width, rows_per_batch, out_rows_per_batch, vec,     \
                     READY STAMP_PASS);                                                                            \
}
TOP_PAGES(1)
TOP_PAGES(3)
TOP_PAGES(7)
"""


def compile_cubin(arch: str = "sm_90") -> tuple[bytes, str]:
    """(cubin, ptxas' resource report) of the kernels compiled for `arch` by NVRTC (no GPU needed)."""
    return nvrtc.compile_cubin(SOURCE, arch, "top_pages.cu")


def supports(scores, out, k_sel: int) -> str | None:
    """None if the kernel serves these inputs, else why not."""
    if not scores.is_cuda or torch.cuda.get_device_capability(scores.device)[0] < 8:
        return "needs an sm_80-or-newer GPU (redux.sync)"
    if scores.dtype != torch.float32 or not scores.is_contiguous():
        return f"contiguous fp32 scores only (got {scores.dtype})"
    if scores.shape[-1] > MAX_COLS:
        return f"at most {MAX_COLS} pages per row (got {scores.shape[-1]})"
    if out.dtype != torch.int32 or out.stride(-1) != 1:
        return "out must be int32 with unit stride along its last dimension"
    if k_sel < 1:
        return f"k_sel >= 1 (got {k_sel})"
    return None


def top_pages_cuda(scores, n_pages, base, k_sel: int, out, rows_per_batch: int, out_rows_per_batch: int,
                   pdl: tuple = (False, False), candidates: int | None = None, ready=None):
    """`triton_decode.top_pages` in one CTA per score row: scores [rows, P] fp32 contiguous, n_pages [rows] int32,
    base [rows] int64, out int32 (row stride out.stride(-2)); pdl: triton_decode.use_pdl's pair (as a dependent
    it waits for the launch before, then lets its successor launch); candidates: thresholds counted per pass
    (None: DEFAULT_CANDIDATES).
    ready: None, or int32 flags, one per row of out (contiguous): once a row's ids are written, its flag is set to 1
    with a release, for the launch after it to acquire (`cuda_decode.cluster_paged_attention`'s ready)."""
    why = supports(scores, out, k_sel)
    if why:
        raise ValueError(f"top_pages(impl='cuda'): {why}")
    candidates = DEFAULT_CANDIDATES if candidates is None else candidates
    if candidates not in CANDIDATES:
        raise ValueError(f"top_pages(impl='cuda'): candidates={candidates}; allowed: {CANDIDATES}")
    rows, P = scores.shape
    if ready is not None and (ready.dtype != torch.int32 or not ready.is_contiguous()
                              or ready.numel() * out.stride(-2) < out.numel()):
        raise ValueError("top_pages(impl='cuda'): ready must be contiguous int32 with one flag per row of out")
    n_pages = n_pages.to(torch.int32).contiguous()
    base = base.to(torch.int64).contiguous()
    threads = max(32, -(-P // (KEYS_PER_THREAD * 32)) * 32)
    vec = P % 4 == 0 and scores.data_ptr() % 16 == 0
    args = [ctypes.c_void_p(t.data_ptr()) for t in (scores, n_pages, base, out)]
    args += [ctypes.c_int(x) for x in (P, k_sel, out.stride(-2), rows_per_batch, out_rows_per_batch, vec, pdl[0])]
    args.append(ctypes.c_void_p(0 if ready is None else ready.data_ptr()))
    nvrtc.launch(nvrtc.function(SOURCE, "top_pages.cu", f"top_pages_c{candidates}", scores.device), scores.device,
                 rows, threads, 0, args, pdl=pdl[1])
    return out
