"""The one timing helper: device-event timing, warm-up excluded, medians; CUDA graphs for decode steps.

- `median_ms(fn)`: triton.testing.do_bench (CUDA events, warm-up, L2 flush between repeats), median.
- `graph_ms(step, steps=1)`: capture `step` (called `steps` times, e.g. one reuse cycle) in a CUDA
  graph after a warm-up, time replays with events; returns the median per step.
- `ceilings()`: the device's measured copy bandwidth (bytes read + written per second, a large
  device-to-device copy) and bf16 matmul rate (8192^3), the floors every row is compared with.
"""

from __future__ import annotations

import statistics

import torch


def median_ms(fn, warmup_ms: int = 25, rep_ms: int = 100) -> float:
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median"))


def graph_ms(step, steps: int = 1, replays: int = 200, warmup: int = 3, warm_replays: int = 20) -> float:
    """Median time per step of `step` replayed from a CUDA graph."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up outside the graph (compiles, allocations)
        for _ in range(warmup):
            for i in range(steps):
                step(i)
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(steps):
            step(i)
    for _ in range(warm_replays):  # clocks up to speed before the timed replays
        graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        graph.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / steps)
    return statistics.median(times)


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
