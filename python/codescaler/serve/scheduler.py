"""Cross-request batching: requests that arrive close together become one ``RewardModel.score`` call.

One worker thread owns the model (a ``RewardModel`` is not thread-safe): it loads and warms it, then
repeatedly takes the oldest waiting request, waits up to the batch window for more, merges every
waiting request with the same per-call options (up to a token and an item budget) into one call, and
splits the rewards back per request. The planner groups by question string, so a GRPO group whose
responses arrive in several requests still runs its question once.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Union

from .. import options as opts
from ..model import Reward, RewardModel, regroup
from .worker import WARMUP, ModelProcess

if TYPE_CHECKING:
    from .metrics import ServeMetrics

# What the worker thread scores with: the model itself, or the model in a process of its own.
Model = Union[RewardModel, ModelProcess]

CHARS_PER_TOKEN = 4  # estimate for the token budget before tokenizing (Qwen's BPE on code and prose)


class Overloaded(Exception):
    """The queue is full (or the model is not ready yet); retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Scored:
    """One request's share of a model call: its rewards and each item's sequence length in tokens
    (0 for items the model did not run)."""

    rewards: list[Reward]
    tokens: list[int]


@dataclass
class Job:
    questions: list[str]
    responses: list[str]
    options: dict[str, Any]           # every per-call option, resolved against the model's defaults
    key: tuple[tuple[str, Any], ...]   # requests merge only with equal keys
    tokens: int                        # estimated, responses only; questions are counted per batch
    arrived: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)

    @property
    def items(self) -> int:
        return len(self.responses)


