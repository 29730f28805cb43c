"""What every backend provides to the planner."""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np


class Backend(Protocol):
    name: str
    dtype: str
    pad_id: int | None
    # True: takes packed units (``score_units``); False: padded layouts (``score_layout``).
    packs: bool

    def score_layout(self, layout) -> np.ndarray:
        """Raw scores (float32, one per ``layout.pool_index``) of a ``codescaler.backends.layout.Layout``."""
        ...

    def score_units(self, units) -> list[float]:
        """Raw scores of every answer of ``units`` (``backends.decoder.Unit``: a prefix run once, answers
        continuing it, packed in one row), in order (packing backends)."""
        ...
