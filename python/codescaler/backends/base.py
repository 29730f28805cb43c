"""What every backend provides to the planner."""

from __future__ import annotations

from typing import Protocol, Sequence


class Backend(Protocol):
    name: str
    dtype: str
    pad_id: int | None

    def score_batch(self, ids: Sequence[Sequence[int]], pools: Sequence[int]) -> list[float]:
        """Raw scores of sequences ``ids``, each read at position ``pools[i]``."""
        ...
