"""Planning: the least forward-pass work that gives every item its exact score.

Given each item's token sequence (None when it needs no forward pass) and its group (the question it
answers), the plan

- scores identical token sequences once;
- runs a group's shared token prefix (the rendered question) once and scores each answer as a
  continuation of it (the answers packed back to back, no padding), when the backend can reuse a prefix and the prefix is long enough to matter; the
  prefix is the longest common token prefix of the group's full sequences, so it is by construction the
  exact tokenization of the question inside every one of them;
- sorts what is left by length and cuts it into micro-batches under a padded-token budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Sequence

from .encode import pool_index


@dataclass(frozen=True)
class SharedGroup:
    """Answers ``members`` (indices into ``Plan.seqs``) continuing one ``prefix``, in micro-batches."""

    prefix: list[int]
    members: list[int]
    batches: list[list[int]]


@dataclass(frozen=True)
class Plan:
    seqs: list[list[int]]              # unique sequences to score
    pools: list[int]                   # per unique sequence: the position its score is read at
    slot: list[int]                    # per item: index into ``seqs``, or -1 when not run
    shared: list[SharedGroup] = field(default_factory=list)
    batches: list[list[int]] = field(default_factory=list)  # unshared micro-batches

    @property
    def computed_tokens(self) -> int:
        """Tokens the forward passes run, padding included."""
        n = 0
        for g in self.shared:
            n += len(g.prefix)
            n += sum(len(self.seqs[k]) - len(g.prefix) for k in g.members)  # answers run packed
        for b in self.batches:
            n += len(b) * max(len(self.seqs[k]) for k in b)
        return n


def common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs):
            return i
    return n


def _cut(order: Sequence[int], width, max_batch_tokens: int, max_batch_size: int, packed: bool) -> list[list[int]]:
    """Consecutive micro-batches of ``order`` (longest first) under the token budget: padded tokens
    (batch size x longest) for padded batches, the sum of lengths for packed ones."""
    batches: list[list[int]] = []
    current: list[int] = []
    used = 0
    for k in order:
        w = width(k)
        cost = used + w if packed else (len(current) + 1) * (width(current[0]) if current else w)
        if current and (cost > max_batch_tokens or len(current) >= max_batch_size):
            batches.append(current)
            current, used = [], 0
        current.append(k)
        used += w
    if current:
        batches.append(current)
    return batches


def plan(
    seqs: Sequence[Sequence[int] | None],
    groups: Sequence[Hashable],
    pad_id: int | None,
    *,
    share: bool,
    max_batch_tokens: int,
    max_batch_size: int,
    min_prefix: int = 16,
) -> Plan:
    """Plan the forward passes for items ``seqs`` (None: not run) answering ``groups`` (e.g. questions)."""
    if max_batch_tokens < 1 or max_batch_size < 1:
        raise ValueError("max_batch_tokens and max_batch_size must be positive")
    index: dict[tuple[int, ...], int] = {}
    unique: list[list[int]] = []
    unique_group: list[Hashable] = []
    slot: list[int] = []
    for seq, group in zip(seqs, groups):
        if seq is None:
            slot.append(-1)
            continue
        key = tuple(seq)
        k = index.get(key)
        if k is None:
            k = index[key] = len(unique)
            unique.append(list(seq))
            unique_group.append(group)
        slot.append(k)
    pools = [pool_index(s, pad_id) for s in unique]

    members: dict[Hashable, list[int]] = {}
    for k, g in enumerate(unique_group):
        members.setdefault(g, []).append(k)
    shared: list[SharedGroup] = []
    alone: list[int] = []
    for ks in members.values():
        prefix = 0
        if share and len(ks) > 1:
            # Every answer must keep its pooled token, so the prefix stops at the earliest pool position.
            prefix = min(common_prefix([unique[k] for k in ks]), min(pools[k] for k in ks))
        if prefix < min_prefix:
            alone += ks
            continue
        order = sorted(ks, key=lambda k: -len(unique[k]))
        batches = _cut(order, lambda k: len(unique[k]) - prefix, max_batch_tokens, max_batch_size, packed=True)
        shared.append(SharedGroup(unique[ks[0]][:prefix], ks, batches))
    alone.sort(key=lambda k: -len(unique[k]))
    batches = _cut(alone, lambda k: len(unique[k]), max_batch_tokens, max_batch_size, packed=False)
    return Plan(unique, pools, slot, shared, batches)
