"""Clients for a ``codescaler serve`` server with :class:`~codescaler.RewardModel`'s methods and return types.

``Client(url).score(questions, responses)`` returns the :class:`~codescaler.Reward` list an in-process
``RewardModel.score`` would, except that ``Reward.code`` is ``""``: the server does not send the extracted
program back. ``AsyncClient`` has the same methods as coroutines. Both keep their connections open between
calls, retry when the server is busy (503/429, waiting as its ``Retry-After`` says, at most
``max_retry_wait`` seconds a time) or unreachable, split large calls into requests of at most
``chunk_items`` responses (groups kept whole), and raise typed errors: :class:`AuthenticationError` (401),
:class:`RejectedRequestError` (the server refused the request; also an ``InputError``),
:class:`ServerBusyError`, :class:`ServerUnreachableError`, :class:`ServerTimeoutError`, all
:class:`ServerError`.

Deadlines and the fallback reward (what slime and miles do for RL): ``timeout`` bounds each request,
its retries and waits included. With ``fallback=`` a number or None (RL adapters use 0.0), ``score`` and
``score_groups`` never raise for a request that misses its deadline, finds no server or finds it busy
through every retry: its items get ``Reward(fallback, None, "", status)`` with status ``"timeout"``,
``"unreachable"`` or ``"busy"``, ``client.fallbacks`` counts them and a warning is logged. Refusals (401,
422, 413) and server faults (500) still raise: they would fail every step alike. The default,
``fallback="raise"``, raises the typed errors.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

try:
    import httpx
except ImportError as exc:  # the Quickstart installs no extras
    raise ModuleNotFoundError(f"codescaler.Client needs httpx ({exc.name or 'httpx'} is not installed): "
                              "pip install 'codescaler[client]'", name=exc.name) from None

from .. import options as opts
from ..errors import (AuthenticationError, InputError, RejectedRequestError, ServerBusyError, ServerError,
                      ServerTimeoutError, ServerUnreachableError)
from ..model import BestOfN, Reward, check_encodable, check_unicode, checked_pairs, checked_strings

from ..serve.settings import API_KEY_ENV, TIMEOUT_HEADER

__all__ = ["AsyncClient", "AuthenticationError", "Client", "RejectedRequestError", "ServerBusyError", "ServerError",
           "ServerTimeoutError", "ServerUnreachableError"]
BUSY = (429, 503)
READY_POLL_S = 0.2
# Failures before the server saw the request, or of a kept-alive connection it closed: scoring is
# idempotent, so these are retried. A read timeout is not: the work may simply be too large.
UNREACHABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.RemoteProtocolError,
               httpx.ReadError, httpx.WriteError)


RAISE = "raise"  # the default fallback: no fallback, the typed errors are raised
LOG = logging.getLogger("codescaler.client")


# What a training step should survive (status given to the fallback rewards); refusals and faults are not.
FALLBACK_ON = {ServerTimeoutError: "timeout", ServerUnreachableError: "unreachable", ServerBusyError: "busy"}
FALLBACK_STATUSES = frozenset(FALLBACK_ON.values())

T = TypeVar("T")  # what a call's answer reads as: list[Reward], list[list[Reward]] or BestOfN


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One HTTP request and how to read its answer."""

    method: str
    path: str
    body: dict[str, Any] | None
    read: Callable[[dict[str, Any]], T]
    fill: Callable[[Reward], T] | None = None  # the answer with every item given one Reward (the fallback)
    items: int = 0


def _per_call(given: dict[str, Any]) -> dict[str, Any]:
    """Per-call options as sent to the server: checked against the option table, None left out (the
    server then applies its model's defaults, as ``RewardModel`` does)."""
    return opts.checked({k: v for k, v in given.items() if v is not None}, names=opts.PER_CALL)


