"""Planning: which sequences to run and how to batch them, so that no reward changes.

Duplicates are run once, empty answers are not run at all, and sequences are sorted by length and cut
into micro-batches whose padded size stays under a token budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Sequence


@dataclass(frozen=True)
class Plan:
    """``unique[k]`` is run once; item ``i`` takes the score of ``unique[slot[i]]`` (or none if -1)."""

    unique: list[int]          # item index that carries each unique sequence
    slot: list[int]            # per item: index into ``unique`` or -1 when the item is not run
    batches: list[list[int]]   # indices into ``unique``, each a micro-batch


def plan(
    keys: Sequence[Hashable | None],
    lengths: Sequence[int],
    *,
    max_batch_tokens: int,
    max_batch_size: int,
) -> Plan:
    """Plan a forward pass over items; ``keys[i] is None`` marks an item that needs no forward pass.

    Batches hold sequences of similar length (longest first) and at most ``max_batch_tokens`` padded
    tokens; a single sequence longer than the budget gets a batch of its own.
    """
    if max_batch_tokens < 1 or max_batch_size < 1:
        raise ValueError("max_batch_tokens and max_batch_size must be positive")
    first: dict[Hashable, int] = {}
    unique: list[int] = []
    slot: list[int] = []
    for i, key in enumerate(keys):
        if key is None:
            slot.append(-1)
            continue
        k = first.get(key)
        if k is None:
            k = first[key] = len(unique)
            unique.append(i)
        slot.append(k)
    order = sorted(range(len(unique)), key=lambda k: -lengths[unique[k]])
    batches: list[list[int]] = []
    current: list[int] = []
    for k in order:
        width = lengths[unique[current[0]]] if current else lengths[unique[k]]
        if current and ((len(current) + 1) * width > max_batch_tokens or len(current) >= max_batch_size):
            batches.append(current)
            current = []
        current.append(k)
    if current:
        batches.append(current)
    return Plan(unique, slot, batches)
