"""Online serving on Ray Serve: ``serve run codescaler.integrations.ray_serve:app model=PATH [key=value ...]``.

Each model replica (``RewardServer``) serves the same FastAPI app as ``codescaler serve`` (same routes,
bodies, errors, limits and metrics: ``codescaler.serve.app.create_app``); what differs is who forms the
batches. Ray Serve's ``@serve.batch`` collects the requests a replica receives within
``batch_wait_timeout_s`` (up to ``max_batch_items`` responses), and the server's scheduler merges those with
equal per-call options into one ``RewardModel.score`` call, so a GRPO group split across requests still runs
its question once.

HTTP enters through ``RewardIngress``, which reads the request's first question and hands the request,
unchanged, to a replica chosen by :class:`QuestionAffinityRouter`: consistent hashing on the question, so
every request for one question meets that question's cached prefix on the same replica, unless that
replica holds more than ``max_imbalance`` requests beyond the least loaded one (then the least loaded takes
it). Requests without a question (``GET /health``, ``/metrics``, a body that is not JSON) go to the least
loaded replica. Every answer names its replica in the ``X-Codescaler-Replica`` header; sending that header
with a replica's id routes a request to that replica (e.g. to read its ``/metrics``).
Replicas scale with Ray Serve's autoscaling (``min_replicas``/``max_replicas``/``target_ongoing_requests``)
or stay at ``num_replicas``; with ``reward_cache=redis://HOST:PORT/DB`` they share one reward cache.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import random
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable, Coroutine

from ray import serve
from ray.serve.config import RequestRouterConfig
from ray.serve.experimental.consistent_hash_router import ConsistentHashRouter
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from .. import options as opts
from ..errors import InputError
from ..serve.app import create_app
from ..serve.chat_text import split_messages, split_query
from ..serve.scheduler import Job, Scheduler
from ..serve.worker import WARMUP
from ..serve.settings import ServeSettings

if TYPE_CHECKING:
    from ray.serve import Application
    from ray.serve._private.common import ReplicaID
    from ray.serve._private.request_router.common import PendingRequest
    from ray.serve._private.request_router.replica_wrapper import RunningReplica
    from ray.serve.handle import DeploymentHandle
    from starlette.types import Message

    from ..model import RewardModel

REPLICA_HEADER = "x-codescaler-replica"
PIN = "replica="  # a routing key naming a replica, not a question
ROUTINGS = ("question", "least_loaded")
INGRESS_MAX_ONGOING = 4096  # the ingress only waits on replicas; Ray's router queues what they refuse

# Ray Serve's knobs, as ``serve run ... key=value`` arguments: name -> (type, default, help)
SERVE_ARGS: dict[str, tuple[type, Any, str]] = {
    "num_replicas": (int, 1, "replicas when autoscaling is off"),
    "min_replicas": (int, None, "autoscaling: fewest replicas (setting it or max_replicas turns autoscaling on)"),
    "max_replicas": (int, None, "autoscaling: most replicas"),
    "target_ongoing_requests": (float, 16.0, "autoscaling: requests per replica it aims at"),
    "max_ongoing_requests": (int, 64, "requests a replica holds at once (Ray queues the rest); at least the "
                             "requests one batch should merge"),
    "max_batch_items": (int, None, "@serve.batch: responses merged into one batch at most (default and least: "
                        "max_items, since Ray never runs a request larger than its batch limit)"),
    "batch_wait_timeout_s": (float, 0.005, "@serve.batch: how long the first request waits for others"),
    "num_cpus": (float, None, "CPUs per replica (default: threads, else 1); the model runs that many threads"),
    "routing": (str, "question", "question: one question's requests go to one replica (consistent hashing on "
                "the first question of a request); least_loaded: every request to the least loaded replica"),
    "drain_timeout": (float, 25.0, "seconds a replica being stopped (scale-down, redeploy, serve shutdown) gives "
                      "the requests it holds to finish (Ray Serve's graceful_shutdown_timeout_s)"),
    "max_imbalance": (int, 16, "question routing: a question's replica is passed over for the least loaded one "
                      "when it holds more than this many requests beyond it"),
}
# ``codescaler serve``'s limits that apply here (its batch window is Serve's batch_wait_timeout_s)
SETTINGS = ("api_key", "max_queue", "max_body_bytes", "max_items", "timeout")


# ----------------------------------------------------------------------------------------------- routing

def routing_question(path: str, body: bytes) -> str | None:
    """The question a request is routed by: the first question it holds, read as the server reads it
    (``items[0]``/``groups[0]`` of ``/v1/rewards``, ``question``, a rerank ``query``, the question split out
    of the first ``/get_reward`` query or vLLM ``input``/``messages``). None when there is none to read
    (another route, a body the server will refuse): any replica answers those alike."""
    try:
        data = json.loads(body)
        question = _first_question(path, data) if isinstance(data, dict) else None
    except (ValueError, LookupError, TypeError, AttributeError, InputError):
        return None
    return question if isinstance(question, str) else None


def _first_question(path: str, data: dict) -> Any:
    if path == "/v1/rewards":
        return (data.get("items") or data.get("groups"))[0]["question"]
    if path == "/v1/best_of_n":
        return data["question"]
    if path in ("/v1/rerank", "/rerank"):
        return data["query"]
    if path == "/get_reward":
        prompts = data.get("prompts")
        return split_query(data["query"][0], prompts[0] if prompts else None)[0]
    if path in ("/classify", "/pooling"):
        if data.get("messages") is not None:
            return split_messages([(m["role"], _text(m.get("content"))) for m in data["messages"]])[0]
        given = data["input"]
        return split_query(given if isinstance(given, str) else given[0])[0]
    return None


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text") or "" for part in content)
    return content or ""


def routing_key(question: str) -> str:
    """A short, stable stand-in for a question (Ray carries it with every request)."""
    return hashlib.blake2b(question.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class QuestionAffinityRouter(ConsistentHashRouter):
    """Ray Serve's consistent-hash router keyed by question, with a load bound.

    A request's ``session_id`` is its routing key (set by :class:`RewardIngress`):
    - a question's key: the replica the hash ring assigns, unless it holds more than ``max_imbalance``
      requests beyond the least loaded replica; then the least loaded one. A full replica
      (``max_ongoing_requests``) passes the request to the next replicas on the ring.
    - ``replica=ID``: that replica (any, if no replica has that id).
    - none: the least loaded replica.
    Replicas joining or leaving move only the questions of their share of the ring.
    """

    def initialize_state(self, max_imbalance: int = SERVE_ARGS["max_imbalance"][1], **kwargs: Any) -> None:
        if not isinstance(max_imbalance, int) or max_imbalance < 0:
            raise ValueError(f"max_imbalance must be a non-negative integer, got {max_imbalance!r}")
        self._max_imbalance = max_imbalance
        super().initialize_state(**kwargs)

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        if not candidate_replicas or pending_request is None:
            return [candidate_replicas] if candidate_replicas else []
        pending_request.routing_context.should_backoff = True
        key = pending_request.metadata.session_id
        if key.startswith(PIN):
            pinned = [r for r in candidate_replicas if r.replica_id.unique_id == key[len(PIN):]]
            return [pinned or candidate_replicas]
        if not key:
            return [_shuffled(candidate_replicas)]
        ranks = await super().choose_replicas(candidate_replicas, pending_request)
        if ranks and len(candidate_replicas) > 1 and await self._overloaded(ranks[0][0], candidate_replicas):
            return [_shuffled(candidate_replicas)]
        return ranks

    async def _overloaded(self, owner: RunningReplica, replicas: list[RunningReplica]) -> bool:
        """Whether the question's replica holds more than ``max_imbalance`` requests beyond the least loaded."""
        loads = await self._queue_lens(replicas)
        mine = loads.get(owner.replica_id)
        return mine is not None and mine - min(loads.values()) > self._max_imbalance

    async def _queue_lens(self, replicas: list[RunningReplica]) -> dict[ReplicaID, int]:
        """Requests each replica holds: this router's count (it adds those it sends, drops those answered),
        the replica's own answer where that count is stale."""
        loads, stale = {}, []
        for r in replicas:
            known = self.replica_queue_len_cache.get(r.replica_id) if self._use_replica_queue_len_cache else None
            if known is None:
                stale.append(r)
            else:
                loads[r.replica_id] = known
        for r, n in await self._probe_queue_lens(stale, 0):
            if n is not None:
                loads[r.replica_id] = n
        return loads