class Scheduler:
    """Queue requests and score them on one worker thread, merged across requests.

    ``model_or_factory`` is a ``RewardModel`` or a zero-argument callable returning one; it is called on
    the worker thread (so ``threads`` applies to the thread that runs the model). ``window_s``: how long
    the oldest waiting request waits for others; ``merge=False`` scores each request alone.
    ``max_queue`` bounds the items admitted and not yet answered; ``max_batch_tokens`` and
    ``max_batch_items`` bound one merged call (a single larger request still runs, alone).
    """

    def __init__(self, model_or_factory: Model | Callable[[], Model], *, window_s: float, max_batch_tokens: int,
                 max_batch_items: int, max_queue: int, merge: bool = True, metrics: ServeMetrics | None = None):
        self._source = model_or_factory
        self.window_s = window_s
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_items = max_batch_items
        self.max_queue = max_queue
        self.merge = merge
        self.metrics = metrics
        self.model: Model | None = None
        self.error: BaseException | None = None
        self.loaded = threading.Event()  # set once loading ended, well or not
        self._cond = threading.Condition()
        self._queue: deque[Job] = deque()
        self._waiting = 0                 # items queued, not started
        self._running = 0                 # items in the model call under way
        self._rate = 0.0                  # items/s of recent calls, for Retry-After
        self._stopping = False
        self._batch: list[Job] = []       # the jobs of the model call under way
        self.call_started: float | None = None  # time.monotonic() when the call under way started
        self._thread = threading.Thread(target=self._work, name="codescaler-model", daemon=True)

    @property
    def ready(self) -> bool:
        return self.loaded.is_set() and self.error is None

    def start(self) -> None:
        self._thread.start()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def busy_seconds(self) -> float:
        """How long the model call under way has run (0.0 when the model is idle)."""
        started = self.call_started
        return 0.0 if started is None else max(0.0, time.monotonic() - started)

    def stop(self, timeout: float = 10.0) -> None:
        """Drain: admit nothing more, answer every queued request with :class:`Overloaded` ("shutting
        down", which the server turns into a 503), let the call under way finish for up to ``timeout``
        seconds, then answer its requests with the same error, stop the model process if there is one
        and return."""
        with self._cond:
            self._stopping = True
            dropped = list(self._queue)
            self._queue.clear()
            self._waiting = 0
            self._cond.notify_all()
        for job in dropped:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(Overloaded("the server is shutting down", 1))
        if self._thread.is_alive():
            self._thread.join(timeout)
        late = self._thread.is_alive()
        if late:
            for job in list(self._batch):
                if not job.future.done():
                    job.future.set_exception(Overloaded(f"the server is shutting down: the model call under way "
                                                        f"did not finish within the {timeout:g} s drain", 1))
        if isinstance(self.model, ModelProcess):
            if late:
                self.model.kill()
            self.model.close()

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained (at least 1)."""
        pending = self._waiting + self._running
        return max(1, min(60, math.ceil(pending / self._rate))) if self._rate > 0 else 1

    def submit(self, questions: list[str], responses: list[str], options: dict[str, Any]) -> Job:
        """Queue one request's items; raise :class:`Overloaded` when the model is not ready or the
        queue cannot take them, ``InputError`` for an unknown option or value. ``options``: per-call
        options (None or missing: the model's default)."""
        if not self.ready:
            raise Overloaded("the model is still loading" if self.error is None else
                             f"the model failed to load: {self.error}", 1 if self.error is None else 60)
        resolved = opts.per_call(options, self.model.options)
        job = Job(questions, responses, resolved, tuple(resolved.items()),
                  sum(map(len, responses)) // CHARS_PER_TOKEN)
        with self._cond:
            if self._stopping:
                raise Overloaded("the server is shutting down", 1)
            pending = self._waiting + self._running
            if pending and pending + job.items > self.max_queue:
                raise Overloaded(f"the queue is full ({pending} items waiting or running, --max-queue "
                                 f"{self.max_queue}); retry later", self.retry_after())
            self._queue.append(job)
            self._waiting += job.items
            self._gauges()
            self._cond.notify_all()
        return job

    def abandon(self, job: Job) -> bool:
        """Drop a request nobody waits for any more (deadline passed, client gone). True if its items
        had not started and will not run; a started request finishes and its result is discarded."""
        with self._cond:
            if not job.future.cancel():
                return False
            self._queue.remove(job)
            self._waiting -= job.items
            self._gauges()
            return True

    def _gauges(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_items.set(self._waiting)
            self.metrics.running_items.set(self._running)

    def _select(self) -> tuple[list[Job], bool]:
        """The jobs the next call would take (the oldest, then every later one with its options, under
        the budgets) and whether a budget is reached."""
        first = self._queue[0]
        if not self.merge:
            return [first], True
        chosen, items, seen = [], 0, set()
        tokens = 0
        for job in self._queue:
            if job.key != first.key:
                continue
            new_q = {q for q in job.questions if q not in seen}
            cost = job.tokens + sum(map(len, new_q)) // CHARS_PER_TOKEN
            if chosen and (items + job.items > self.max_batch_items or tokens + cost > self.max_batch_tokens):
                return chosen, True
            chosen.append(job)
            items += job.items
            tokens += cost
            seen |= new_q
        return chosen, items >= self.max_batch_items or tokens >= self.max_batch_tokens

    def _next_batch(self) -> list[Job] | None:
        with self._cond:
            while True:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return None
                chosen, full = self._select()
                left = self._queue[0].arrived + self.window_s - time.monotonic()
                if full or left <= 0:
                    break
                self._cond.wait(left)
            batch = []
            for job in chosen:
                self._queue.remove(job)
                self._waiting -= job.items
                if job.future.set_running_or_notify_cancel():
                    batch.append(job)
            self._running = sum(j.items for j in batch)
            self._batch = batch
            self._gauges()
            return batch

    def _load(self) -> None:
        try:
            model = self._source if hasattr(self._source, "score") else self._source()  # a model, or its factory
            model.score(*WARMUP)
            self.model = model
        except BaseException as exc:  # reported by whoever waits on ``loaded``; the server stays down
            self.error = exc
        finally:
            self.loaded.set()

    def _work(self) -> None:
        self._load()
        if self.error is not None:
            return
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self.call_started = time.monotonic()
                try:
                    self._run(batch)
                finally:
                    self.call_started = None
            with self._cond:
                self._running = 0
                self._batch = []
                self._gauges()

    def _run(self, batch: list[Job]) -> None:
        started = time.perf_counter()
        try:
            results = self._score(batch)
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return
            # One request's bad input must not fail the others it was merged with: score them alone.
            for job in batch:
                self._run([job])
            return
        for job, scored in zip(batch, results):
            if not job.future.done():  # a drain that ran out of time answered it already
                job.future.set_result(scored)
        took = time.perf_counter() - started
        items = sum(j.items for j in batch)
        if took > 0:
            self._rate = items / took if self._rate == 0 else 0.7 * self._rate + 0.3 * items / took

    def _score(self, batch: list[Job]) -> list[Scored]:
        """One model call for ``batch`` (all with the same options), split back per job."""
        questions = [q for j in batch for q in j.questions]
        responses = [r for j in batch for r in j.responses]
        started = time.perf_counter()
        rewards, stats = self.model.score_with_stats(questions, responses, **batch[0].options)
        seconds = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.observe_call(requests=len(batch), items=len(responses), stats=stats, seconds=seconds)
        sizes = [job.items for job in batch]
        return [Scored(r, t) for r, t in zip(regroup(rewards, sizes), regroup(stats.item_tokens, sizes))]

