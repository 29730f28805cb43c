"""The planner changes no reward: shared, deduplicated, skip-invalid, batched scoring equals plain
one-item-at-a-time scoring at float32, on random workloads and edge cases, on both backends."""

from __future__ import annotations

import random

import pytest

from codescaler import RewardModel, tiny
from codescaler.plan import common_prefix, plan
from conftest import fenced

TOL = 1e-4


def _plain(path, **kw):
    """Every item alone: no sharing, batches of one."""
    return RewardModel.from_pretrained(path, share_prefix=False, max_batch_size=1, **kw)


def _random_groups(humaneval, rng, groups=5):
    questions, responses = [], []
    for g in range(groups):
        q = rng.choice(humaneval)["prompt"]
        size = rng.choice([1, 2, 3, 8])
        for _ in range(size):
            roll = rng.random()
            p = rng.choice(humaneval)
            code = (p["prompt"] + p["canonical_solution"]).strip()
            if responses and roll < 0.15 and questions[-1] == q:
                responses.append(responses[-1])  # a duplicate
            elif roll < 0.3:
                responses.append(rng.choice(["no code", fenced("print 'x'"), fenced("a") + fenced("b")]))
            else:
                responses.append(fenced(code[: rng.randint(20, len(code))] if roll < 0.4 else code))
            questions.append(q)
    return questions, responses


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_workloads_equal_plain_scoring(qwen3_dir, humaneval, seed):
    qs, rs = _random_groups(humaneval, random.Random(seed))
    fast = RewardModel.from_pretrained(qwen3_dir, dtype="float32", max_batch_tokens=900)
    got = fast.score(qs, rs)
    want = _plain(qwen3_dir, dtype="float32").score(qs, rs)
    assert [r.status for r in got] == [r.status for r in want]
    assert max(abs((a.raw_score or 0) - (b.raw_score or 0)) for a, b in zip(got, want)) <= TOL
    assert max(abs(a.reward - b.reward) for a, b in zip(got, want)) <= TOL
    assert fast.last_plan.shared, "the workload has groups, so some prefix must have been shared"


def test_edge_cases_equal_plain_scoring(qwen3_dir, humaneval):
    long_q = " ".join(p["prompt"] for p in humaneval[:15])  # longer than max_length below
    qs, rs = [], []
    qs += ["single question"]; rs += [fenced("x = 1")]                      # a group of 1
    qs += ["all invalid"] * 3; rs += ["none", fenced("print 'a'"), "```python\n```"]
    qs += [long_q] * 3; rs += [fenced("x = 1"), fenced("y = 2"), fenced("z = 3")]
    q = humaneval[3]["prompt"]
    qs += [q] * 4; rs += [fenced("def f():\n    return 1")] * 2 + [fenced("def f():\n    return 2"), fenced("w = 0")]
    kw = dict(max_length=700, dtype="float32")
    fast = RewardModel.from_pretrained(qwen3_dir, max_batch_tokens=512, **kw)
    got, want = fast.score(qs, rs), _plain(qwen3_dir, **kw).score(qs, rs)
    assert [r.status for r in got] == [r.status for r in want]
    assert [r.raw_score is None for r in got] == [False, True, True, True, False, False, False] + [False] * 4
    assert max(abs((a.raw_score or 0) - (b.raw_score or 0)) for a, b in zip(got, want)) <= TOL
    # The over-long question truncates all three answers away: one sequence, scored once.
    p = fast.last_plan
    assert len({tuple(p.seqs[p.slot[i]]) for i in (4, 5, 6)}) == 1


def test_prefix_that_tokenizes_differently_inside_the_sequence(tmp_path, humaneval):
    """A template that glues the answer to the question: the question's own tokens are not a prefix of
    the full sequence, so the shared prefix must come from the full sequences."""
    glued = "{%- for m in messages -%}{{- m.content -}}{%- endfor -%}"
    d = tiny.save_random_reward_model(tmp_path / "glued", chat_template=glued, seed=3)
    qs = ["Compute the sum of a list of integers, skipping the negative ones and counting zero once. Answer: x"] * 4
    rs = [fenced("yz = 1"), fenced("y = [1, 2]"), fenced("abc = 3"), fenced("_q = 4")]
    fast = RewardModel.from_pretrained(d, dtype="float32")
    tok = fast.encoder.tokenizer
    alone = tok(qs[0])["input_ids"]
    full = fast.encoder.encode(qs, [fast_code.code for fast_code in fast.score(qs, rs)])
    assert any(f[: len(alone)] != alone for f in full), "the fixture must tokenize across the boundary"
    got, want = fast.score(qs, rs), _plain(d, dtype="float32").score(qs, rs)
    assert max(abs(a.raw_score - b.raw_score) for a, b in zip(got, want)) <= TOL
    p = fast.last_plan
    shared = p.shared
    assert shared and all(p.seqs[k][: u.prefix] == full[0][: u.prefix] for u in shared for k in u.members)


