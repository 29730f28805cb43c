"""The HTTP reward server: FastAPI routes over the cross-request batching scheduler.

Endpoints: ``POST /v1/rewards``, ``/v1/best_of_n``, ``/v1/rerank`` (and ``/rerank``; the Cohere/Jina/vLLM
rerank contract), ``/get_reward`` (OpenRLHF's remote reward model), ``/classify`` and ``/pooling`` (vLLM's
request and response shapes, so a vLLM reward-model client points here unchanged), ``GET /health`` and
``/metrics``.
Every error is ``{"error": {"type": ..., "message": ...}}`` with the message naming the field at fault.
The server never executes code and never opens a path named in a request. Bodies are JSON
(``Content-Type: application/json``, uncompressed); a Host allow-list keeps browser pages off a local server.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hmac
import struct
import sys
import time
import uuid
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt,
                      create_model,
                      field_validator, model_validator)
from pydantic_core import from_json
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import options as opts
from ..errors import InputError
from ..model import lone_surrogate
from .chat_text import split_messages, split_query
from .metrics import CONTENT_TYPE, ServeMetrics
from .scheduler import Overloaded, Scheduler, Scored
from .settings import ServeSettings


OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
TIMEOUT_HEADER = "x-request-timeout"
JSON_DEPTH = 200  # arrays and objects nested deeper are refused (pydantic-core's JSON parser stops there)


# --------------------------------------------------------------------------------------------- errors

class ApiError(Exception):
    def __init__(self, status: int, type: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.type, self.headers = status, type, headers


def error_response(status: int, type: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": type, "message": message}}, status_code=status, headers=headers)


def _where(loc) -> str:
    """``("body", "items", 0, "question")`` -> ``items[0].question``. Pydantic's names of union members
    (``function-after[...]``, ``RerankDocument``) are left out: fields are lower-case words."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier() and part.islower():
            out += f".{part}" if out else part
    return out or "body"


