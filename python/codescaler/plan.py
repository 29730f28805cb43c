"""Planning: the least forward-pass work that gives every item its exact score.

Given each item's token sequence (None when it needs no forward pass) and its *boundary* (the number of
leading tokens that render the question, up to the chat template's last special token before the code;
0 when it has none), the plan scores identical token sequences once, and then, for a backend that packs
(``packs = True``: torch),

- splits every sequence at its boundary, alone or not: the prefix (question) and the answer (code) are
  computed the same way whatever else shares the call, which is what makes a reward independent of its
  batch (see ``backends.decoder``). Sequences with the same prefix tokens form one *unit*: the prefix
  runs once, every answer a continuation of it (with ``share=False`` each sequence is its own unit,
  computed identically). A sequence with boundary 0 is a unit with an empty prefix;
- packs units, largest first, into forward passes under a token budget (no padding), so the linear
  layers run over as many tokens at once as the budget allows, whatever question they belong to;

and for a backend that takes padded batches (ONNX Runtime, TensorRT) sorts the sequences by length and
cuts them into micro-batches under a padded-token budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from .encode import pool_index


@dataclass(frozen=True)
class Unit:
    """Sequences ``members`` (indices into ``Plan.seqs``) sharing their first ``prefix`` tokens, which run
    once; each member's remaining tokens run as a continuation of them. ``prefix`` 0: nothing shared."""

    prefix: int
    members: list[int]


@dataclass(frozen=True)
class Plan:
    seqs: list[list[int]]              # unique (sequence, boundary) pairs to score
    pools: list[int]                   # per unique sequence: the position its score is read at
    slot: list[int]                    # per item: index into ``seqs``, or -1 when not run
    packs: list[list[Unit]] = field(default_factory=list)   # packed forward passes (packing backends)
    batches: list[list[int]] = field(default_factory=list)  # padded micro-batches (other backends)

    @property
    def shared(self) -> list[Unit]:
        """The units whose prefix runs once for several answers."""
        return [u for pack in self.packs for u in pack if u.prefix and len(u.members) > 1]

    def unit_tokens(self, u: Unit) -> int:
        return unit_tokens(u, self.seqs)

    @property
    def computed_tokens(self) -> int:
        """Tokens the forward passes run, padding included."""
        n = sum(self.unit_tokens(u) for pack in self.packs for u in pack)
        for b in self.batches:
            n += len(b) * max(len(self.seqs[k]) for k in b)
        return n

    @property
    def padded_tokens(self) -> int:
        """Of :attr:`computed_tokens`, the padding of the padded batches."""
        return sum(len(b) * max(len(self.seqs[k]) for k in b) - sum(len(self.seqs[k]) for k in b)
                   for b in self.batches)


def _cut(order: Sequence[int], width: Callable[[int], int], max_batch_tokens: int, max_batch_size: int, packed: bool) -> list[list[int]]:
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
    bounds: Sequence[int],
    pad_id: int | None,
    *,
    packed: bool,
    share: bool,
    max_batch_tokens: int,
    max_batch_size: int,
) -> Plan:
    """Plan the forward passes for items ``seqs`` (None: not run) split at ``bounds`` (see the module
    docstring): packed units for a packing backend (``packed``), padded micro-batches otherwise."""
    if max_batch_tokens < 1 or max_batch_size < 1:
        raise ValueError("max_batch_tokens and max_batch_size must be positive")
    if len(bounds) != len(seqs):
        raise ValueError(f"{len(seqs)} sequences but {len(bounds)} boundaries")
    index: dict[tuple[tuple[int, ...], int], int] = {}
    unique: list[list[int]] = []
    unique_bound: list[int] = []
    slot: list[int] = []
    for seq, bound in zip(seqs, bounds):
        if seq is None:
            slot.append(-1)
            continue
        key = (tuple(seq), bound)
        k = index.get(key)
        if k is None:
            k = index[key] = len(unique)
            unique.append(list(seq))
            unique_bound.append(bound)
        slot.append(k)
    pools = [pool_index(s, pad_id) for s in unique]
    if not packed:
        order = sorted(range(len(unique)), key=lambda k: -len(unique[k]))
        batches = _cut(order, lambda k: len(unique[k]), max_batch_tokens, max_batch_size, packed=False)
        return Plan(unique, pools, slot, batches=batches)

    # Every answer keeps its pooled token: a boundary at or past it (a question cut by truncation) is none.
    cuts = [b if 0 < b <= pools[k] else 0 for k, b in enumerate(unique_bound)]
    members: dict[tuple[int, ...], list[int]] = {}
    units: list[Unit] = []
    for k, b in enumerate(cuts):
        if not b:
            units.append(Unit(0, [k]))
        elif share:
            members.setdefault(tuple(unique[k][:b]), []).append(k)
        else:
            units.append(Unit(b, [k]))
    for prefix, ks in members.items():
        # A group larger than the budget is split; each part runs the prefix again (the same way).
        order = sorted(ks, key=lambda k: -len(unique[k]))
        room = max(max_batch_tokens - len(prefix), 1)
        for part in _cut(order, lambda k: len(unique[k]) - len(prefix), room, max_batch_size, packed=True):
            units.append(Unit(len(prefix), part))
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
