"""The C++ planner (csrc/scorer/plan.cpp, which the C++ scorer runs) against Python's
`plan(..., packed=True)`: the same unique sequences, pool positions, slots and packed units, in the same
order, on random workloads built to hit every branch and on a GRPO-shaped one."""

from __future__ import annotations

import random

import pytest

from codescaler import _native
from codescaler.plan import plan

BUDGETS = [1, 2, 3, 7, 30, 100, 500, 4096, 10**6, 2**62]
SIZES = [1, 2, 3, 8, 64, 10**9]


def _both(items, groups, pad_id, share, max_batch_tokens, max_batch_size, min_prefix=None):
    kw = {} if min_prefix is None else {"min_prefix": min_prefix}
    want = plan(items, groups, pad_id, packed=True, share=share, max_batch_tokens=max_batch_tokens,
                max_batch_size=max_batch_size, **kw)
    got = _native.plan(items, groups, pad_id, share, max_batch_tokens, max_batch_size, **kw)
    return got, (want.seqs, want.pools, want.slot, [[(u.prefix, u.members) for u in p] for p in want.packs])


def _random_workload(rng: random.Random):
    """Groups sharing random prefixes over a small vocabulary (so prefixes run on by accident), with
    duplicates within and across groups, None items, pad ids inside and at the end, all-pad and empty
    sequences, and groups interleaved or not."""
    vocab = rng.choice([2, 3, 6, 50])
    pad = rng.choice([None, 0, 1])
    tok = lambda: rng.randrange(vocab)  # noqa: E731
    items, groups = [], []
    for g in rng.sample(range(1000), rng.randint(1, 8)):
        prefix = [tok() for _ in range(rng.choice([0, 1, 5, 15, 16, 17, 30, 60]))]
        for _ in range(rng.choice([1, 1, 2, 3, 5, 16, 40])):
            roll = rng.random()
            if roll < 0.08:
                seq = None
            elif roll < 0.18 and items:
                seq = rng.choice([s for s in items if s is not None] or [None])  # a duplicate, any group
                seq = None if seq is None else list(seq)
            elif roll < 0.21:
                seq = [pad if pad is not None else 0] * rng.randint(1, 20)  # all pad
            elif roll < 0.22:
                seq = []
            else:
                seq = prefix + [tok() for _ in range(rng.choice([0, 1, 3, 10, 40]))]
                if pad is not None and rng.random() < 0.2:
                    seq += [pad] * rng.randint(1, 4)  # ends in the pad id
            items.append(seq)
            groups.append(g)
    if rng.random() < 0.5:
        both = list(zip(items, groups))
        rng.shuffle(both)
        items, groups = [list(x) for x in zip(*both)] if both else ([], [])
    return items, groups, pad


@pytest.mark.parametrize("seed", range(8))
def test_random_workloads(seed):
    rng = random.Random(seed)
    for _ in range(500):
        items, groups, pad = _random_workload(rng)
        share = rng.random() < 0.8
        min_prefix = rng.choice([None, 0, 1, 2, 5, 16, 40])
        got, want = _both(items, groups, pad, share, rng.choice(BUDGETS), rng.choice(SIZES), min_prefix)
        assert got == want, (items, groups, pad, share, min_prefix)


def test_grpo_workload():
    """8 questions x 16 answers, each question a 100-token prefix of its answers, Qwen-sized ids, some
    answers ending in the pad id, every budget from one pass per answer to everything in one pass."""
    rng = random.Random(0)
    pad = 151643
    items, groups = [], []
    for q in range(8):
        prefix = [rng.randrange(151643) for _ in range(100)]
        for _ in range(16):
            tail = [rng.randrange(151643) for _ in range(rng.randint(50, 400))]
            items.append(prefix + tail + ([pad] if rng.random() < 0.1 else []))
            groups.append(q)
    items[5] = list(items[3])  # a duplicate answer
    items[40] = None           # an answer with no code
    for share in (True, False):
        for budget in (1, 400, 4096, 8192, 16384, 10**6):
            for size in (1, 16, 64, 128):
                got, want = _both(items, groups, pad, share, budget, size)
                assert got == want, (share, budget, size)
    got, _ = _both(items, groups, pad, True, 16384, 128)
    assert {u[0] for pack in got[3] for u in pack} == {100}, "each question's prefix is shared"


def test_many_units_under_tight_budgets():
    """Hundreds of passes, where the first-fit search skips full passes."""
    rng = random.Random(1)
    items = [[rng.randrange(9) for _ in range(rng.randint(1, 60))] for _ in range(1500)]
    groups = [rng.randrange(300) for _ in items]
    for budget, size in [(1, 10**9), (60, 10**9), (100, 3), (10**6, 2), (150, 1000)]:
        for share in (True, False):
            got, want = _both(items, groups, None, share, budget, size, min_prefix=0)
            assert got == want, (budget, size, share)


def test_refusals():
    with pytest.raises(ValueError, match="must be positive"):
        _native.plan([[1]], [0], None, True, 0, 1)
    with pytest.raises(ValueError, match="must be positive"):
        _native.plan([[1]], [0], None, True, 1, -3)
    with pytest.raises(ValueError, match="differ in length: 2 and 1"):
        _native.plan([[1], [2]], [0], None, True, 10, 10)
    with pytest.raises(TypeError, match=r"items\[1\]\[2\] must be an int32 token id"):
        _native.plan([[1], [2, 3, 2**40]], [0, 0], None, True, 10, 10)
    with pytest.raises(TypeError, match=r"items\[0\] must be a list of int or None"):
        _native.plan([5], [0], None, True, 10, 10)
