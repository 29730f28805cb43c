"""The server's endpoints on one ``APIRouter``: ``POST /v1/rewards``, ``/v1/best_of_n``, ``/v1/rerank`` (and
``/rerank``; the Cohere/Jina/vLLM rerank contract), ``/get_reward`` (OpenRLHF's remote reward model),
``/classify`` and ``/pooling`` (vLLM's request and response shapes, so a vLLM reward-model client points here
unchanged), ``GET /health`` and ``/metrics``.

Each route parses its body (``protocol``), turns it into (question, response) pairs, has ``Serving`` queue
them on the app's scheduler and answers in its own shape. The scheduler and settings come from
``request.app.state`` through the ``serving_of`` dependency, so a route runs under any app that sets them.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from .. import options as opts
from ..errors import InputError
from ..model import best_index, regroup
from .chat_text import split_messages, split_query
from .errors import ERRORS, ApiError
from .metrics import CONTENT_TYPE
from .protocol import (BestOfNRequest, BestOfNResponse, ClassificationRequest, ClassificationResponse,
                       GetRewardRequest, GetRewardResponse, HealthResponse, PoolingRequest, PoolingResponse,
                       RerankRequest, RerankResponse, RewardsRequest, RewardsResponse, VllmPoolingRequest)
from .scheduler import Overloaded, Scored
from .settings import TIMEOUT_HEADER, ServeSettings


@dataclass(frozen=True)
class Serving:
    """What every route shares: the app's scheduler (``Scheduler`` or one taking its arguments) and
    settings; queues a request's pairs and waits for their rewards within the request's deadline."""

    scheduler: Any
    settings: ServeSettings

    def model_info(self) -> dict[str, Any]:
        m = self.scheduler.model
        return {"name": m.source, "backend": m.backend_name, "dtype": m.dtype, "max_length": m.max_length}

    def deadline(self, request: Request) -> float:
        seconds = self.settings.timeout
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

    async def score(self, request: Request, questions: list[str], responses: list[str], body: BaseModel) -> Scored:
        """Queue the pairs, wait for their rewards; 413, 503, 504 or 499 (client gone) otherwise."""
        scheduler, settings = self.scheduler, self.settings
        if len(responses) > settings.max_items:
            raise ApiError(413, "payload_too_large", f"{len(responses)} responses in one request; --max-items "
                           f"is {settings.max_items}")
        until = self.deadline(request)
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


async def serving_of(request: Request) -> Serving:
    """The routes' dependency: the scheduler and settings the app factory put on ``app.state`` (async, so
    FastAPI resolves it on the event loop rather than in a worker thread)."""
    return Serving(request.app.state.scheduler, request.app.state.settings)


Served = Annotated[Serving, Depends(serving_of)]
router = APIRouter()


@router.post("/v1/rewards", response_model=RewardsResponse, responses=ERRORS,
             summary="rewards for (question, response) items or for groups of responses per question")
async def rewards(body: RewardsRequest, request: Request, serving: Served) -> JSONResponse:
    if body.items is not None:
        questions, responses = [i.question for i in body.items], [i.response for i in body.items]
    else:
        questions = [g.question for g in body.groups for _ in g.responses]
        responses = [r for g in body.groups for r in g.responses]
    results = [r.as_dict() for r in (await serving.score(request, questions, responses, body)).rewards]
    if body.groups is not None:
        results = regroup(results, [len(g.responses) for g in body.groups])
    return JSONResponse({"results": results, "model": serving.model_info()})


@router.post("/v1/best_of_n", response_model=BestOfNResponse, responses=ERRORS,
             summary="the highest-reward candidate (ties to the earliest), as RewardModel.best_of_n")
async def best_of_n(body: BestOfNRequest, request: Request, serving: Served) -> JSONResponse:
    scored = await serving.score(request, [body.question] * len(body.candidates), body.candidates, body)
    rewards = [r.reward for r in scored.rewards]
    return JSONResponse({"index": best_index(rewards), "rewards": rewards,
                         "results": [r.as_dict() for r in scored.rewards],
                         "model": serving.model_info()})


async def rerank(body: RerankRequest, request: Request, serving: Served) -> JSONResponse:
    texts = [d if isinstance(d, str) else d.text for d in body.documents]
    scored = await serving.score(request, [body.query] * len(texts), texts, body)
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
    return JSONResponse({"id": f"rerank-{uuid.uuid4().hex}", "model": body.model or serving.scheduler.model.source,
                         "results": results, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


for _path in ("/v1/rerank", "/rerank"):
    router.post(_path, response_model=RerankResponse, responses=ERRORS,
                summary="Cohere/Jina/vLLM rerank: documents by reward, highest first")(rerank)


@router.post("/get_reward", response_model=GetRewardResponse, responses=ERRORS,
             summary="OpenRLHF remote reward model: rewards for rendered queries",
             description="Beyond the schema, 422 (naming `query[i]`) when a query does not start with its "
             "prompt, when `prompts` and `query` differ in length, or, without `prompts`, when a query is not a "
             "ChatML or Llama-3 rendering with a user turn followed by an assistant header.")
async def get_reward(body: GetRewardRequest, request: Request, serving: Served) -> JSONResponse:
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
    got = (await serving.score(request, questions, responses, body)).rewards
    rewards = [r.reward for r in got]
    return JSONResponse({"rewards": rewards, "scores": rewards,
                         "extra_logs": {"valid_code": [float(r.status == "ok") for r in got],
                                        "truncated": [float(r.truncated) for r in got]},
                         "model": serving.model_info()})


async def _vllm_pooling(body: VllmPoolingRequest, request: Request, serving: Serving,
                        prefix: str) -> tuple[dict, list[dict]]:
    """Score a vLLM-shaped body: the response's common fields and, per item, the reward's fields."""
    scheduler = serving.scheduler
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
    scored = await serving.score(request, [q for q, _ in pairs], [r for _, r in pairs], body)
    tokens = sum(scored.tokens)
    common = {"id": f"{prefix}-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()),
              "model": body.model or scheduler.model.source,
              "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0,
                        "prompt_tokens_details": None}}
    return common, [{"index": i, **r.as_dict()} for i, r in enumerate(scored.rewards)]


@router.post("/classify", response_model=ClassificationResponse, responses=ERRORS,
             summary="vLLM classify: probs = [reward] per input (rendered chat texts, or one conversation)",
             description="Beyond the schema, 422 when an `input` text is not a ChatML or Llama-3 rendering with a "
             "user turn followed by an assistant header, when `messages` has no assistant message or no user "
             "message before the last one, or when `truncate_prompt_tokens` is below the server's max_length.")
async def classify(body: ClassificationRequest, request: Request, serving: Served) -> JSONResponse:
    common, items = await _vllm_pooling(body, request, serving, "classify")
    data = [{"index": x["index"], "label": "reward", "probs": [x.pop("reward")], "num_classes": 1, **x}
            for x in items]
    return JSONResponse({**common, "data": data})


@router.post("/pooling", response_model=PoolingResponse, responses=ERRORS,
             summary="vLLM pooling: data = [reward] per input (rendered chat texts, or one conversation)",
             description="Beyond the schema, 422 when an `input` text is not a ChatML or Llama-3 rendering with a "
             "user turn followed by an assistant header, when `messages` has no assistant message or no user "
             "message before the last one, or when `truncate_prompt_tokens` is below the server's max_length.")
async def pooling(body: PoolingRequest, request: Request, serving: Served) -> JSONResponse:
    common, items = await _vllm_pooling(body, request, serving, "pool")
    order = sys.byteorder if body.endianness == "native" else body.endianness
    data = []
    for x in items:
        reward = [x.pop("reward")]
        if body.encoding_format == "base64":
            reward = base64.b64encode(struct.pack(("<" if order == "little" else ">") + "f", reward[0])).decode()
        data.append({"index": x["index"], "object": "pooling", "data": reward, **x})
    return JSONResponse({**common, "data": data})


@router.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}},
            summary="200 once the model is loaded and warmed; 503 before, while shutting down, or when one model "
            "call has run longer than the request timeout (no API key needed)")
async def health(serving: Served) -> JSONResponse:
    scheduler = serving.scheduler
    if scheduler.stopping:
        return JSONResponse({"status": "shutting down"}, status_code=503, headers={"Retry-After": "1"})
    if scheduler.ready:
        busy = round(scheduler.busy_seconds(), 3)
        if busy > serving.settings.timeout:  # stuck on one call for longer than any request may wait
            return JSONResponse({"status": "busy", "model": serving.model_info(), "busy_seconds": busy},
                                status_code=503, headers={"Retry-After": str(max(1, round(busy)))})
        return JSONResponse({"status": "ok", "model": serving.model_info(), "busy_seconds": busy})
    status = "loading" if scheduler.error is None else f"failed: {scheduler.error}"
    return JSONResponse({"status": status}, status_code=503, headers={"Retry-After": "1"})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)


async def _disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _consume(future: asyncio.Future) -> None:
    """Retrieve a discarded answer's exception so asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()
