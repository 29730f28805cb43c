"""The Gate: the pure ASGI middleware in front of every route. It counts requests for ``/metrics`` and
refuses, before any route parses a body, a Host not allowed, a missing API key, a body that is not
uncompressed JSON, too large, too slow to arrive, not UTF-8 or nested too deep."""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import TYPE_CHECKING

from fastapi.responses import Response
from pydantic_core import from_json

from .errors import error_response
from .metrics import ServeMetrics
from .protocol import JSON_DEPTH
from .settings import ServeSettings

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})  # no API key


class Gate:
    """Pure ASGI middleware in front of every route: metrics, Host, API key, body type, size, read time,
    UTF-8 and nesting depth.

    The body is read here, under ``max_body_bytes`` (Content-Length first, then the streamed size) and
    within ``body_timeout``, and replayed to the route, so an oversized, slow or deeply nested body is
    refused before anything parses it.
    """

    def __init__(self, app: ASGIApp, settings: ServeSettings, metrics: ServeMetrics, endpoints: frozenset[str],
                 posts: frozenset[str]) -> None:
        self.app, self.settings, self.metrics, self.endpoints, self.posts = app, settings, metrics, endpoints, posts
        self._key = settings.api_key.encode() if settings.api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        scope.setdefault("state", {})["arrived"] = time.monotonic()
        endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is None and scope["method"] == "POST" and scope["path"] in self.posts:  # else 404, 405
                refusal = _unsupported_body(dict(scope["headers"]))
                if refusal is None:
                    body, refusal = await self._body(scope, receive)
                    if refusal is None:
                        receive = _replay(body, receive)
            if refusal is not None:
                await refusal(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)

    def _refusal(self, scope: Scope) -> Response | None:
        allowed = self.settings.allowed_hosts
        if allowed is not None:
            host = _host_name(dict(scope["headers"]).get(b"host", b"").decode("latin-1"))
            if not any(p == "*" or host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in allowed):
                return error_response(400, "invalid_host", f"Host {host!r} is not served here; --allowed-hosts is "
                                      f"{','.join(allowed)}")
        if self._key is None or scope["path"] in OPEN_PATHS:
            return None
        auth = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = auth.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._key):
            return None
        return error_response(401, "unauthorized", "missing or wrong API key: send 'Authorization: Bearer KEY'",
                              {"WWW-Authenticate": "Bearer"})

    async def _body(self, scope: Scope, receive: Receive) -> tuple[bytes, Response | None]:
        limit = self.settings.max_body_bytes
        too_large = error_response(413, "payload_too_large", f"the body exceeds --max-body-bytes ({limit} bytes)")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return b"", too_large
        chunks, size = [], 0
        until = scope["state"]["arrived"] + self.settings.body_timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), until - time.monotonic())
            except asyncio.TimeoutError:
                return b"", error_response(408, "timeout", f"the body did not arrive within --body-timeout "
                                           f"({self.settings.body_timeout:g} s)", {"Connection": "close"})
            if message["type"] == "http.disconnect":
                return b"", error_response(499, "client_closed", "the client disconnected while sending")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return b"", too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return b"", error_response(422, "invalid_request", f"the body is not valid UTF-8 (byte "
                                       f"0x{body[exc.start]:02x} at offset {exc.start})")
        if b"\0" in body:  # never valid JSON, and Python's json would read it as UTF-16 or UTF-32
            return b"", error_response(422, "invalid_request", f"the body is not valid JSON (a NUL byte at offset "
                                       f"{body.index(0)})")
        if _nested_too_deep(body):
            return b"", error_response(422, "invalid_request", f"the body is not valid JSON here: arrays and objects "
                                       f"nested deeper than {JSON_DEPTH} levels")
        return body, None


def _unsupported_body(headers: dict[bytes, bytes]) -> Response | None:
    """415 unless the body is uncompressed JSON. Requiring ``application/json`` also means a browser page
    cannot post to the server without a CORS preflight, which the server never grants."""
    encoding = headers.get(b"content-encoding", b"").strip().lower()
    if encoding not in (b"", b"identity"):
        return error_response(415, "unsupported_media_type", f"Content-Encoding {encoding.decode('latin-1')!r} is "
                              "not supported: send the body uncompressed")
    given = headers.get(b"content-type", b"").decode("latin-1")
    media, *params = (part.strip().lower() for part in given.split(";"))
    charset = next((p.partition("=")[2].strip('" ') for p in params if p.startswith("charset=")), "utf-8")
    if media != "application/json" or charset not in ("utf-8", "utf8"):
        return error_response(415, "unsupported_media_type", "send the body as JSON with 'Content-Type: "
                              f"application/json' (got {given!r})" if given else "send the body as JSON with "
                              "'Content-Type: application/json' (no Content-Type was given)")
    return None


def _host_name(host: str) -> str:
    """The Host header without its port: ``[::1]:8000`` -> ``[::1]``, ``Localhost:8000`` -> ``localhost``."""
    host = host.strip().lower()
    return host[:host.index("]") + 1] if host.startswith("[") and "]" in host else host.partition(":")[0]


def _nested_too_deep(body: bytes) -> bool:
    """Whether arrays and objects nest deeper than JSON_DEPTH. Python's json recurses once per level, up to
    the interpreter's recursion limit, past the C stack if a library raised that limit; pydantic-core's
    parser stops at JSON_DEPTH. Escaped surrogates (refused later, naming their field) are made ordinary
    characters of the same length so the parse reaches the nesting behind them."""
    if body.count(b"[") + body.count(b"{") <= JSON_DEPTH:
        return False
    try:
        from_json(body.removeprefix(b"\xef\xbb\xbf").replace(b"\\ud", b"\\u0").replace(b"\\uD", b"\\u0"),
                  cache_strings=False)
    except ValueError as exc:
        return "recursion limit" in str(exc)
    return False


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the client's disconnect, if it comes

    return replayed