def _shuffled(replicas: list[RunningReplica]) -> list[RunningReplica]:
    """Candidates for "the least loaded": Ray takes the shortest queue among them, the first on a tie, so
    they come in random order (idle replicas share the requests without a question)."""
    return random.sample(replicas, len(replicas))


# ----------------------------------------------------------------------------------------------- replicas

class ServeBatchScheduler(Scheduler):
    """The server's scheduler with Ray Serve's ``@serve.batch`` forming the batches.

    Requests are checked, admitted under ``max_queue`` and abandoned (timeout, client gone) exactly as in
    ``codescaler serve``; instead of the window thread, each admitted request goes to ``batch`` (the
    replica's ``@serve.batch`` method), which hands a batch to :meth:`run`.
    """

    def __init__(self, model_or_factory: RewardModel | Callable[[], RewardModel], *,
                 batch: Callable[[Job], Coroutine[Any, Any, None]], **kwargs: Any) -> None:
        super().__init__(model_or_factory, **kwargs)
        self._serve_batch = batch  # not Scheduler's _batch (the jobs of the call under way)
        self._tasks: set[asyncio.Task] = set()

    def start(self) -> None:
        self._load()  # the replica loaded and warmed the model already; this sets ``loaded``

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True

    def submit(self, questions: list[str], responses: list[str], options: dict[str, Any]) -> Job:
        job = super().submit(questions, responses, options)
        task = asyncio.get_running_loop().create_task(self._serve_batch(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def run(self, jobs: list[Job]) -> None:
        """Score one batch: drop requests nobody waits for, one merged model call per option set."""
        with self._cond:
            live = []
            for job in jobs:
                for i, queued in enumerate(self._queue):
                    if queued is job:
                        del self._queue[i]
                        self._waiting -= job.items
                        break
                if job.future.set_running_or_notify_cancel():
                    live.append(job)
            self._running = sum(j.items for j in live)
            self._gauges()
        by_options: dict[tuple, list[Job]] = {}
        for job in live:
            by_options.setdefault(job.key, []).append(job)
        try:
            for group in by_options.values():
                self._run(group)
        finally:
            with self._cond:
                self._running = 0
                self._gauges()


def _items(jobs: list[Job]) -> int:
    return sum(job.items for job in jobs)


@dataclass(frozen=True)
class HttpRequest:
    """An HTTP request as the ingress received it (the body read whole, or cut just past the size limit)."""

    method: str
    path: str
    root_path: str
    query_string: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    client: tuple[str, int] | None


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@serve.deployment
class RewardServer:
    """One replica: a model loaded and warmed before the replica takes traffic, behind the server's app."""

    async def __init__(self, model: str, options: dict, settings: ServeSettings, max_batch_items: int,
                       batch_wait_timeout_s: float) -> None:
        from ..model import RewardModel

        self.model = RewardModel.from_pretrained(model, **options)
        self.model.score(*WARMUP)
        self.score_batch.set_max_batch_size(max_batch_items)
        self.score_batch.set_batch_wait_timeout_s(batch_wait_timeout_s)
        self.fastapi = create_app(self.model, settings,
                                  scheduler_class=functools.partial(ServeBatchScheduler, batch=self.score_batch))
        self.name = serve.get_replica_context().replica_id.unique_id
        self._lifespan = self.fastapi.router.lifespan_context(self.fastapi)
        await self._lifespan.__aenter__()

    async def handle(self, request: HttpRequest) -> HttpAnswer:
        """Answer one request with the server's app, as ``codescaler serve`` would; this replica's id in
        the ``X-Codescaler-Replica`` header."""
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "http",
                 "method": request.method, "path": request.path, "raw_path": request.path.encode(),
                 "root_path": request.root_path, "query_string": request.query_string,
                 "headers": request.headers, "client": request.client, "server": None}
        sent, gone = [], asyncio.Event()
        body = [{"type": "http.request", "body": request.body, "more_body": False}]

        async def receive() -> Message:
            if body:
                return body.pop()
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            sent.append(message)

        app = asyncio.ensure_future(self.fastapi(scope, receive, send))
        try:
            await asyncio.shield(app)
        except asyncio.CancelledError:
            gone.set()  # the client left: the app drops the request's items not yet scored, as codescaler serve
            raise
        start = next(m for m in sent if m["type"] == "http.response.start")
        return HttpAnswer(start["status"], [*start.get("headers", []), (REPLICA_HEADER.encode(), self.name.encode())],
                          b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))

    @serve.batch(batch_size_fn=_items)
    async def score_batch(self, jobs: list[Job]) -> list[None]:
        # The model call blocks; off the event loop it leaves the replica answering /health and new requests.
        # One batch at a time (max_concurrent_batches=1): a RewardModel is not thread-safe.
        await asyncio.to_thread(self.fastapi.state.scheduler.run, jobs)
        return [None] * len(jobs)

    def check_health(self) -> None:
        error = self.fastapi.state.scheduler.error
        if error is not None:
            raise RuntimeError(f"the model failed: {error}")

    async def __del__(self) -> None:
        await self._lifespan.__aexit__(None, None, None)


