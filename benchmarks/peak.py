"""Dense matmul peak of this machine, measured in the same run as the step it is compared with.

The FLOP/s fraction of a training step only means something against a peak taken under the same
load, threads and dtype, so every benchmark that reports a fraction calls :func:`matmul_peak`.
"""

from __future__ import annotations

import torch

from .common import device, log, sync, timed


def matmul_peak(size: int = 2048, repeats: int = 5, dtype=torch.float32) -> dict:
    """Best GFLOP/s of a [size x size] @ [size x size] matmul (2 size^3 FLOPs), and the median."""
    dev = device()
    a = torch.randn(size, size, device=dev, dtype=dtype)
    b = torch.randn(size, size, device=dev, dtype=dtype)
    times = timed(lambda: torch.mm(a, b), repeats=repeats, warmup=2)
    sync()
    flops = 2.0 * size ** 3
    best, med = flops / min(times) / 1e9, flops / sorted(times)[len(times) // 2] / 1e9
    log(f"matmul peak ({size}^3, {dtype}): best {best:.1f} GFLOP/s, median {med:.1f}")
    return {"size": size, "dtype": str(dtype), "best_gflops": best, "median_gflops": med}