def _validation_message(errors) -> str:
    parts = []
    for e in errors[:5]:
        if e["type"] == "json_invalid":
            parts.append(f"the body is not valid JSON ({e.get('ctx', {}).get('error', 'decode error')} at "
                         f"character {e['loc'][-1]})")
        elif e["type"] == "missing" and tuple(e["loc"]) == ("body",):
            parts.append("the body is missing: send a JSON object")
        else:
            parts.append(f"{_where(e['loc'])}: {e['msg'].removeprefix('Value error, ')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


# --------------------------------------------------------------------------------------------- bodies

def _valid_unicode(text: str) -> str:
    """Every text field of a body: text that is not valid Unicode is never scored nor echoed; a 422 names
    the field, as ``RewardModel.score``'s InputError does."""
    at = lone_surrogate(text)
    if at is not None:
        raise ValueError(f"not valid Unicode: lone surrogate {text[at]!r} at character {at}")
    return text


Text = Annotated[str, AfterValidator(_valid_unicode)]


def _json_integer(value):
    return int(value) if isinstance(value, float) and value.is_integer() else value


def integer(minimum: int):
    """A JSON integer of at least ``minimum``: JSON Schema's integers include ``1.0``; a bool or a string
    stays refused."""
    return Annotated[StrictInt, Field(ge=minimum), BeforeValidator(_json_integer)]


def _exactly_one(*names: str) -> dict:
    """The schema of "exactly one of these fields is given and not null"."""
    return {"oneOf": [{"required": [n], "properties": {n: {"not": {"type": "null"}}}} for n in names]}


def _per_call_field(o: opts.Option):
    if o.choices is not None:
        kind = Literal[o.choices]
    elif o.kind is bool:
        kind = StrictBool
    elif o.kind is int:
        kind = integer(1)
    else:
        kind = o.kind
    return kind | None, Field(None, description=f"{o.help} (default: the server's)")


# Generated from the option table: the per-call names and their choices are declared once.
PerCall = create_model("PerCall", __config__=ConfigDict(extra="forbid"),
                       **{n: _per_call_field(opts.BY_NAME[n]) for n in opts.PER_CALL})


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: Text
    response: Text


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: Text
    responses: list[Text]


class RewardsRequest(PerCall):
    """Exactly one of ``items`` (independent pairs) and ``groups`` (one question, several responses)."""

    model_config = ConfigDict(json_schema_extra=_exactly_one("items", "groups"))
    items: list[Item] | None = None
    groups: list[Group] | None = None

    @model_validator(mode="after")
    def _one_of(self):
        if (self.items is None) == (self.groups is None):
            raise ValueError("send exactly one of 'items' and 'groups'")
        return self


class BestOfNRequest(PerCall):
    question: Text
    candidates: list[Text] = Field(min_length=1)


class RerankDocument(BaseModel):
    text: Text


class RerankRequest(PerCall):
    """The Cohere/Jina/vLLM rerank body; unknown fields (e.g. Cohere's ``rank_fields``) are ignored."""

    model_config = ConfigDict(extra="ignore")
    query: Text
    documents: list[Text | RerankDocument]
    top_n: integer(0) | None = Field(None, description="results to return; null or 0: all")
    return_documents: StrictBool = Field(True, description="echo each document's text (Jina's and vLLM's "
                                         "behaviour; Cohere's v1 default is false)")
    model: Text | None = Field(None, description="ignored (one model is served); echoed in the response")


class GetRewardRequest(PerCall):
    """OpenRLHF's remote reward model body; ``labels`` and unknown fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    query: list[Text]
    prompts: list[Text] | None = None
    labels: list[Any] | None = None


class ChatContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore", json_schema_extra={
        "properties": {"type": {"const": "text"}, "text": {"type": "string"}}, "required": ["type", "text"]})
    type: str
    text: Text | None = None

    @model_validator(mode="after")
    def _text_only(self):
        if self.type != "text" or self.text is None:
            raise ValueError(f"only text parts are scored, got a {self.type!r} part")
        return self


class ChatMessage(BaseModel):
    """An OpenAI chat message: ``role`` and the text of ``content`` are read, other fields ignored."""

    model_config = ConfigDict(extra="ignore")
    role: Text
    content: Text | list[ChatContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class VllmPoolingRequest(PerCall):
    """vLLM's pooling request forms: ``input`` (one rendered conversation or a list of them) or
    ``messages`` (one conversation). vLLM-only knobs (``user``, ``priority``, ``request_id``,
    ``add_special_tokens``, ``use_activation``/``activation``/``softmax``, ``task``, ``chat_template``, ...)
    are accepted and ignored: the number returned is always the reward."""

    model_config = ConfigDict(extra="ignore", json_schema_extra=_exactly_one("input", "messages"))
    model: Text | None = Field(None, description="ignored (one model is served); echoed in the response")
    input: Text | list[Text] | None = Field(None, description="chat texts rendered by a chat template (ChatML or "
                                            "Llama-3): the last user turn is the question, the text after the "
                                            "last assistant header the response")
    messages: list[ChatMessage] | None = Field(None, description="one conversation: the last assistant message is "
                                               "the response, the last user message before it the question")
    truncate_prompt_tokens: integer(-1) | None = Field(
        None, description="null, -1 or at least the server's max_length: the reward is defined over the model's "
        "whole length (see the 'truncation' option for what is cut beyond it)")

    @field_validator("input", mode="before")
    @classmethod
    def _no_token_ids(cls, value):
        if isinstance(value, list) and any(isinstance(v, (int, list)) for v in value):
            raise ValueError("token ids are not accepted: send the rendered text (a string or a list of strings)")
        return value

    @model_validator(mode="after")
    def _one_of(self):
        if (self.input is None) == (self.messages is None):
            raise ValueError("send exactly one of 'input' and 'messages'")
        return self


class ClassificationRequest(VllmPoolingRequest):
    """vLLM's ``ClassificationRequest`` (its completion and chat forms)."""


class PoolingRequest(VllmPoolingRequest):
    """vLLM's ``PoolingRequest`` (its completion and chat forms)."""

    encoding_format: Literal["float", "base64"] = Field("float", description="'base64': the rewards as float32 "
                                                        "bytes (rounded from the float64 of 'float')")
    embed_dtype: Literal["float32"] = "float32"
    endianness: Literal["native", "little", "big"] = "native"


class Result(BaseModel):
    reward: float
    raw_score: float | None
    status: str
    truncated: bool


class ModelInfo(BaseModel):
    name: str
    backend: str
    dtype: str
    max_length: int


class RewardsResponse(BaseModel):
    results: list[Result] | list[list[Result]]
    model: ModelInfo


class BestOfNResponse(BaseModel):
    index: int
    rewards: list[float]
    results: list[Result]
    model: ModelInfo


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult]
    usage: RerankUsage


class GetRewardResponse(BaseModel):
    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[float]]
    model: ModelInfo


