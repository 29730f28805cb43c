"""The one contract every backend implements: what it declares (as data) and the one call that scores.

The planner reads the declarations (``packs``: whether a pass may share a question's prefix between
answers; ``invariant``: whether a score is independent of what shares its pass, which makes the reward
cache exact), ``RewardModel.describe`` the rest; :meth:`Backend.score` runs one planned pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence


@dataclass(frozen=True)
class Unit:
    """A prefix (possibly empty) and the answers continuing it, each scored at ``pools[i]`` of its tokens.
    A backend that does not pack (``packs = False``) is only ever given units with an empty prefix and
    one answer: the sequences of a padded batch."""

    prefix: Sequence[int]
    answers: Sequence[Sequence[int]]
    pools: Sequence[int]


class QuestionCache(Protocol):
    """What the server's metrics and ``RewardModel.prefix_cache``'s readers see of a backend's question
    cache (``backends.decoder.PrefixCache``)."""

    hits: int
    misses: int
    saved_tokens: int
    evictions: int
    bytes: int
    max_bytes: int

    def __len__(self) -> int: ...


class Backend(Protocol):
    name: str                 # "torch", "onnx" or "tensorrt"
    dtype: str                # what runs: "bfloat16", "float32", "float32+int8"...
    dtype_reason: str | None  # why that dtype ("fixed at export", "default: CPU declares ..."), None: asked for
    device: str               # "cpu", "cuda", "cuda:1"
    compiled: str             # how the forward pass runs: "eager", "AOTInductor (PATH)", "ONNX Runtime", "TensorRT"
    pad_id: int | None
    packs: bool               # True: units share a prefix in one packed row; False: padded batches
    invariant: bool           # True: a score does not depend on what else shares its pass
    prefix_cache: QuestionCache | None  # the question cache kept across calls, if the backend has one

    def score(self, units: Sequence[Unit]) -> list[float]:
        """Raw scores of every answer of ``units`` (one forward pass), in order."""
        ...
