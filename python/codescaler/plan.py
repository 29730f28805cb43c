"""Planning: the least forward-pass work that gives every item its exact score.

Given each item's token sequence (None when it needs no forward pass) and its group (the question it
answers), the plan scores identical token sequences once, and then, for a backend that packs
(``packs = True``: torch),

- makes each group a *unit*: its shared token prefix (the rendered question) run once, every answer a
  continuation of it, when the prefix is long enough to matter; the prefix is the longest common token
  prefix of the group's full sequences, so it is by construction the exact tokenization of the question
  inside every one of them. A sequence that shares nothing is a unit with an empty prefix;
- packs units, largest first, into forward passes under a token budget (no padding), so the linear
  layers run over as many tokens at once as the budget allows, whatever group they belong to;

and for a backend that takes padded batches (ONNX Runtime, TensorRT) sorts the sequences by length and
cuts them into micro-batches under a padded-token budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Sequence

from .encode import pool_index


@dataclass(frozen=True)
class Unit:
    """Sequences ``members`` (indices into ``Plan.seqs``) sharing their first ``prefix`` tokens, which run
    once; each member's remaining tokens run as a continuation of them. ``prefix`` 0: nothing shared."""

    prefix: int
    members: list[int]


@dataclass(frozen=True)
class Plan:
    seqs: list[list[int]]              # unique sequences to score
    pools: list[int]                   # per unique sequence: the position its score is read at
    slot: list[int]                    # per item: index into ``seqs``, or -1 when not run
    packs: list[list[Unit]] = field(default_factory=list)   # packed forward passes (packing backends)
    batches: list[list[int]] = field(default_factory=list)  # padded micro-batches (other backends)

    @property
    def shared(self) -> list[Unit]:
        """The units that share a prefix."""
        return [u for pack in self.packs for u in pack if u.prefix]

    def unit_tokens(self, u: Unit) -> int:
        return unit_tokens(u, self.seqs)

    @property
    def computed_tokens(self) -> int:
        """Tokens the forward passes run, padding included."""
        n = sum(self.unit_tokens(u) for pack in self.packs for u in pack)
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
    packed: bool,
    share: bool,
    max_batch_tokens: int,
    max_batch_size: int,
    min_prefix: int = 16,
) -> Plan:
    """Plan the forward passes for items ``seqs`` (None: not run) answering ``groups`` (e.g. questions):
    packed units for a packing backend (``packed``), padded micro-batches otherwise."""
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
    if not packed:
        order = sorted(range(len(unique)), key=lambda k: -len(unique[k]))
        batches = _cut(order, lambda k: len(unique[k]), max_batch_tokens, max_batch_size, packed=False)
        return Plan(unique, pools, slot, batches=batches)

    members: dict[Hashable, list[int]] = {}
    for k, g in enumerate(unique_group):
        members.setdefault(g, []).append(k)
    units: list[Unit] = []
    for ks in members.values():
        prefix = 0
        if share and len(ks) > 1:
            # Every answer must keep its pooled token, so the prefix stops at the earliest pool position.
            prefix = min(common_prefix([unique[k] for k in ks]), min(pools[k] for k in ks))
        if prefix < min_prefix:
            units += [Unit(0, [k]) for k in ks]
            continue
        # A group larger than the budget is split; each part runs the prefix again.
        order = sorted(ks, key=lambda k: -len(unique[k]))
        room = max(max_batch_tokens - prefix, 1)
        for part in _cut(order, lambda k: len(unique[k]) - prefix, room, max_batch_size, packed=True):
            units.append(Unit(prefix, part))
    return Plan(unique, pools, slot, packs=_pack(units, unique, max_batch_tokens, max_batch_size))


def unit_tokens(u: Unit, seqs: Sequence[Sequence[int]]) -> int:
    """Tokens a unit runs: its prefix once, then each member's own continuation."""
    return u.prefix + sum(len(seqs[k]) - u.prefix for k in u.members)


def _pack(units: list[Unit], seqs: list[list[int]], max_batch_tokens: int, max_batch_size: int) -> list[list[Unit]]:
    """First-fit decreasing: units, largest first, each into the first pass with room for its tokens and
    its sequences. A unit larger than the budget runs alone."""
    packs: list[list[Unit]] = []
    room: list[tuple[int, int]] = []  # per pack: tokens used, sequences used
    for u in sorted(units, key=lambda u: -unit_tokens(u, seqs)):
        n, m = unit_tokens(u, seqs), len(u.members)
        for i, (used, count) in enumerate(room):
            if used + n <= max_batch_tokens and count + m <= max_batch_size:
                packs[i].append(u)
                room[i] = (used + n, count + m)
                break
        else:
            packs.append([u])
            room.append((n, m))
    return packs
