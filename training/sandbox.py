"""Run untrusted Python (a candidate program and its tests) in a throw-away subprocess.

The child runs ``python -I`` (isolated: no user site, no PYTHON* variables, script dir not on the path) in
a fresh temporary directory with an empty environment, under CPU-time, address-space, file-size and
process-count limits, a wall-clock timeout, its own session (so the whole process group is killed) and,
where ``unshare -n`` works (root, or user namespaces), no network namespace at all: only an unconfigured
loopback. Where it does not, the child still gets no proxy variables, and :data:`NETWORK_ISOLATED` says so.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0
    cpu_s: int = 5
    memory_bytes: int = 1 << 30
    file_bytes: int = 1 << 20
    nice: int = 19


@dataclass(frozen=True)
class RunResult:
    passed: bool  # exit code 0 within the limits
    returncode: int | None  # None on wall-clock timeout
    timed_out: bool
    stderr_tail: str


@lru_cache(maxsize=1)
def _unshare_prefix() -> tuple[str, ...]:
    exe = shutil.which("unshare")
    if exe is None:
        return ()
    try:
        ok = subprocess.run([exe, "-n", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return (exe, "-n") if ok else ()


def network_isolated() -> bool:
    """True when children run in their own network namespace (no route anywhere)."""
    return bool(_unshare_prefix())


def _limit(limits: Limits):
    def apply():
        import resource

        os.setsid()
        os.nice(limits.nice)
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def run_python(source: str, limits: Limits = Limits()) -> RunResult:
    """Run ``source`` as a script in the sandbox; passed means exit code 0 before any limit was hit."""
    with tempfile.TemporaryDirectory(prefix="codescaler-sandbox.") as work:
        script = os.path.join(work, "main.py")
        with open(script, "w", encoding="utf-8") as f:
            f.write(source)
        cmd = [*_unshare_prefix(), sys.executable, "-I", "-B", script]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": work, "TMPDIR": work}
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, preexec_fn=_limit(limits))
        try:
            _, err = proc.communicate(timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return RunResult(False, None, True, "")
        tail = err.decode("utf-8", "replace")[-500:]
        return RunResult(proc.returncode == 0, proc.returncode, False, tail)