def _reward(result: dict[str, Any]) -> Reward:
    raw = result["raw_score"]
    return Reward(float(result["reward"]), None if raw is None else float(raw), "", str(result["status"]),
                  bool(result["truncated"]))


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asked to wait: ``Retry-After`` as seconds or as an HTTP date."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _error_message(response: httpx.Response) -> tuple[str, str | None]:
    """The server's ``{"error": {"type", "message"}}``, or the start of whatever else came back."""
    try:
        error = response.json().get("error")
        return str(error["message"]), error.get("type")
    except Exception:
        return response.text[:200] or response.reason_phrase, None


class _Base:
    """Request building, retry decisions and answer reading shared by :class:`Client` and
    :class:`AsyncClient`; they differ only in how a request is sent and how a wait is slept."""

    def __init__(self, url: str, api_key: str | None, timeout: float, retries: int, max_retry_wait: float,
                 chunk_items: int, fallback: float | None | str) -> None:
        if not url.startswith(("http://", "https://")):
            raise InputError(f"server url must start with http:// or https://, got {url!r}")
        if retries < 0 or timeout <= 0 or max_retry_wait < 0 or chunk_items < 1:
            raise InputError("timeout and chunk_items must be positive, retries and max_retry_wait not negative")
        if not (fallback is None or fallback == RAISE or (isinstance(fallback, (int, float))
                                                          and not isinstance(fallback, bool))):
            raise InputError(f"fallback must be a number, None or {RAISE!r}, got {fallback!r}")
        self.fallback = fallback if fallback is None or fallback == RAISE else float(fallback)
        self.fallbacks = 0  # items given the fallback reward so far
        self._count_lock = threading.Lock()
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self.chunk_items = chunk_items
        self.model_info: dict[str, Any] | None = None  # the server's "model" object from its latest answer
        api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self._headers = {TIMEOUT_HEADER: f"{timeout:g}"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._http_options: dict[str, Any] = dict(base_url=self.url, headers=self._headers,
                                  timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # ---- requests

    def _score_calls(self, questions: Sequence[str], responses: Sequence[str],
                     options: dict[str, Any]) -> list[_Call[list[Reward]]]:
        questions, responses = checked_pairs("questions", questions, "responses", responses)
        options = _per_call(options)

        def read(payload: dict[str, Any]) -> list[Reward]:
            return [_reward(r) for r in payload["results"]]

        n = self.chunk_items
        return [_Call("POST", "/v1/rewards", {"items": [{"question": q, "response": r} for q, r in
                                                        zip(questions[i:i + n], responses[i:i + n])], **options}, read,
                      lambda r, k=len(responses[i:i + n]): [r] * k, len(responses[i:i + n]))
                for i in range(0, len(responses), n)]

    def _groups_calls(self, questions: Sequence[str], responses_per_question: Sequence[Sequence[str]],
                      options: dict[str, Any]) -> list[_Call[list[list[Reward]]]]:
        questions = checked_strings("questions", questions)
        if isinstance(responses_per_question, str) or len(responses_per_question) != len(questions):
            raise InputError(f"responses_per_question must hold one list per question ({len(questions)})")
        groups = [checked_strings(f"responses_per_question[{i}]", g) for i, g in enumerate(responses_per_question)]
        check_encodable("questions", questions)
        for i, g in enumerate(groups):
            check_encodable(f"responses_per_question[{i}]", g)
        options = _per_call(options)

        def read(payload: dict[str, Any]) -> list[list[Reward]]:
            return [[_reward(r) for r in group] for group in payload["results"]]

        def call(chunk: list[dict[str, Any]], size: int) -> _Call[list[list[Reward]]]:
            sizes = [len(g["responses"]) for g in chunk]
            return _Call("POST", "/v1/rewards", {"groups": chunk, **options}, read,
                         lambda r: [[r] * k for k in sizes], size)

        calls: list[_Call[list[list[Reward]]]] = []
        chunk: list[dict[str, Any]] = []
        size = 0
        for q, g in zip(questions, groups):
            if chunk and size + len(g) > self.chunk_items:
                calls.append(call(chunk, size))
                chunk, size = [], 0
            chunk.append({"question": q, "responses": g})
            size += len(g)
        if chunk:
            calls.append(call(chunk, size))
        return calls

    def _best_of_n_call(self, question: str, candidates: Sequence[str],
                        options: dict[str, Any]) -> _Call[BestOfN]:
        if not isinstance(question, str):
            raise TypeError(f"question must be str, got {type(question).__name__}")
        candidates = checked_strings("candidates", candidates)
        if not candidates:
            raise InputError("best_of_n needs at least one candidate")
        check_unicode("question", question)
        check_encodable("candidates", candidates)

        def read(payload: dict[str, Any]) -> BestOfN:
            details = [_reward(r) for r in payload["results"]]
            return BestOfN(int(payload["index"]), [d.reward for d in details], details)

        return _Call("POST", "/v1/best_of_n", {"question": question, "candidates": candidates,
                                               **_per_call(options)}, read)

    # ---- answers and retries

    def _backoff(self, attempt: int, asked: float | None) -> float:
        """How long to wait before retry number ``attempt + 1``: what the server asked, else an
        exponential backoff; capped, with a little jitter so many clients do not return at once."""
        wait = asked if asked is not None else 0.25 * 2 ** min(attempt, 16)
        return min(self.max_retry_wait, wait) * (1.0 + 0.1 * random.random())

    def _attempt(self, call: _Call[Any], until: float) -> dict[str, Any]:
        """httpx's arguments for one attempt of a request due by ``until``: the time left, also sent as
        ``X-Request-Timeout`` (rounded up to the millisecond) so the server drops what nobody awaits."""
        left = until - time.monotonic()
        if left <= 0:
            raise ServerTimeoutError(f"{call.method} {self.url}{call.path}: no answer within {self.timeout:g} s "
                                     "(retries included)")
        return {"timeout": httpx.Timeout(left, connect=min(left, 10.0)),
                "headers": {TIMEOUT_HEADER: f"{math.ceil(left * 1000) / 1000:g}"}}

    def _fallback(self, call: _Call[T], exc: ServerError) -> T:
        """The call's answer with every item given the fallback reward; ``exc`` again without a fallback."""
        if self.fallback == RAISE or call.fill is None or type(exc) not in FALLBACK_ON:
            raise exc
        status = FALLBACK_ON[type(exc)]
        with self._count_lock:
            self.fallbacks += call.items
        LOG.warning("%s items get the fallback reward %s (%s): %s", call.items, self.fallback, status, exc)
        return call.fill(Reward(self.fallback, None, "", status, False))

    def _retry(self, attempt: int, wait: float, until: float) -> bool:
        """Whether to retry after ``wait`` seconds: retries left and the wait ends before the deadline."""
        return attempt < self.retries and time.monotonic() + wait < until

    def _read(self, call: _Call[T], response: httpx.Response, attempt: int,
              until: float) -> tuple[T | None, float | None]:
        """The call's result, or the seconds to wait before retrying; raises the typed error otherwise."""
        where = f"{call.method} {self.url}{call.path}"
        status = response.status_code
        if status == 200:
            try:
                payload = response.json()
                result = call.read(payload)
            except Exception as exc:
                raise ServerError(f"{where} answered 200 with an unexpected body ({type(exc).__name__}: {exc}): "
                                  f"{response.text[:200]!r}", status=status) from None
            self.model_info = payload.get("model", self.model_info)
            return result, None
        message, kind = _error_message(response)
        text = f"{where} answered {status}: {message}"
        if status in BUSY:
            wait = self._backoff(attempt, _retry_after(response))
            if self._retry(attempt, wait, until):
                return None, wait
            raise ServerBusyError(f"{text} (still busy after {attempt} retries, of {self.retries}, within "
                                  f"{self.timeout:g} s)", status=status, type=kind)
        if status == 401:
            raise AuthenticationError(text, status=status, type=kind)
        if status == 504:
            raise ServerTimeoutError(text, status=status, type=kind)
        if 400 <= status < 500:
            raise RejectedRequestError(text, status=status, type=kind)
        raise ServerError(text, status=status, type=kind)

    def _failed(self, call: _Call[Any], exc: Exception, attempt: int, until: float) -> float:
        """Seconds to wait after a transport failure, or the typed error when retrying is over or pointless."""
        where = f"{call.method} {self.url}{call.path}"
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, UNREACHABLE):
            raise ServerTimeoutError(f"{where}: no answer within {self.timeout:g} s (retries included; "
                                     f"{type(exc).__name__})") from exc
        wait = self._backoff(attempt, None)
        if self._retry(attempt, wait, until):
            return wait
        raise ServerUnreachableError(f"{where}: cannot reach the server after {attempt} retries, of {self.retries}, "
                                     f"within {self.timeout:g} s ({type(exc).__name__}: {exc})") from exc


class Client(_Base):
    """A blocking client; safe to share between threads (one connection pool).

    ``api_key`` defaults to the ``CODESCALER_API_KEY`` environment variable. ``timeout``: seconds for one
    request, its retries included (the time left is sent as ``X-Request-Timeout`` so the server stops
    working on an abandoned request). ``fallback``: the reward given on a missed deadline, no server or a
    busy one (see the module's docstring); ``"raise"`` (the default) raises instead.
    ``retries``: how often a busy (503/429) or unreachable server is retried (the default backs off for
    about a minute in all, long enough for a server to restart); ``max_retry_wait`` caps one wait.
    ``chunk_items``: responses per request at most (sent one after another).
    """

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 300.0, retries: int = 8,
                 max_retry_wait: float = 30.0, chunk_items: int = 1024,
                 fallback: float | None | str = RAISE) -> None:
        super().__init__(url, api_key, timeout, retries, max_retry_wait, chunk_items, fallback)
        self._http = httpx.Client(**self._http_options)

    def _send(self, call: _Call[T]) -> T:
        until, attempt = time.monotonic() + self.timeout, 0
        try:
            while True:
                try:
                    response = self._http.request(call.method, call.path, json=call.body,
                                                  **self._attempt(call, until))
                except httpx.TransportError as exc:
                    wait = self._failed(call, exc, attempt, until)
                else:
                    result, wait = self._read(call, response, attempt, until)
                    if wait is None:
                        return result
                time.sleep(wait)
                attempt += 1
        except ServerError as exc:
            return self._fallback(call, exc)

    def score(self, questions: Sequence[str], responses: Sequence[str], *, policy: str | None = None,
              language: str | None = None, score_empty: bool | None = None,
              truncation: str | None = None) -> list[Reward]:
        """As :meth:`RewardModel.score`; ``Reward.code`` is ``""``."""
        calls = self._score_calls(questions, responses, dict(policy=policy, language=language,
                                                             score_empty=score_empty, truncation=truncation))
        return [r for call in calls for r in self._send(call)]

    def score_groups(self, questions: Sequence[str], responses_per_question: Sequence[Sequence[str]],
                     **options: str | bool | None) -> list[list[Reward]]:
        """As :meth:`RewardModel.score_groups`: one list of rewards per question."""
        return [g for call in self._groups_calls(questions, responses_per_question, options) for g in self._send(call)]

    def best_of_n(self, question: str, candidates: Sequence[str], **options: str | bool | None) -> BestOfN:
        """As :meth:`RewardModel.best_of_n`: the highest reward, ties to the earliest candidate."""
        return self._send(self._best_of_n_call(question, candidates, options))

    def health(self) -> dict[str, Any]:
        """The server's ``/health`` answer, e.g. ``{"status": "ok", "model": {...}}``; ``"loading"`` while
        the model loads. Raises :class:`ServerUnreachableError` when nothing answers (no retries)."""
        try:
            response = self._http.get("/health")
        except httpx.TransportError as exc:
            raise ServerUnreachableError(f"GET {self.url}/health: {type(exc).__name__}: {exc}") from exc
        return _health(self, response)

    def wait_ready(self, timeout: float = 120.0) -> dict[str, Any]:
        """Poll ``/health`` until the model is loaded (``status == "ok"``); the last error after ``timeout``."""
        until = time.monotonic() + timeout
        while True:
            try:
                health, error = _ready(self, self.health(), timeout)
                if error is None:
                    return health
            except ServerUnreachableError as exc:
                error = exc
            if time.monotonic() >= until:
                raise error
            time.sleep(READY_POLL_S)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base):
    """The asyncio client: :class:`Client`'s methods as coroutines; large calls go out as concurrent
    requests (the server merges them into its batches). Use it from one event loop."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 300.0, retries: int = 8,
                 max_retry_wait: float = 30.0, chunk_items: int = 1024,
                 fallback: float | None | str = RAISE) -> None:
        super().__init__(url, api_key, timeout, retries, max_retry_wait, chunk_items, fallback)
        self._http = httpx.AsyncClient(**self._http_options)

    async def _send(self, call: _Call[T]) -> T:
        until, attempt = time.monotonic() + self.timeout, 0
        try:
            while True:
                try:
                    response = await self._http.request(call.method, call.path, json=call.body,
                                                        **self._attempt(call, until))
                except httpx.TransportError as exc:
                    wait = self._failed(call, exc, attempt, until)
                else:
                    result, wait = self._read(call, response, attempt, until)
                    if wait is None:
                        return result
                await asyncio.sleep(wait)
                attempt += 1
        except ServerError as exc:
            return self._fallback(call, exc)

    async def score(self, questions: Sequence[str], responses: Sequence[str], *, policy: str | None = None,
                    language: str | None = None, score_empty: bool | None = None,
                    truncation: str | None = None) -> list[Reward]:
        """As :meth:`RewardModel.score`; ``Reward.code`` is ``""``."""
        calls = self._score_calls(questions, responses, dict(policy=policy, language=language,
                                                             score_empty=score_empty, truncation=truncation))
        return [r for part in await asyncio.gather(*map(self._send, calls)) for r in part]

    async def score_groups(self, questions: Sequence[str], responses_per_question: Sequence[Sequence[str]],
                           **options: str | bool | None) -> list[list[Reward]]:
        """As :meth:`RewardModel.score_groups`: one list of rewards per question."""
        calls = self._groups_calls(questions, responses_per_question, options)
        return [g for part in await asyncio.gather(*map(self._send, calls)) for g in part]

    async def best_of_n(self, question: str, candidates: Sequence[str], **options: str | bool | None) -> BestOfN:
        """As :meth:`RewardModel.best_of_n`: the highest reward, ties to the earliest candidate."""
        return await self._send(self._best_of_n_call(question, candidates, options))

    async def health(self) -> dict[str, Any]:
        """As :meth:`Client.health`."""
        try:
            response = await self._http.get("/health")
        except httpx.TransportError as exc:
            raise ServerUnreachableError(f"GET {self.url}/health: {type(exc).__name__}: {exc}") from exc
        return _health(self, response)

    async def wait_ready(self, timeout: float = 120.0) -> dict[str, Any]:
        """As :meth:`Client.wait_ready`."""
        until = time.monotonic() + timeout
        while True:
            try:
                health, error = _ready(self, await self.health(), timeout)
                if error is None:
                    return health
            except ServerUnreachableError as exc:
                error = exc
            if time.monotonic() >= until:
                raise error
            await asyncio.sleep(READY_POLL_S)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _health(client: _Base, response: httpx.Response) -> dict[str, Any]:
    """``/health``'s body for 200 (ready) and 503 (loading); the typed error for anything else."""
    if response.status_code in (200, 503):
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, dict) and "status" in payload:
            client.model_info = payload.get("model", client.model_info)
            return payload
    message, kind = _error_message(response)
    raise ServerError(f"GET {client.url}/health answered {response.status_code}: {message}",
                      status=response.status_code, type=kind)


def _ready(client: _Base, health: dict[str, Any], timeout: float) -> tuple[dict[str, Any], ServerError | None]:
    """``health`` and None when the model is loaded, else the error ``wait_ready`` raises if it stays so."""
    if health.get("status") == "ok":
        return health, None
    return health, ServerBusyError(f"{client.url}: not ready after {timeout:g} s: {health}")
