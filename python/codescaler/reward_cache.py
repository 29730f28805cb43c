"""The exact reward cache: raw scores kept across calls, in this process or shared by processes and
replicas through Redis, so a sequence scored once is never run through the model again.

It sits between the planner and the backend. An entry's key is a digest of everything a raw score is a
function of (see README, "Same input, same bits"): the model's identity (for a shared cache, a digest
of its files' contents), the backend, dtype, compile mode, device, torch build and CPU instruction set,
and the exact (token ids, question boundary) pair the planner would run, after truncation. Extraction,
the template, truncation and the per-call options reach the model only through those tokens, so any
change to them is a different key. The value is the raw score's float64 bits. Only a batch-invariant
backend (torch) gets a cache: with it a score does not depend on what else shared its pass, so a hit
is the computed score, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

from .errors import InputError, ModelLoadError

if TYPE_CHECKING:
    from .backends.base import Backend

T = TypeVar("T")

LOG = logging.getLogger("codescaler.reward_cache")

MEMORY, OFF = "memory", "off"
# Bumped whenever the key layout, the value encoding or what a raw score depends on changes, so entries
# written by an older codescaler into a shared Redis are never read as current ones.
FORMAT = 1
KEY_BYTES = 16  # a truncated SHA-256: collisions are not a practical concern at any cache size
ENTRY_BYTES = 178  # resident bytes per in-process entry (16-byte key, float, LRU links), measured on CPython
REDIS_PREFIX = b"codescaler:reward:"
# The model's files a shared cache's fingerprint covers: weights, configs, tokenizer, an aoti package.
FINGERPRINT_SUFFIXES = (".safetensors", ".bin", ".json", ".pt2")
BACKOFF_S = (0.5, 30.0)  # first and longest wait before trying Redis again after an error
TIMEOUT_S = 2.0  # a Redis command or connection slower than this counts as an outage


def fingerprint(path: Path) -> str:
    """XXH3-128 of the model folder's top-level weight, config, tokenizer and package files (names,
    sizes and contents), read through a memory map. A content digest, not a stat: two copies of one
    model share entries, and a changed byte anywhere misses. ~1 s for CodeScaler-1.7B's 3.4 GB from the
    page cache (SHA-256 took 5 s), computed once at load and only for a shared cache."""
    import mmap

    try:
        import xxhash
    except ImportError as exc:
        raise ModelLoadError("a shared reward cache needs the xxhash package: pip install 'codescaler[serve]'") from exc
    h = xxhash.xxh3_128()
    files = sorted(f for f in Path(path).iterdir() if f.is_file() and f.suffix in FINGERPRINT_SUFFIXES)
    if not files:
        raise ModelLoadError(f"{path}: no model files to fingerprint for the reward cache")
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}\0{size}\0".encode())
        if not size:
            continue
        with open(f, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
            view = memoryview(m)
            for at in range(0, size, 1 << 24):
                h.update(view[at:at + (1 << 24)])
            view.release()
    return h.hexdigest()


def runtime_identity(backend: Backend) -> dict[str, Any]:
    """What a torch backend's raw scores depend on besides the weights and the tokens."""
    # inside the function: both import torch, which `import codescaler` (this module's importer) does not
    from .backends.aoti import machine_key
    from .backends.decoder import ROW_TILE

    identity = {"backend": backend.name, "dtype": backend.dtype, "device": backend.device,
                "compile": "eager" if backend.compiled == "eager" else "aoti",
                "machine": machine_key(), "row_tile": getattr(backend, "row_tile", ROW_TILE)}
    if backend.device.startswith("cuda"):
        import torch

        identity["gpu"] = torch.cuda.get_device_name(backend.device)
    return identity


class MemoryStore:
    """An LRU of at most ``max_entries`` (key, raw score) pairs in this process."""

    kind = MEMORY

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, float] = OrderedDict()
        self.evictions = 0
        self.errors = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return len(self._entries) * ENTRY_BYTES

    def get_many(self, keys: Sequence[bytes]) -> list[float | None]:
        with self._lock:
            out = []
            for k in keys:
                v = self._entries.get(k)
                if v is not None:
                    self._entries.move_to_end(k)
                out.append(v)
            return out

    def put_many(self, items: dict[bytes, float]) -> int:
        with self._lock:
            for k, v in items.items():
                self._entries[k] = v
                self._entries.move_to_end(k)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self.evictions += 1
        return len(items) * (KEY_BYTES + 8)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def where(self) -> str:
        return f"in-process, at most {self.max_entries} entries"


