"""What every backend provides to the planner."""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np


class Backend(Protocol):
    name: str
    dtype: str
    pad_id: int | None
    # Whether ``prefill`` / ``score_after_prefix`` exist and beat scoring answers whole.
    shares_prefix: bool

    def score_layout(self, layout) -> np.ndarray:
        """Raw scores (float32, one per ``layout.pool_index``) of a ``codescaler.engine.layout.Layout``."""
        ...

    def prefill(self, prefix: Sequence[int]):
        """Run a shared prefix once; the returned state serves ``score_after_prefix`` (sharing backends)."""
        ...

    def score_after_prefix(self, state, answers: Sequence[Sequence[int]], offsets: Sequence[int]) -> list[float]:
        """Raw scores of answers continuing the prefilled prefix, each read at ``offsets[i]`` of its tokens."""
        ...
