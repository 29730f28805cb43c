"""Sequence layouts for the scoring graph (see ``codescaler.engine.graph``): padded batches and packed rows.

A layout is plain int64 numpy arrays, so every backend takes it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Layout:
    input_ids: np.ndarray     # (B, T)
    position_ids: np.ndarray  # (B, T)
    segment_ids: np.ndarray   # (B, T)
    prefix_ids: np.ndarray    # (B, T)
    pool_index: np.ndarray    # (K,) flat indices into B*T

    def feeds(self) -> dict[str, np.ndarray]:
        return {
            "input_ids": self.input_ids,
            "position_ids": self.position_ids,
            "segment_ids": self.segment_ids,
            "prefix_ids": self.prefix_ids,
            "pool_index": self.pool_index,
        }

    @property
    def tokens(self) -> int:
        """Tokens the forward pass computes, padding included."""
        return int(self.input_ids.size)


@dataclass(frozen=True)
class Piece:
    """A run of tokens in a packed row. ``shares`` is the index (within the row) of an earlier piece
    whose tokens this piece also attends to, and whose length its positions continue from; ``pool`` is
    the offset inside the piece to score at, or None for a piece that is only context (a question)."""

    ids: Sequence[int]
    pool: int | None = None
    shares: int | None = None


def padded(seqs: Sequence[Sequence[int]], pools: Sequence[int], pad_id: int | None) -> Layout:
    """One sequence per row, right-padded: the layout of a Hugging Face padded batch."""
    rows = [[Piece(s, p)] for s, p in zip(seqs, pools)]
    return packed(rows, pad_id)


def packed(rows: Sequence[Sequence[Piece]], pad_id: int | None) -> Layout:
    """Rows of pieces, right-padded to the longest row. Pooled outputs come out in row-major piece order."""
    fill = 0 if pad_id is None else pad_id
    t = max(sum(len(p.ids) for p in row) for row in rows)
    b = len(rows)
    ids = np.full((b, t), fill, dtype=np.int64)
    pos = np.zeros((b, t), dtype=np.int64)
    seg = np.full((b, t), -1, dtype=np.int64)
    pre = np.full((b, t), -1, dtype=np.int64)
    pool: list[int] = []
    for r, row in enumerate(rows):
        start = 0
        starts: list[int] = []
        for k, piece in enumerate(row):
            n = len(piece.ids)
            starts.append(start)
            ids[r, start:start + n] = piece.ids
            seg[r, start:start + n] = k
            if piece.shares is None:
                pos[r, start:start + n] = np.arange(n)
                pre[r, start:start + n] = k
            else:
                if not 0 <= piece.shares < k:
                    raise ValueError(f"row {r} piece {k}: shares={piece.shares} must name an earlier piece")
                base = len(row[piece.shares].ids)
                pos[r, start:start + n] = base + np.arange(n)
                pre[r, start:start + n] = piece.shares
            if piece.pool is not None:
                if not 0 <= piece.pool < n:
                    raise ValueError(f"row {r} piece {k}: pool offset {piece.pool} outside its {n} tokens")
                pool.append(r * t + start + piece.pool)
            start += n
    return Layout(ids, pos, seg, pre, np.asarray(pool, dtype=np.int64))
