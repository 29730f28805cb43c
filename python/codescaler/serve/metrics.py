"""The server's Prometheus metrics, in a registry of its own (two apps in one process do not clash)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..backends.decoder import PrefixCache
    from ..reward_cache import RewardCache
    from .worker import CallStats, PrefixCacheStats, RewardCacheStats

    # What the collectors read at a scrape: the model's cache in this process, a snapshot of the model
    # process's, or None (no model loaded yet, or no cache).
    PrefixCacheSource = Callable[[], PrefixCache | PrefixCacheStats | None]
    RewardCacheSource = Callable[[], RewardCache | RewardCacheStats | None]

POWERS_OF_TWO = tuple(float(2**i) for i in range(13))  # 1 .. 4096 items
LATENCY_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("codescaler_requests", "HTTP requests by endpoint and status code "
                                "(499: the client disconnected before its answer)", ("endpoint", "status"),
                                registry=r)
        self.latency = Histogram("codescaler_request_seconds", "HTTP request latency by endpoint", ("endpoint",),
                                 buckets=LATENCY_S, registry=r)
        self.items = Counter("codescaler_items_scored", "responses scored", registry=r)
        self.queue_items = Gauge("codescaler_queue_items", "items waiting for the model", registry=r)
        self.running_items = Gauge("codescaler_running_items", "items in the model call under way", registry=r)
        self.batch_items = Histogram("codescaler_batch_items", "items per model call", buckets=POWERS_OF_TWO,
                                     registry=r)
        self.batch_requests = Histogram("codescaler_batch_requests", "requests merged into one model call",
                                        buckets=POWERS_OF_TWO, registry=r)
        self.call_seconds = Histogram("codescaler_model_call_seconds", "wall time of one model call",
                                      buckets=LATENCY_S, registry=r)
        self.tokens_computed = Counter("codescaler_tokens_computed", "tokens the forward passes ran, padding "
                                       "included (shared prefixes once, duplicates once)", registry=r)
        self.tokens_requested = Counter("codescaler_tokens_requested", "tokens of every scored item's full "
                                        "sequence (what scoring each item alone would run)", registry=r)
        self.shared_prefixes = Counter("codescaler_shared_prefixes", "question prefixes run once for several "
                                       "answers", registry=r)

    def observe_call(self, *, requests: int, items: int, stats: CallStats, seconds: float) -> None:
        """One model call: ``requests`` merged, ``items`` scored, what the passes ran (``worker.CallStats``)."""
        self.call_seconds.observe(seconds)
        self.items.inc(items)
        self.batch_items.observe(items)
        self.batch_requests.observe(requests)
        self.tokens_computed.inc(stats.computed_tokens)
        self.tokens_requested.inc(sum(stats.item_tokens))
        self.shared_prefixes.inc(stats.shared_prefixes)

    def watch_prefix_cache(self, get_cache: PrefixCacheSource) -> None:
        """Report the model's question cache (``backends.decoder.PrefixCache``, from ``get_cache()``; None
        before the model is loaded or when it has none) at every scrape."""
        self.registry.register(_PrefixCacheCollector(get_cache))

    def watch_reward_cache(self, get_cache: RewardCacheSource) -> None:
        """Report the model's reward cache (``reward_cache.RewardCache``, from ``get_cache()``; None before the
        model is loaded or when it has none) at every scrape."""
        self.registry.register(_RewardCacheCollector(get_cache))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _PrefixCacheCollector:
    def __init__(self, get_cache: PrefixCacheSource) -> None:
        self.get_cache = get_cache

    def collect(self) -> Iterator[Metric]:
        c = self.get_cache()
        if c is None:
            return
        yield CounterMetricFamily("codescaler_prefix_cache_hits", "question prefixes taken from the cache",
                                  value=c.hits)
        yield CounterMetricFamily("codescaler_prefix_cache_misses", "question prefixes computed (not cached)",
                                  value=c.misses)
        yield CounterMetricFamily("codescaler_prefix_cache_saved_tokens", "prefix tokens not run thanks to hits",
                                  value=c.saved_tokens)
        yield CounterMetricFamily("codescaler_prefix_cache_evictions", "question prefixes evicted (byte bound)",
                                  value=c.evictions)
        yield GaugeMetricFamily("codescaler_prefix_cache_bytes", "bytes held by the question cache", value=c.bytes)
        yield GaugeMetricFamily("codescaler_prefix_cache_max_bytes", "the question cache's byte bound",
                                value=c.max_bytes)
        yield GaugeMetricFamily("codescaler_prefix_cache_entries", "question prefixes held", value=len(c))


class _RewardCacheCollector:
    def __init__(self, get_cache: RewardCacheSource) -> None:
        self.get_cache = get_cache

    def collect(self) -> Iterator[Metric]:
        c = self.get_cache()
        if c is None:
            return
        yield CounterMetricFamily("codescaler_reward_cache_hits", "scored sequences whose raw score came from the "
                                  "reward cache (no forward pass)", value=c.hits)
        yield CounterMetricFamily("codescaler_reward_cache_misses", "scored sequences looked up and not found "
                                  "(the model ran them)", value=c.misses)
        yield CounterMetricFamily("codescaler_reward_cache_errors", "failed reward cache operations (Redis "
                                  "unreachable or refusing); scoring went on without the cache", value=c.errors)
        yield CounterMetricFamily("codescaler_reward_cache_stored_bytes", "bytes of keys and values this "
                                  "process wrote to the reward cache", value=c.stored_bytes)
        store = c.store
        if c.kind == "memory":
            yield GaugeMetricFamily("codescaler_reward_cache_bytes", "bytes held by the in-process reward cache",
                                    value=store.bytes)
            yield GaugeMetricFamily("codescaler_reward_cache_entries", "raw scores held in process", value=len(store))
            yield GaugeMetricFamily("codescaler_reward_cache_max_entries", "the in-process reward cache's bound",
                                    value=store.max_entries)
            yield CounterMetricFamily("codescaler_reward_cache_evictions", "raw scores evicted (entry bound)",
                                      value=store.evictions)


__all__ = ["CONTENT_TYPE", "ServeMetrics"]
