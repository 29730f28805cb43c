"""Online serving on Ray Serve: ``serve run codescaler.integrations.ray_serve:app model=PATH [key=value ...]``.

Each replica serves the same FastAPI app as ``codescaler serve`` (same routes, bodies, errors, limits and
metrics: ``codescaler.serve.app.create_app``); what differs is who forms the batches. Here Ray Serve's
``@serve.batch`` collects the requests a replica receives within ``batch_wait_timeout_s`` (up to
``max_batch_items`` responses), and the server's scheduler merges those with equal per-call options into
one ``RewardModel.score`` call, so a GRPO group split across requests still runs its question once.
Replicas scale with Ray Serve's autoscaling (``min_replicas``/``max_replicas``/``target_ongoing_requests``)
or stay at ``num_replicas``.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import fields
from typing import Any

from ray import serve

from .. import options as opts
from ..errors import InputError
from ..serve.app import create_app
from ..serve.scheduler import WARMUP, Job, Scheduler
from ..serve.settings import ServeSettings

# Ray Serve's knobs, as ``serve run ... key=value`` arguments: name -> (type, default, help)
SERVE_ARGS: dict[str, tuple[type, Any, str]] = {
    "num_replicas": (int, 1, "replicas when autoscaling is off"),
    "min_replicas": (int, None, "autoscaling: fewest replicas (setting it or max_replicas turns autoscaling on)"),
    "max_replicas": (int, None, "autoscaling: most replicas"),
    "target_ongoing_requests": (float, 16.0, "autoscaling: requests per replica it aims at"),
    "max_ongoing_requests": (int, 64, "requests a replica holds at once (Ray queues the rest); at least the "
                             "requests one batch should merge"),
    "max_batch_items": (int, 1024, "@serve.batch: responses merged into one batch at most"),
    "batch_wait_timeout_s": (float, 0.005, "@serve.batch: how long the first request waits for others"),
    "num_cpus": (float, None, "CPUs per replica (default: threads, else 1); the model runs that many threads"),
}
# ``codescaler serve``'s limits that apply here (its batch window is Serve's batch_wait_timeout_s)
SETTINGS = ("api_key", "max_queue", "max_body_bytes", "max_items", "timeout")


class ServeBatchScheduler(Scheduler):
    """The server's scheduler with Ray Serve's ``@serve.batch`` forming the batches.

    Requests are checked, admitted under ``max_queue`` and abandoned (timeout, client gone) exactly as in
    ``codescaler serve``; instead of the window thread, each admitted request goes to ``batch`` (the
    replica's ``@serve.batch`` method), which hands a batch to :meth:`run`.
    """

    def __init__(self, model_or_factory, *, batch, **kwargs):
        super().__init__(model_or_factory, **kwargs)
        self._batch = batch
        self._tasks: set[asyncio.Task] = set()

    def start(self) -> None:
        self._load()  # the replica loaded and warmed the model already; this sets ``loaded``

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True

    def submit(self, questions: list[str], responses: list[str], options: dict[str, Any]) -> Job:
        job = super().submit(questions, responses, options)
        task = asyncio.get_running_loop().create_task(self._batch(job))
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


@serve.deployment
@serve.ingress()
class RewardServer:
    """One replica: a model loaded and warmed before the replica takes traffic, behind the server's app."""

    def __init__(self, model: str, options: dict, settings: ServeSettings, max_batch_items: int,
                 batch_wait_timeout_s: float):
        from ..model import RewardModel

        self.model = RewardModel.from_pretrained(model, **options)
        self.model.score(*WARMUP)
        self.settings = settings
        self.score_batch.set_max_batch_size(max_batch_items)
        self.score_batch.set_batch_wait_timeout_s(batch_wait_timeout_s)

    def __serve_build_asgi_app__(self):
        self.fastapi = create_app(self.model, self.settings,
                              scheduler_class=functools.partial(ServeBatchScheduler, batch=self.score_batch))
        return self.fastapi

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


def app(args: dict[str, Any]):
    """The application ``serve run`` builds from ``key=value`` arguments: ``model`` (required), the
    options of :mod:`codescaler.options` (``dtype=float32``, ``threads=4``...), ``codescaler serve``'s limits
    (``api_key``, ``max_queue``, ``max_body_bytes``, ``max_items``, ``timeout``) and Ray Serve's
    (:data:`SERVE_ARGS`)."""
    args = dict(args)
    model = args.pop("model", None)
    if not model:
        raise InputError("model=PATH is required: 'tiny', a Hugging Face reward-model folder or an engine directory")
    kinds = {f.name: f.type for f in fields(ServeSettings)}
    serve_args, settings, options = {}, {}, {}
    for name, value in args.items():
        if name in SERVE_ARGS:
            serve_args[name] = _parse(name, SERVE_ARGS[name][0], value)
        elif name in SETTINGS:
            settings[name] = _parse(name, {"float": float, "int": int}.get(kinds[name], str), value)
        elif name in opts.BY_NAME:
            o = opts.BY_NAME[name]
            options[name] = _parse(name, o.kind, value)
        else:
            known = [*opts.BY_NAME, *SETTINGS, *SERVE_ARGS]
            raise InputError(f"unknown argument {name!r}; known: model, {', '.join(known)}")
    options = opts.checked(options)
    knobs = {name: serve_args.get(name, default) for name, (_kind, default, _help) in SERVE_ARGS.items()}
    for name in ("num_replicas", "max_ongoing_requests", "max_batch_items"):
        if knobs[name] < 1:
            raise InputError(f"{name} must be a positive integer, got {knobs[name]}")
    cpus = knobs["num_cpus"] or options.get("threads") or 1
    options.setdefault("threads", max(1, int(cpus)))
    deployment = {"max_ongoing_requests": knobs["max_ongoing_requests"], "ray_actor_options": {"num_cpus": cpus}}
    if knobs["min_replicas"] is not None or knobs["max_replicas"] is not None:
        low = knobs["min_replicas"] if knobs["min_replicas"] is not None else 1
        deployment["autoscaling_config"] = {"min_replicas": low, "max_replicas": knobs["max_replicas"] or max(low, 1),
                                            "target_ongoing_requests": knobs["target_ongoing_requests"]}
    else:
        deployment["num_replicas"] = knobs["num_replicas"]
    return RewardServer.options(**deployment).bind(
        model, options, ServeSettings(**settings), knobs["max_batch_items"], knobs["batch_wait_timeout_s"])