class RedisStore:
    """Entries in a Redis database (``redis://HOST:PORT/DB``), kept ``ttl`` seconds (0: no expiry); the
    size bound is the server's own (``maxmemory`` with an ``allkeys-lru`` policy). An error never
    reaches the caller: it is counted, logged once per outage, and Redis is left alone for a backoff
    that doubles up to 30 s; meanwhile every lookup misses and nothing is stored."""

    kind = "redis"

    def __init__(self, url: str, ttl: int):
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:
            raise ModelLoadError(f"reward_cache {url!r} needs the redis package: pip install 'codescaler[serve]'") from exc
        try:
            # No retries inside the client: a dead server must cost one refused connection, not seconds.
            self.client = redis.Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S,
                                               retry=Retry(NoBackoff(), 0))
        except ValueError as exc:
            raise InputError(f"reward_cache {url!r} is not a Redis URL ({exc})") from exc
        self._error = redis.RedisError
        self.url = url
        self.ttl = ttl
        self.errors = 0
        self._down = False
        self._wait = BACKOFF_S[0]
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self._call(lambda: self.client.ping())  # an unreachable server at start is an outage, not a load error

    def _call(self, fn: Callable[[], T]) -> T | None:
        """``fn()``'s result, or None when Redis is in backoff or fails (counted, logged once per outage)."""
        with self._lock:
            if self._down and time.monotonic() < self._retry_at:
                return None
        try:
            out = fn()
        except self._error as exc:
            with self._lock:
                self.errors += 1
                if not self._down:
                    LOG.warning("codescaler: reward cache %s failed (%s: %s); scoring without it, retrying "
                                "with backoff", self.url, type(exc).__name__, exc)
                    self._wait = BACKOFF_S[0]
                else:
                    self._wait = min(self._wait * 2, BACKOFF_S[1])
                self._down = True
                self._retry_at = time.monotonic() + self._wait
            return None
        with self._lock:
            if self._down:
                LOG.warning("codescaler: reward cache %s reachable again", self.url)
                self._down = False
        return out

    def get_many(self, keys: Sequence[bytes]) -> list[float | None]:
        got = self._call(lambda: self.client.mget([REDIS_PREFIX + k for k in keys]))
        if got is None:
            return [None] * len(keys)
        return [None if v is None or len(v) != 8 else struct.unpack("<d", v)[0] for v in got]

    def put_many(self, items: dict[bytes, float]) -> int:
        def put() -> bool:
            pipe = self.client.pipeline(transaction=False)
            for k, v in items.items():
                pipe.set(REDIS_PREFIX + k, struct.pack("<d", v), ex=self.ttl or None)
            pipe.execute()
            return True

        if not items or self._call(put) is None:
            return 0
        return len(items) * (len(REDIS_PREFIX) + KEY_BYTES + 8)

    def where(self) -> str:
        return f"Redis {self.url}" + (f", ttl {self.ttl} s" if self.ttl else "")


class RewardCache:
    """Raw scores by (identity, token ids, boundary); ``hits`` and ``misses`` count unique sequences
    looked up (a miss is a sequence the model ran), ``errors`` failed store operations (Redis),
    ``stored_bytes`` the keys and values written."""

    def __init__(self, store: MemoryStore | RedisStore, identity: dict[str, Any]):
        self.store = store
        self.namespace = hashlib.sha256(json.dumps({"format": FORMAT, **identity}, sort_keys=True).encode()).digest()
        self.hits = 0
        self.misses = 0
        self.stored_bytes = 0

    @property
    def kind(self) -> str:
        return self.store.kind

    @property
    def errors(self) -> int:
        return self.store.errors

    def key(self, seq: Sequence[int], boundary: int) -> bytes:
        h = hashlib.sha256(self.namespace)
        h.update(struct.pack(f"<I{len(seq)}I", boundary, *seq))
        return h.digest()[:KEY_BYTES]

    def get(self, keys: Sequence[bytes]) -> dict[bytes, float]:
        """The cached raw scores among ``keys`` (unique)."""
        found = {k: v for k, v in zip(keys, self.store.get_many(keys)) if v is not None}
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def put(self, items: dict[bytes, float]) -> None:
        if items:
            self.stored_bytes += self.store.put_many(items)

    def clear(self) -> None:
        """Forget every entry of an in-process store (benchmarks time cold calls); a shared store, which
        other processes use, is left alone."""
        if self.kind == MEMORY:
            self.store.clear()

    def summary(self) -> str:
        """One line for logs: where the cache is and what it did."""
        return (f"{self.store.where()}: {self.hits} hit(s), {self.misses} miss(es), {self.errors} error(s), "
                f"{self.stored_bytes} bytes stored")


def open_store(options: dict) -> MemoryStore | RedisStore | None:
    """The store ``options["reward_cache"]`` names (None: ``off``), opened before the model loads so a bad
    Redis URL fails at once; an unreachable Redis is an outage (see :class:`RedisStore`), not an error."""
    spec = options["reward_cache"]
    if spec == OFF:
        return None
    if spec == MEMORY:
        return MemoryStore(options["reward_cache_entries"])
    return RedisStore(spec, options["reward_cache_ttl"])


def attach(store: MemoryStore | RedisStore | None, path: Path, backend: Backend) -> RewardCache | None:
    """A cache over ``store`` for the model at ``path`` run by ``backend``, or None when there is no store
    or the backend's scores depend on their batch (ONNX Runtime, TensorRT), which only the default
    ``memory`` may ask for without an error."""
    if store is None:
        return None
    if not backend.invariant:
        if store.kind != MEMORY:
            raise InputError(f"reward_cache {store.url!r} needs the torch backend: {backend.name} scores depend "
                             f"on what shares their batch, so a cached score would not be exact")
        return None
    identity = runtime_identity(backend)
    if store.kind != MEMORY:
        identity["model"] = fingerprint(path)
    return RewardCache(store, identity)
