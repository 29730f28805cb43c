"""The model in a process of its own, so the server's HTTP side never waits for it.

A forward pass holds the GIL for most of its length: the compiled decoder blocks do not release it, and
neither do extraction, CPython's validity check and the planner. Run on a thread of the server process,
that starves the event loop: ``/health`` and request intake stalled for seconds behind one large call,
and requests that arrived during a pass could not even be queued to merge into the next. A
:class:`ModelProcess` owns the ``RewardModel`` (and with it the question cache and the in-process reward
cache) in a child process started with ``spawn``; the scheduler's thread hands it one merged call at a
time over a pipe and waits on the pipe, which releases the GIL. The server process then only parses
JSON, queues and answers.

The child ignores SIGINT and SIGTERM (a Ctrl-C, timeout(1) and systemd signal the whole process group;
the server decides how to drain and then closes the pipe, or kills the child past the drain timeout),
exits when the pipe closes (the server is gone), and is started again on the next call if it dies (the
call under way fails with :class:`ModelCrashed`; an item that kills the model fails only its request).
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from ..model import CallStats, Reward, RewardModel

WARMUP = (["Write a function that returns one."], ["```python\ndef one():\n    return 1\n```"])


class ModelCrashed(RuntimeError):
    """The model process died during a call (killed, out of memory, a crash in native code)."""


class PrefixCacheStats:
    """A snapshot of the child's ``PrefixCache`` counters, with the attributes ``/metrics`` reads."""

    def __init__(self, hits: int, misses: int, saved_tokens: int, evictions: int, bytes: int, max_bytes: int,
                 entries: int):
        self.hits, self.misses, self.saved_tokens, self.evictions = hits, misses, saved_tokens, evictions
        self.bytes, self.max_bytes, self._entries = bytes, max_bytes, entries

    def __len__(self) -> int:
        return self._entries


class _StoreStats:
    def __init__(self, bytes: int, entries: int, max_entries: int, evictions: int):
        self.bytes, self._entries, self.max_entries, self.evictions = bytes, entries, max_entries, evictions

    def __len__(self) -> int:
        return self._entries


class RewardCacheStats:
    """A snapshot of the child's ``RewardCache`` counters, with the attributes ``/metrics`` reads."""

    def __init__(self, kind: str, hits: int, misses: int, errors: int, stored_bytes: int, store: _StoreStats | None):
        self.kind, self.hits, self.misses, self.errors, self.stored_bytes = kind, hits, misses, errors, stored_bytes
        self.store = store


def _cache_stats(model: RewardModel) -> tuple[PrefixCacheStats | None, RewardCacheStats | None]:
    p, r = model.prefix_cache, model.reward_cache
    prefix = None if p is None else PrefixCacheStats(p.hits, p.misses, p.saved_tokens, p.evictions, p.bytes,
                                                     p.max_bytes, len(p))
    reward = None
    if r is not None:
        s = r.store
        store = _StoreStats(s.bytes, len(s), s.max_entries, s.evictions) if r.kind == "memory" else None
        reward = RewardCacheStats(r.kind, r.hits, r.misses, r.errors, r.stored_bytes, store)
    return prefix, reward


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError carrying its text (the server shows either)."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _child(conn: Connection, source: str, options: dict[str, Any]) -> None:
    """The model process: load and warm the model, then answer one call per message until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the server drains, then closes the pipe or kills us
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # (timeout(1) and systemd signal the whole group)
    try:
        model = RewardModel.from_pretrained(source, **options)  # warmed by its own first pass; the scheduler
        # then sends WARMUP through the pipe, as it scores it on a thread
    except BaseException as exc:
        conn.send(("error", _portable(exc)))
        return
    info = {"source": model.source, "backend_name": model.backend_name, "dtype": model.dtype,
            "max_length": model.max_length, "options": dict(model.options), "description": model.describe()}
    conn.send(("ready", info, _cache_stats(model)))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        questions, responses, call_options = message
        try:
            rewards, stats = model.score_with_stats(questions, responses, **call_options)
            reply = ("ok", rewards, stats, _cache_stats(model))
        except Exception as exc:
            reply = ("raise", _portable(exc), None, _cache_stats(model))
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


class ModelProcess:
    """A ``RewardModel`` served from a child process, with the parts of its interface the server uses:
    :meth:`score`, :meth:`score_with_stats`, ``source``, ``backend_name``, ``dtype``, ``max_length``, ``options``,
    :meth:`describe`, and snapshots of ``prefix_cache`` and ``reward_cache`` taken after every call.

    :meth:`start` loads the model (blocking until it is warm; a load error is raised here). Not
    thread-safe: one caller (the scheduler's thread) at a time."""

    def __init__(self, source: str, options: dict[str, Any]):
        self.source_arg, self.options_arg = source, dict(options)
        self._ctx = multiprocessing.get_context("spawn")
        self._proc = None
        self._conn = None
        self._lock = threading.Lock()
        self.prefix_cache = self.reward_cache = None
        self.restarts = 0

    @classmethod
    def start(cls, source: str, options: dict[str, Any]) -> "ModelProcess":
        proc = cls(source, options)
        proc._launch()
        return proc

    def _launch(self) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_child, args=(child, self.source_arg, self.options_arg),
                                 name="codescaler-model", daemon=True)
        proc.start()
        child.close()
        try:
            reply = parent.recv()
        except (EOFError, OSError):
            proc.join(5)
            raise ModelCrashed(f"the model process exited while loading ({_exit(proc)})") from None
        if reply[0] == "error":
            proc.join(5)
            raise reply[1]
        _, info, caches = reply
        self._proc, self._conn = proc, parent
        self.source, self.backend_name, self.dtype = info["source"], info["backend_name"], info["dtype"]
        self.max_length, self.options, self._description = info["max_length"], info["options"], info["description"]
        self.prefix_cache, self.reward_cache = caches

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def describe(self) -> str:
        return f"{self._description} (in model process {self.pid})"

    def score(self, questions: list[str], responses: list[str], **options: Any) -> list[Reward]:
        """The rewards ``RewardModel.score`` gives (the same bits: the same code runs in the child).
        Raises what the model raised (``InputError`` for bad input) or :class:`ModelCrashed`."""
        return self.score_with_stats(questions, responses, **options)[0]

    def score_with_stats(self, questions: list[str], responses: list[str],
                         **options: Any) -> tuple[list[Reward], CallStats]:
        """``RewardModel.score_with_stats`` run in the child: :meth:`score`'s rewards and the call's statistics."""
        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                self._relaunch()
            try:
                self._conn.send((list(questions), list(responses), options))
                reply = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError):
                self._proc.join(5)
                why = _exit(self._proc)
                self._proc = None
                raise ModelCrashed(f"the model process exited during this call ({why}); it is started again "
                                   "for the next call") from None
        kind, value, stats, caches = reply
        self.prefix_cache, self.reward_cache = caches
        if kind == "raise":
            raise value
        return value, stats

    def _relaunch(self) -> None:
        self.restarts += 1
        if self._conn is not None:
            self._conn.close()
        self._launch()

    def close(self, timeout: float = 5.0) -> None:
        """Ask the child to exit (after the call under way, if any); kill it past ``timeout`` seconds."""
        proc, conn = self._proc, self._conn
        self._proc = None
        if proc is None:
            return
        try:
            conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        conn.close()

    def kill(self) -> None:
        """Stop the child now (a drain that ran out of time)."""
        proc = self._proc
        if proc is not None and proc.is_alive():
            proc.kill()


def _exit(proc: BaseProcess) -> str:
    code = proc.exitcode
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


__all__ = ["ModelCrashed", "ModelProcess"]