class UsageInfo(BaseModel):
    prompt_tokens: int
    total_tokens: int
    completion_tokens: int = 0
    prompt_tokens_details: None = None


class RewardFields(BaseModel):
    """Beyond vLLM's fields (its models keep unknown ones): what ``/v1/rewards`` says of the item."""

    raw_score: float | None
    status: str
    truncated: bool


class ClassificationData(RewardFields):
    index: int
    label: str = Field(description="always 'reward'")
    probs: list[float] = Field(description="[the reward]: 0.0 without valid code, else softplus of the raw score")
    num_classes: int = Field(description="always 1")


class ClassificationResponse(BaseModel):
    id: str
    object: Literal["list"]
    created: int
    model: str
    data: list[ClassificationData]
    usage: UsageInfo


class PoolingData(RewardFields):
    index: int
    object: Literal["pooling"]
    data: list[float] | str = Field(description="[the reward], or its float32 bytes in base64")


class PoolingResponse(BaseModel):
    id: str
    object: Literal["list"]
    created: int
    model: str
    data: list[PoolingData]
    usage: UsageInfo


class HealthResponse(BaseModel):
    status: str = Field(description='"ok"; "busy" when the model call under way has run longer than the request '
                        'timeout (503); "loading", "failed: ..." or "shutting down" (503)')
    model: ModelInfo | None = None
    busy_seconds: float | None = Field(None, description="how long the model call under way has run (0 when idle)")


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


# What a scoring route answers besides 200; the Gate's 400 (Host) and 401 (API key) are added to every
# operation they apply to by _openapi, from the server's settings.
ERRORS = {code: {"model": ErrorResponse, "description": what} for code, what in (
    (408, "the body did not arrive within --body-timeout"),
    (413, "body over --max-body-bytes or more responses than --max-items"),
    (415, "a Content-Type other than application/json, or a Content-Encoding (send the body uncompressed)"),
    (422, f"malformed body: not UTF-8, not JSON, nested deeper than {JSON_DEPTH}, a wrong type, a missing field, "
     "an unknown option value, text that is not valid Unicode"),
    (503, "queue full, model not loaded yet or shutting down; see Retry-After"),
    (504, "not answered within --timeout or X-Request-Timeout"),
)}
GATE_ERRORS = {
    400: "the Host header names no host in --allowed-hosts",
    401: "missing or wrong `Authorization: Bearer KEY`",
}


def _result(r) -> dict:
    return {"reward": r.reward, "raw_score": r.raw_score, "status": r.status, "truncated": r.truncated}


# ----------------------------------------------------------------------------------------- middleware

class Gate:
    """Pure ASGI middleware in front of every route: metrics, Host, API key, body type, size, read time,
    UTF-8 and nesting depth.

    The body is read here, under ``max_body_bytes`` (Content-Length first, then the streamed size) and
    within ``body_timeout``, and replayed to the route, so an oversized, slow or deeply nested body is
    refused before anything parses it.
    """

    def __init__(self, app, settings: ServeSettings, metrics: ServeMetrics, endpoints: frozenset[str],
                 posts: frozenset[str]):
        self.app, self.settings, self.metrics, self.endpoints, self.posts = app, settings, metrics, endpoints, posts
        self._key = settings.api_key.encode() if settings.api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        scope.setdefault("state", {})["arrived"] = time.monotonic()
        endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
        status = 500

        async def send_status(message):
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

    def _refusal(self, scope) -> Response | None:
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

    async def _body(self, scope, receive) -> tuple[bytes, Response | None]:
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


def _replay(body: bytes, receive):
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the client's disconnect, if it comes

    return replayed


# ------------------------------------------------------------------------------------------------ app