@serve.deployment
class RewardIngress:
    """The HTTP entry: reads a request's first question (``routing=question``) and passes the request,
    unchanged, to the model replica :class:`QuestionAffinityRouter` picks for it."""

    def __init__(self, servers: DeploymentHandle, settings: ServeSettings, routing: str) -> None:
        self.servers, self.settings, self.routing = servers, settings, routing

    async def __call__(self, request: Request) -> Response:
        scope = request.scope
        try:
            body = await self._body(request)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read an answer
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        forwarded = HttpRequest(scope["method"], scope["path"], scope.get("root_path", ""), scope["query_string"],
                                list(scope["headers"]), body, scope.get("client"))
        answer = await self.servers.options(session_id=self._key(request, path, body)).handle.remote(forwarded)
        response = Response(answer.body, status_code=answer.status)
        response.raw_headers = answer.headers
        return response

    async def _body(self, request: Request) -> bytes:
        """The body, read no further than one byte past ``max_body_bytes``: the replica refuses it as the
        server does, and the ingress never holds more."""
        limit = self.settings.max_body_bytes
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            return b""
        chunks, size = [], 0
        async for chunk in request.stream():
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                break
        return b"".join(chunks)[:limit + 1]

    def _key(self, request: Request, path: str, body: bytes) -> str:
        pinned = request.headers.get(REPLICA_HEADER)
        if pinned:
            return PIN + pinned
        if self.routing != "question" or request.method != "POST":
            return ""
        question = routing_question(path, body)
        return "" if question is None else routing_key(question)


