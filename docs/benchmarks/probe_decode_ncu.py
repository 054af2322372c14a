"""Where LServe's reuse-step attention launch waits (run 15, docs/benchmarks/attention.md): the launch to profile, run
under Nsight Compute. 128K, batch 1, the benchmark's config 4x3x8sirpd; beside it, for comparison, the plain read of
the same bytes from probe_read_floor.py (1056 programs x 8192 elements, 4 warps).
Run on a GPU box (ncu flushes the caches before each profiled launch):
  ncu --kernel-name regex:"_paged_split_kernel|_read_kernel" --launch-skip 5 --launch-count 2 \
      --metrics <stall metrics> python3 docs/benchmarks/probe_decode_ncu.py
"""
import torch

from probe_read_floor import _read_kernel
from sparsebench.kernels import bench_steps as bs

bs.PAGED_OPTS = {"num_warps": 4, "num_stages": 3, "pages_per_split": 8, "split_first": True, "strided": True,
                 "short": True, "static_pdl": True}
bs.SELECT_OPTS = {"top_pdl": True}
step, steps, info = bs.build_decode_step("lserve", "triton", 1, 131072, 32, 8, 128, torch.bfloat16)
step(0)  # the selection (its attention launch is _paged_split_kernel launch 0)
for _ in range(5):
    info["parts"]["attention"]()  # a reuse step's launch (a PDL dependent; launches 1..5)
torch.cuda.synchronize()
n = 34_340_864 // 2 // (1056 * 16) * 1056 * 16
x = torch.randn(n, device="cuda", dtype=torch.bfloat16)
out = torch.empty(1056, device="cuda")
for _ in range(5):
    _read_kernel[(1056,)](x, out, n // 1056, BLOCK=8192, PDL=False, num_warps=4)
torch.cuda.synchronize()
