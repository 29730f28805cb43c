"""What this machine declares about its CPU (/proc/cpuinfo): its feature flags and model name.

The default dtype is decided from declared features only: timing a matmul at start-up gave different
choices from run to run where the measured ratio sat near the threshold, and rewards changed with it.
"""

from __future__ import annotations

import functools


def _cpuinfo(field: str) -> str | None:
    """The value of the first ``field`` line of /proc/cpuinfo (None where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_flags() -> set[str]:
    return set((_cpuinfo("flags") or "").split())


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it ("unknown CPU" where there is none)."""
    return _cpuinfo("model name") or "unknown CPU"


def cpu_flags() -> frozenset[str]:
    """The feature flags this CPU declares in /proc/cpuinfo (empty where there is none)."""
    return frozenset(_cpu_flags())


BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=None)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The native bfloat16 instruction sets this CPU declares in /proc/cpuinfo (empty when none)."""
    flags = _cpu_flags()
    return tuple(f for f in BF16_FLAGS if f in flags)
