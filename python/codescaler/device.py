"""The fastest exact-enough dtype per device, chosen by measurement rather than by name."""

from __future__ import annotations

import functools
import time


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def matmul_seconds(dtype, n: int, reps: int = 3) -> float:
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


@functools.lru_cache(maxsize=None)
def cpu_bf16_speedup(n: int = 1024, reps: int = 3) -> float:
    """Measured bfloat16 / float32 matmul throughput ratio on this CPU (1.0 without native BF16)."""
    import torch

    if not ({"avx512_bf16", "amx_bf16"} & _cpu_flags()):
        return 1.0
    return matmul_seconds(torch.float32, n, reps) / matmul_seconds(torch.bfloat16, n, reps)
