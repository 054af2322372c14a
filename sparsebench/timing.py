"""The one timing helper: device-event timing, warm-up excluded, medians; CUDA graphs for decode steps.

- `median_ms(fn)`: triton.testing.do_bench (CUDA events, warm-up, L2 flush between repeats), median.
- `graph_ms(step, steps=1)`: time each position of a cycle of `steps` calls (e.g. LServe's reuse
  cycle: the selector step, then reuse steps) as its own CUDA graph after a warm-up, replays timed
  with events; returns the mean over the cycle of the per-position medians. Before each timed replay
  L2 is emptied of the step's data (as in a model, where the other layers' KV passes through L2 between
  two steps of one layer): a small working set (a few MB of selected pages) would otherwise be served
  from L2. `L2_MODES` says how.
- `ceilings()`: the device's measured copy bandwidth (bytes read + written per second, a large
  device-to-device copy) and bf16 matmul rate (8192^3), the floors every row is compared with.
"""

from __future__ import annotations

import statistics

import torch


def median_ms(fn, warmup_ms: int = 25, rep_ms: int = 100) -> float:
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median"))


_L2_FLUSH: dict = {}
# L2 state before a timed replay:
#   evicted: a 256 MB buffer is read, so L2 holds other, clean data (as after the other layers' KV reads);
#   flushed: the buffer is zero-filled (do_bench's way), so L2 holds 50 MB of dirty lines, which are written
#            back to DRAM while the timed replay evicts them: a few us of DRAM time charged to the replay;
#   warm: nothing between replays.
L2_MODES = ("evicted", "flushed", "warm")


def _flush_l2(mode: str):
    dev = torch.cuda.current_device()
    if dev not in _L2_FLUSH:  # 256 MB: several times any current GPU's L2
        _L2_FLUSH[dev] = torch.ones(256 << 20, dtype=torch.int8, device="cuda")
    if mode == "flushed":
        _L2_FLUSH[dev].zero_()
    elif mode == "evicted":
        _L2_FLUSH[dev].amax()  # reads 256 MB, writes one byte


def graph_ms(step, steps: int = 1, replays: int = 200, warmup: int = 3, warm_replays: int = 20,
             l2: str = "evicted", per_step: bool = False):
    """Mean over the `steps` positions of a cycle of the median time of `step(i)`, each position captured in
    its own CUDA graph and replayed after putting L2 in state `l2` (see L2_MODES).
    per_step: the list of per-position medians instead of their mean."""
    if l2 not in L2_MODES:
        raise ValueError(f"l2={l2!r}: allowed {L2_MODES}")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up outside the graph (compiles, allocations)
        for _ in range(warmup):
            for i in range(steps):
                step(i)
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graphs = []
    for i in range(steps):
        graphs.append(torch.cuda.CUDAGraph())
        with torch.cuda.graph(graphs[-1]):
            step(i)
    for _ in range(warm_replays):  # clocks up to speed before the timed replays
        for g in graphs:
            g.replay()
    torch.cuda.synchronize()
    times = [[] for _ in graphs]
    for _ in range(replays):
        for i, g in enumerate(graphs):  # in cycle order, so state (e.g. a selection) flows as in decode
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            if l2 != "warm":
                _flush_l2(l2)  # stream-ordered before the start event
            a.record()
            g.replay()
            b.record()
            b.synchronize()
            times[i].append(a.elapsed_time(b))
    medians = [statistics.median(t) for t in times]
    return medians if per_step else sum(medians) / steps


def ceilings(device="cuda") -> dict:
    """Measured copy bandwidth (B/s, read + write) and bf16 matmul rate (FLOP/s)."""
    n = 1 << 30  # 1 GiB copied
    src = torch.randn(n // 2, device=device, dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src))
    bw = 2 * n / (ms * 1e-3)
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    ms_mm = median_ms(lambda: a @ b)
    flops = 2 * 8192 ** 3 / (ms_mm * 1e-3)
    del src, dst, a, b
    torch.cuda.empty_cache()
    return {"copy_bytes_per_s": bw, "matmul_flops_per_s": flops}
