"""The C++ planner (csrc/scorer/plan.cpp, which the C++ scorer runs) against Python's
`plan(..., packed=True)`: the same unique sequences, pool positions, slots and packed units, in the same
order, on random workloads built to hit every branch and on a GRPO-shaped one."""

from __future__ import annotations

import random

import pytest

from codescaler import _native_testing
from codescaler.plan import plan

BUDGETS = [1, 2, 3, 7, 30, 100, 500, 4096, 10**6, 2**62]
SIZES = [1, 2, 3, 8, 64, 10**9]


def _both(items, bounds, pad_id, share, max_batch_tokens, max_batch_size):
    want = plan(items, bounds, pad_id, packed=True, share=share, max_batch_tokens=max_batch_tokens,
                max_batch_size=max_batch_size)
    got = _native_testing.plan(items, bounds, pad_id, share, max_batch_tokens, max_batch_size)
    return got, (want.seqs, want.pools, want.slot, [[(u.prefix, u.members) for u in p] for p in want.packs])


def _random_workload(rng: random.Random):
    """Questions as random prefixes over a small vocabulary (so prefixes run on by accident), each answer's
    boundary mostly its question's length but also 0, negative, inside the answer, at or past its pool
    position; duplicates with the same or another boundary, None items, pad ids inside and at the end,
    all-pad and empty sequences, and questions interleaved or not."""
    vocab = rng.choice([2, 3, 6, 50])
    pad = rng.choice([None, 0, 1])
    tok = lambda: rng.randrange(vocab)  # noqa: E731
    items, bounds = [], []
    for _ in range(rng.randint(1, 8)):
        prefix = [tok() for _ in range(rng.choice([0, 1, 2, 5, 16, 30, 60]))]
        for _ in range(rng.choice([1, 1, 2, 3, 5, 16, 40])):
            roll = rng.random()
            bound = len(prefix)
            if roll < 0.08:
                seq = None
            elif roll < 0.18 and items:
                j = rng.randrange(len(items))  # a duplicate, from any question
                seq = None if items[j] is None else list(items[j])
                bound = bounds[j] if rng.random() < 0.7 else rng.randint(-1, 8)
            elif roll < 0.21:
                seq = [pad if pad is not None else 0] * rng.randint(1, 20)  # all pad
            elif roll < 0.22:
                seq = []
            else:
                seq = prefix + [tok() for _ in range(rng.choice([0, 1, 3, 10, 40]))]
                if pad is not None and rng.random() < 0.2:
                    seq += [pad] * rng.randint(1, 4)  # ends in the pad id
            if seq is not None and rng.random() < 0.15:
                bound = rng.choice([0, -1, -(2**40), len(seq), len(seq) + 3, 2**40, rng.randint(0, len(seq))])
            items.append(seq)
            bounds.append(bound)
    if rng.random() < 0.5:
        both = list(zip(items, bounds))
        rng.shuffle(both)
        items, bounds = [list(x) for x in zip(*both)] if both else ([], [])
    return items, bounds, pad


@pytest.mark.parametrize("seed", range(8))
def test_random_workloads(seed):
    rng = random.Random(seed)
    for _ in range(500):
        items, bounds, pad = _random_workload(rng)
        share = rng.random() < 0.8
        got, want = _both(items, bounds, pad, share, rng.choice(BUDGETS), rng.choice(SIZES))
        assert got == want, (items, bounds, pad, share)


def test_grpo_workload():
    """8 questions x 16 answers, each answer split after its question's 100 tokens, Qwen-sized ids, some
    answers ending in the pad id, every budget from one pass per answer to everything in one pass."""
    rng = random.Random(0)
    pad = 151643
    items, bounds = [], []
    for q in range(8):
        prefix = [rng.randrange(151643) for _ in range(100)]
        for _ in range(16):
            tail = [rng.randrange(151643) for _ in range(rng.randint(50, 400))]
            items.append(prefix + tail + ([pad] if rng.random() < 0.1 else []))
            bounds.append(len(prefix))
    items[5] = list(items[3])  # a duplicate answer
    items[40] = None           # an answer with no code
    bounds[7] = 0              # a conversation with no boundary
    for share in (True, False):
        for budget in (1, 400, 4096, 8192, 16384, 10**6):
            for size in (1, 16, 64, 128):
                got, want = _both(items, bounds, pad, share, budget, size)
                assert got == want, (share, budget, size)
    got, _ = _both(items, bounds, pad, True, 16384, 128)
    units = [u for pack in got[3] for u in pack]
    assert {u[0] for u in units} == {0, 100}, "each question's prefix is shared"
    assert sum(len(u[1]) for u in units if u[0] == 100) == 8 * 16 - 3  # all but the duplicate, None and bound 0


def test_many_units_under_tight_budgets():
    """Hundreds of passes, where the first-fit search skips full passes."""
    rng = random.Random(1)
    items = [[rng.randrange(9) for _ in range(rng.randint(1, 60))] for _ in range(1500)]
    bounds = [rng.randint(0, 3) for _ in items]
    for budget, size in [(1, 10**9), (60, 10**9), (100, 3), (10**6, 2), (150, 1000)]:
        for share in (True, False):
            got, want = _both(items, bounds, None, share, budget, size)
            assert got == want, (budget, size, share)


def test_refusals():
    with pytest.raises(ValueError, match="must be positive"):
        _native_testing.plan([[1]], [0], None, True, 0, 1)
    with pytest.raises(ValueError, match="must be positive"):
        _native_testing.plan([[1]], [0], None, True, 1, -3)
    with pytest.raises(ValueError, match="2 sequences but 1 boundaries"):
        _native_testing.plan([[1], [2]], [0], None, True, 10, 10)
    with pytest.raises(TypeError, match=r"items\[1\]\[2\] must be an int32 token id"):
        _native_testing.plan([[1], [2, 3, 2**40]], [0, 0], None, True, 10, 10)
    with pytest.raises(TypeError, match=r"items\[0\] must be a list of int or None"):
        _native_testing.plan([5], [0], None, True, 10, 10)