def create_app(model_or_factory, settings: ServeSettings | None = None, *, scheduler_class=Scheduler) -> FastAPI:
    """The server's ASGI app. ``model_or_factory``: a ``RewardModel`` or a zero-argument callable
    returning one, loaded and warmed on the model thread at startup (``/health`` answers 503 until then).
    ``app.state.scheduler`` exposes the scheduler (``.loaded``, ``.error``, ``.model``); ``scheduler_class``
    takes ``Scheduler``'s arguments (Ray Serve's app passes one whose batches ``@serve.batch`` forms)."""
    from contextlib import asynccontextmanager

    settings = settings or ServeSettings()
    metrics = ServeMetrics()
    scheduler = scheduler_class(model_or_factory, window_s=settings.batch_window_ms / 1000 if settings.batching else 0.0,
                                max_batch_tokens=settings.max_batch_tokens_in_flight, max_batch_items=settings.max_items,
                                max_queue=settings.max_queue, merge=settings.batching, metrics=metrics)
    metrics.watch_prefix_cache(lambda: getattr(scheduler.model, "prefix_cache", None) if scheduler.ready else None)
    metrics.watch_reward_cache(lambda: getattr(scheduler.model, "reward_cache", None) if scheduler.ready else None)

    @asynccontextmanager
    async def lifespan(_app):
        scheduler.start()
        try:
            yield
        finally:
            await asyncio.to_thread(scheduler.stop)

    app = FastAPI(title="codescaler reward server", version=_version(), lifespan=lifespan,
                  description="Execution-free rewards for code, batched across requests. Errors are "
                  '`{"error": {"type", "message"}}`.')
    app.state.scheduler = scheduler
    app.state.metrics = metrics

    def model_info() -> dict:
        m = scheduler.model
        return {"name": m.source, "backend": m.backend_name, "dtype": m.dtype, "max_length": m.max_length}

    def deadline(request: Request) -> float:
        seconds = settings.timeout
        given = request.headers.get(TIMEOUT_HEADER)
        if given is not None:
            try:
                asked = float(given)
            except ValueError:
                asked = float("nan")
            if not asked > 0:
                raise ApiError(422, "invalid_request", f"header X-Request-Timeout must be a positive number of "
                               f"seconds, got {given!r}")
            seconds = min(seconds, asked)
        return request.state.arrived + seconds

    async def score(request: Request, questions: list[str], responses: list[str], body: BaseModel) -> Scored:
        """Queue the pairs, wait for their rewards; 413, 503, 504 or 499 (client gone) otherwise."""
        if len(responses) > settings.max_items:
            raise ApiError(413, "payload_too_large", f"{len(responses)} responses in one request; --max-items "
                           f"is {settings.max_items}")
        until = deadline(request)
        try:
            if not scheduler.ready:  # also for an empty request: its answer names the model
                raise Overloaded("the model is still loading", 1)
            if not responses:
                return Scored([], [])
            job = scheduler.submit(questions, responses, {n: getattr(body, n) for n in opts.PER_CALL})
        except Overloaded as exc:
            raise ApiError(503, "overloaded", str(exc), {"Retry-After": str(exc.retry_after)}) from None
        answer = asyncio.wrap_future(job.future)
        gone = asyncio.ensure_future(_disconnect(request))
        done, _ = await asyncio.wait({answer, gone}, timeout=max(0.0, until - time.monotonic()),
                                     return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if answer in done:
            try:
                return answer.result()
            except Overloaded as exc:  # answered by a drain (SIGTERM) instead of the model
                raise ApiError(503, "overloaded", str(exc), {"Retry-After": str(exc.retry_after)}) from None
        scheduler.abandon(job)
        answer.add_done_callback(_consume)
        if gone in done:
            raise ApiError(499, "client_closed", "the client disconnected")
        raise ApiError(504, "timeout", f"no answer within {until - request.state.arrived:g} s (--timeout or "
                       "X-Request-Timeout); items not yet started were dropped")

    @app.post("/v1/rewards", response_model=RewardsResponse, responses=ERRORS,
              summary="rewards for (question, response) items or for groups of responses per question")
    async def rewards(body: RewardsRequest, request: Request):
        if body.items is not None:
            questions, responses = [i.question for i in body.items], [i.response for i in body.items]
        else:
            questions = [g.question for g in body.groups for _ in g.responses]
            responses = [r for g in body.groups for r in g.responses]
        results = [_result(r) for r in (await score(request, questions, responses, body)).rewards]
        if body.groups is not None:
            grouped, at = [], 0
            for g in body.groups:
                grouped.append(results[at:at + len(g.responses)])
                at += len(g.responses)
            results = grouped
        return JSONResponse({"results": results, "model": model_info()})

    @app.post("/v1/best_of_n", response_model=BestOfNResponse, responses=ERRORS,
              summary="the highest-reward candidate (ties to the earliest), as RewardModel.best_of_n")
    async def best_of_n(body: BestOfNRequest, request: Request):
        scored = await score(request, [body.question] * len(body.candidates), body.candidates, body)
        rewards = [r.reward for r in scored.rewards]
        best = max(range(len(rewards)), key=lambda i: (rewards[i], -i))
        return JSONResponse({"index": best, "rewards": rewards, "results": [_result(r) for r in scored.rewards],
                             "model": model_info()})

    async def rerank(body: RerankRequest, request: Request):
        texts = [d if isinstance(d, str) else d.text for d in body.documents]
        scored = await score(request, [body.query] * len(texts), texts, body)
        order = sorted(range(len(texts)), key=lambda i: (-scored.rewards[i].reward, i))
        if body.top_n:
            order = order[:body.top_n]
        results = []
        for i in order:
            result = {"index": i, "relevance_score": scored.rewards[i].reward}
            if body.return_documents:
                result["document"] = {"text": texts[i]}
            results.append(result)
        tokens = sum(scored.tokens)
        return JSONResponse({"id": f"rerank-{uuid.uuid4().hex}", "model": body.model or scheduler.model.source,
                             "results": results, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    for path in ("/v1/rerank", "/rerank"):
        app.post(path, response_model=RerankResponse, responses=ERRORS,
                 summary="Cohere/Jina/vLLM rerank: documents by reward, highest first")(rerank)

    @app.post("/get_reward", response_model=GetRewardResponse, responses=ERRORS,
              summary="OpenRLHF remote reward model: rewards for rendered queries",
              description="Beyond the schema, 422 (naming `query[i]`) when a query does not start with its "
              "prompt, when `prompts` and `query` differ in length, or, without `prompts`, when a query is not a "
              "ChatML or Llama-3 rendering with a user turn followed by an assistant header.")
    async def get_reward(body: GetRewardRequest, request: Request):
        if body.prompts is not None and len(body.prompts) != len(body.query):
            raise ApiError(422, "invalid_request", f"prompts has {len(body.prompts)} items but query has "
                           f"{len(body.query)}")
        questions, responses = [], []
        for i, query in enumerate(body.query):
            try:
                q, r = split_query(query, None if body.prompts is None else body.prompts[i])
            except InputError as exc:
                hint = "; send 'prompts' so the response can be told from the prompt" if body.prompts is None else ""
                raise ApiError(422, "invalid_request", f"query[{i}]: {exc}{hint}") from None
            questions.append(q)
            responses.append(r)
        got = (await score(request, questions, responses, body)).rewards
        rewards = [r.reward for r in got]
        return JSONResponse({"rewards": rewards, "scores": rewards,
                             "extra_logs": {"valid_code": [float(r.status == "ok") for r in got],
                                            "truncated": [float(r.truncated) for r in got]},
                             "model": model_info()})

    async def vllm_pooling(body: VllmPoolingRequest, request: Request, prefix: str) -> tuple[dict, list[dict]]:
        """Score a vLLM-shaped body: the response's common fields and, per item, the reward's fields."""
        limit = body.truncate_prompt_tokens
        if limit is not None and limit != -1 and scheduler.ready and limit < scheduler.model.max_length:
            raise ApiError(422, "invalid_request", f"truncate_prompt_tokens {limit} is below the server's max_length "
                           f"({scheduler.model.max_length}): the reward is defined over the model's whole length; "
                           "send null or -1 (the 'truncation' option says what is cut beyond it)")
        try:
            if body.messages is not None:
                where = "messages"
                pairs = [split_messages([(m.role, m.text()) for m in body.messages])]
            else:
                texts = [body.input] if isinstance(body.input, str) else body.input
                pairs = []
                for i, text in enumerate(texts):
                    where = "input" if isinstance(body.input, str) else f"input[{i}]"
                    pairs.append(split_query(text))
        except InputError as exc:
            hint = "" if where == "messages" else "; or send the conversation as 'messages'"
            raise ApiError(422, "invalid_request", f"{where}: {exc}{hint}") from None
        scored = await score(request, [q for q, _ in pairs], [r for _, r in pairs], body)
        tokens = sum(scored.tokens)
        common = {"id": f"{prefix}-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()),
                  "model": body.model or scheduler.model.source,
                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0,
                            "prompt_tokens_details": None}}
        return common, [{"index": i, "raw_score": r.raw_score, "status": r.status, "truncated": r.truncated,
                         "reward": r.reward} for i, r in enumerate(scored.rewards)]

    @app.post("/classify", response_model=ClassificationResponse, responses=ERRORS,
              summary="vLLM classify: probs = [reward] per input (rendered chat texts, or one conversation)",
              description="Beyond the schema, 422 when an `input` text is not a ChatML or Llama-3 rendering with a "
              "user turn followed by an assistant header, when `messages` has no assistant message or no user "
              "message before the last one, or when `truncate_prompt_tokens` is below the server's max_length.")
    async def classify(body: ClassificationRequest, request: Request):
        common, items = await vllm_pooling(body, request, "classify")
        data = [{"index": x["index"], "label": "reward", "probs": [x.pop("reward")], "num_classes": 1, **x}
                for x in items]
        return JSONResponse({**common, "data": data})

    @app.post("/pooling", response_model=PoolingResponse, responses=ERRORS,
              summary="vLLM pooling: data = [reward] per input (rendered chat texts, or one conversation)",
              description="Beyond the schema, 422 when an `input` text is not a ChatML or Llama-3 rendering with a "
              "user turn followed by an assistant header, when `messages` has no assistant message or no user "
              "message before the last one, or when `truncate_prompt_tokens` is below the server's max_length.")
    async def pooling(body: PoolingRequest, request: Request):
        common, items = await vllm_pooling(body, request, "pool")
        order = sys.byteorder if body.endianness == "native" else body.endianness
        data = []
        for x in items:
            reward = [x.pop("reward")]
            if body.encoding_format == "base64":
                reward = base64.b64encode(struct.pack(("<" if order == "little" else ">") + "f", reward[0])).decode()
            data.append({"index": x["index"], "object": "pooling", "data": reward, **x})
        return JSONResponse({**common, "data": data})

    @app.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}},
             summary="200 once the model is loaded and warmed; 503 before, while shutting down, or when one model "
             "call has run longer than the request timeout (no API key needed)")
    async def health():
        if scheduler.stopping:
            return JSONResponse({"status": "shutting down"}, status_code=503, headers={"Retry-After": "1"})
        if scheduler.ready:
            busy = round(scheduler.busy_seconds(), 3)
            if busy > settings.timeout:  # stuck on one call for longer than any request may wait
                return JSONResponse({"status": "busy", "model": model_info(), "busy_seconds": busy},
                                    status_code=503, headers={"Retry-After": str(max(1, round(busy)))})
            return JSONResponse({"status": "ok", "model": model_info(), "busy_seconds": busy})
        status = "loading" if scheduler.error is None else f"failed: {scheduler.error}"
        return JSONResponse({"status": status}, status_code=503, headers={"Retry-After": "1"})

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus():
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.exception_handler(ApiError)
    async def on_api_error(_request, exc: ApiError):
        return error_response(exc.status, exc.type, str(exc), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_request, exc: RequestValidationError):
        return error_response(422, "invalid_request", _validation_message(exc.errors()))

    @app.exception_handler(InputError)
    async def on_input_error(_request, exc: InputError):
        return error_response(422, "invalid_request", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI's "error parsing the body"
            cause = exc.__cause__
            return error_response(422, "invalid_request", f"the body is not valid JSON ({type(cause).__name__}: "
                                  f"{cause})")
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = (f"no endpoint {request.method} {request.url.path}; see /docs" if exc.status_code in (404, 405)
                   else str(exc.detail))
        return error_response(exc.status_code, kind, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def on_unexpected(_request, exc: Exception):
        return error_response(500, "internal", f"{type(exc).__name__}: {exc}")

    app.openapi = functools.partial(_openapi, app, settings)
    endpoints = frozenset(route.path for route in app.routes)
    posts = frozenset(route.path for route in app.routes if "POST" in getattr(route, "methods", ()))
    app.add_middleware(Gate, settings=settings, metrics=metrics, endpoints=endpoints, posts=posts)
    return app


def _openapi(app: FastAPI, settings: ServeSettings) -> dict:
    """FastAPI's schema plus what the Gate answers before any route: 400 to a Host not allowed and, with an
    API key, the bearer scheme and 401 on every operation but the open ones."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
        if settings.api_key:
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {
                "type": "http", "scheme": "bearer", "description": "the server's --api-key (or $CODESCALER_API_KEY)"}}
        for path, operations in schema["paths"].items():
            for operation in operations.values():
                if settings.allowed_hosts is not None:
                    operation["responses"]["400"] = {"description": GATE_ERRORS[400], **error}
                if settings.api_key and path not in OPEN_PATHS:
                    operation["responses"]["401"] = {"description": GATE_ERRORS[401], **error}
                    operation["security"] = [{"bearer": []}]
    return app.openapi_schema


async def _disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _consume(future) -> None:
    """Retrieve a discarded answer's exception so asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()


def _version() -> str:
    from .. import __version__

    return __version__