def test_onnx_backend_plans_equal_plain_scoring(qwen3_dir, humaneval, tmp_path):
    from codescaler.engine.export import export_onnx

    engine = export_onnx(qwen3_dir, tmp_path / "e", log=lambda *_: None)
    qs, rs = _random_groups(humaneval, random.Random(5), groups=4)
    got = RewardModel.from_pretrained(engine.path).score(qs, rs)
    want = _plain(qwen3_dir, dtype="float32").score(qs, rs)
    assert max(abs(a.reward - b.reward) for a, b in zip(got, want)) <= TOL


def test_plan_dedupes_shares_and_budgets():
    pre = list(range(100, 140))
    seqs = [pre + [1, 2, 3], pre + [1, 2, 3], pre + [4, 5], None, [7] * 30, pre + [9] * 50]
    groups = ["a", "a", "a", "a", "b", "a"]
    p = plan(seqs, groups, pad_id=0, packed=True, share=True, max_batch_tokens=64, max_batch_size=8)
    assert p.slot == [0, 0, 1, -1, 2, 3]
    assert all(u.prefix == len(pre) for u in p.shared)
    assert sorted(k for u in p.shared for k in u.members) == [0, 1, 3]
    assert [u.members for pack in p.packs for u in pack if not u.prefix] == [[2]]
    for pack in p.packs:  # the budget holds, except for a unit too large to split further
        assert sum(p.unit_tokens(u) for u in pack) <= 64 or (len(pack) == 1 and len(pack[0].members) == 1)
    unshared = plan(seqs, groups, pad_id=0, packed=True, share=False, max_batch_tokens=64, max_batch_size=8)
    assert not unshared.shared and unshared.computed_tokens > p.computed_tokens
    padded = plan(seqs, groups, pad_id=0, packed=False, share=True, max_batch_tokens=64, max_batch_size=8)
    assert not padded.packs and sorted(k for b in padded.batches for k in b) == [0, 1, 2, 3]
    assert common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2


def test_units_of_different_questions_share_one_pass():
    """The linear layers do not care which question a token answers: under a budget that holds them all,
    three groups and a lone sequence run as one forward pass, each group's prefix still run once."""
    seqs, groups = [], []
    for g in range(3):
        pre = list(range(1000 * g, 1000 * g + 40))
        for a in range(4):
            seqs.append(pre + [g * 100 + a] * (5 + a))
            groups.append(g)
    seqs.append([5] * 20)
    groups.append("lone")
    p = plan(seqs, groups, pad_id=None, packed=True, share=True, max_batch_tokens=4096, max_batch_size=64)
    assert len(p.packs) == 1 and len(p.shared) == 3
    assert p.computed_tokens == 3 * 40 + sum(len(s) - 40 for s in seqs[:12]) + 20
    tight = plan(seqs, groups, pad_id=None, packed=True, share=True, max_batch_tokens=100, max_batch_size=64)
    assert len(tight.packs) > 1 and all(sum(tight.unit_tokens(u) for u in pk) <= 100 for pk in tight.packs)


def test_prefix_stops_at_the_earliest_pooled_token():
    """A sequence ending in the pad id is read earlier; the shared prefix must not swallow that token."""
    pre = list(range(100, 130))
    seqs = [pre + [5, 0], pre + [5, 6, 7]]  # pad id 0: the first is read at position 30
    p = plan(seqs, ["q", "q"], pad_id=0, packed=True, share=True, max_batch_tokens=100, max_batch_size=8)
    assert p.shared[0].prefix == 30 and p.pools == [30, 32]


@pytest.mark.parametrize("name", ["qwen3-odd-96", "qwen3-odd-120", "qwen2-64", "llama-64"])
def test_shared_groups_equal_plain_scoring_on_every_architecture(model_dirs, humaneval, name):
    q = humaneval[7]["prompt"]
    codes = [(humaneval[i]["prompt"] + humaneval[i]["canonical_solution"]).strip() for i in (1, 2, 3, 9)]
    fast = RewardModel.from_pretrained(model_dirs[name], dtype="float32", max_batch_tokens=200)
    got = fast.score_code([q] * 4, codes)
    assert len(fast.last_plan.shared) > 1  # the group split over several passes, each running the prefix
    want = _plain(model_dirs[name], dtype="float32").score_code([q] * 4, codes)
    assert max(abs(a - b) for a, b in zip(got, want)) <= TOL


def test_eager_blocks_equal_plain_scoring(qwen3_dir, humaneval):
    qs, rs = _random_groups(humaneval, random.Random(11), groups=3)
    got = RewardModel.from_pretrained(qwen3_dir, dtype="float32", compile="off").score(qs, rs)
    want = _plain(qwen3_dir, dtype="float32").score(qs, rs)
    assert max(abs(a.reward - b.reward) for a, b in zip(got, want)) <= TOL
