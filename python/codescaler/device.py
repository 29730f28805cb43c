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


@functools.lru_cache(maxsize=None)
def cpu_bf16_speedup(n: int = 1024, reps: int = 3) -> float:
    """Measured bfloat16 / float32 matmul throughput ratio on this CPU (1.0 without native BF16)."""
    import torch

    if not ({"avx512_bf16", "amx_bf16"} & _cpu_flags()):
        return 1.0
    a32 = torch.randn(n, n)
    b32 = torch.randn(n, n)
    best = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = a32.to(dtype), b32.to(dtype)
        torch.mm(a, b)
        t = float("inf")
        for _ in range(reps):
            s = time.perf_counter()
            torch.mm(a, b)
            t = min(t, time.perf_counter() - s)
        best[dtype] = t
    return best[torch.float32] / best[torch.bfloat16]
