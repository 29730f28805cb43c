"""What this machine declares about its CPU, and a matmul timer for the benchmarks' peak figures.

The default dtype is decided from declared features only: timing a matmul at start-up gave different
choices from run to run where the measured ratio sat near the threshold, and rewards changed with it.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_flags() -> frozenset[str]:
    """The feature flags this CPU declares in /proc/cpuinfo (empty where there is none)."""
    return frozenset(_cpu_flags())


def matmul_seconds(dtype: torch.dtype, n: int, reps: int = 3) -> float:
    """Best wall time of an n x n x n matmul at ``dtype`` (after one warm-up)."""
    import torch

    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        s = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - s)
    return best


BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=None)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The native bfloat16 instruction sets this CPU declares in /proc/cpuinfo (empty when none)."""
    flags = _cpu_flags()
    return tuple(f for f in BF16_FLAGS if f in flags)