# -------------------------------------------------------------------------------------------- arguments

def _parse(name: str, kind: type, text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        return kind(text)
    except ValueError:
        raise InputError(f"{name}={text!r}: expected {'true or false' if kind is bool else kind.__name__}") from None


def app(args: dict[str, Any]) -> Application:
    """The application ``serve run`` builds from ``key=value`` arguments: ``model`` (required), the
    options of :mod:`codescaler.options` (``dtype=float32``, ``threads=4``...), ``codescaler serve``'s limits
    (``api_key``, ``max_queue``, ``max_body_bytes``, ``max_items``, ``timeout``) and Ray Serve's
    (:data:`SERVE_ARGS`)."""
    args = dict(args)
    model = args.pop("model", None)
    if not model:
        raise InputError("model=PATH is required: 'tiny', a Hugging Face reward-model folder or an engine directory")
    kinds = {f.name: f.type for f in fields(ServeSettings)}
    serve_args: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for name, value in args.items():
        if name in SERVE_ARGS:
            serve_args[name] = _parse(name, SERVE_ARGS[name][0], value)
        elif name in SETTINGS:
            limits[name] = _parse(name, {"float": float, "int": int}.get(kinds[name], str), value)
        elif name in opts.BY_NAME:
            o = opts.BY_NAME[name]
            options[name] = _parse(name, o.kind, value)
        else:
            known = [*opts.BY_NAME, *SETTINGS, *SERVE_ARGS]
            raise InputError(f"unknown argument {name!r}; known: model, {', '.join(known)}")
    options = opts.checked(options)
    knobs = {name: serve_args.get(name, default) for name, (_kind, default, _help) in SERVE_ARGS.items()}
    settings = ServeSettings(**limits)
    if knobs["max_batch_items"] is None:
        knobs["max_batch_items"] = settings.max_items
    for name in ("num_replicas", "max_ongoing_requests", "max_batch_items"):
        if knobs[name] < 1:
            raise InputError(f"{name} must be a positive integer, got {knobs[name]}")
    if knobs["max_batch_items"] < settings.max_items:
        # Ray's @serve.batch never hands over a request larger than its batch limit: it would wait forever.
        raise InputError(f"max_batch_items ({knobs['max_batch_items']}) must be at least max_items "
                         f"({settings.max_items}), the largest request a replica admits")
    if knobs["drain_timeout"] < 0:
        raise InputError(f"drain_timeout must be >= 0 seconds, got {knobs['drain_timeout']}")
    if knobs["routing"] not in ROUTINGS:
        raise InputError(f"routing={knobs['routing']!r}: choose one of {', '.join(ROUTINGS)}")
    if knobs["max_imbalance"] < 0:
        raise InputError(f"max_imbalance must be 0 or more requests, got {knobs['max_imbalance']}")
    cpus = knobs["num_cpus"] or options.get("threads") or 1
    options.setdefault("threads", max(1, int(cpus)))
    deployment = {"max_ongoing_requests": knobs["max_ongoing_requests"], "ray_actor_options": {"num_cpus": cpus},
                  "graceful_shutdown_timeout_s": knobs["drain_timeout"]}
    if knobs["min_replicas"] is not None or knobs["max_replicas"] is not None:
        low = knobs["min_replicas"] if knobs["min_replicas"] is not None else 1
        deployment["autoscaling_config"] = {"min_replicas": low, "max_replicas": knobs["max_replicas"] or max(low, 1),
                                            "target_ongoing_requests": knobs["target_ongoing_requests"]}
    else:
        deployment["num_replicas"] = knobs["num_replicas"]
    deployment["request_router_config"] = RequestRouterConfig(
        request_router_class=QuestionAffinityRouter, request_router_kwargs={"max_imbalance": knobs["max_imbalance"]})
    servers = RewardServer.options(**deployment).bind(
        model, options, settings, knobs["max_batch_items"], knobs["batch_wait_timeout_s"])
    return RewardIngress.options(max_ongoing_requests=INGRESS_MAX_ONGOING, ray_actor_options={"num_cpus": 0}).bind(
        servers, settings, knobs["routing"])
