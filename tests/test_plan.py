"""The planner changes no reward: shared, deduplicated, skip-invalid, batched scoring equals plain
one-item-at-a-time scoring bit for bit on the torch backend (and within 1e-4 on ONNX), on random
workloads and edge cases."""

from __future__ import annotations

import random

import pytest

from codescaler import RewardModel, tiny
from codescaler.plan import plan
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
    got, stats = fast.score_with_stats(qs, rs)
    want = _plain(qwen3_dir, dtype="float32").score(qs, rs)
    assert [r.status for r in got] == [r.status for r in want]
    assert [(r.raw_score, r.reward) for r in got] == [(r.raw_score, r.reward) for r in want]  # same bits
    assert stats.shared_prefixes, "the workload has groups, so some prefix must have been shared"
    assert stats.computed_tokens == fast.plan_for(qs, rs).computed_tokens


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
    assert [r.raw_score for r in got] == [r.raw_score for r in want]
    # The over-long question truncates all three answers away: one sequence, scored once.
    p = fast.plan_for(qs, rs)
    assert len({tuple(p.seqs[p.slot[i]]) for i in (4, 5, 6)}) == 1


def test_template_without_an_added_token_before_the_code_is_not_split(tmp_path, humaneval):
    """A template that glues the answer to the question has no added token to split at: the question's
    tokens are not a prefix of the full sequence, so nothing is shared, and scores still equal plain ones."""
    glued = "{%- for m in messages -%}{{- m.content -}}{%- endfor -%}"
    d = tiny.save_random_reward_model(tmp_path / "glued", chat_template=glued, seed=3)
    qs = ["Compute the sum of a list of integers, skipping the negative ones and counting zero once. Answer: x"] * 4
    rs = [fenced("yz = 1"), fenced("y = [1, 2]"), fenced("abc = 3"), fenced("_q = 4")]
    fast = RewardModel.from_pretrained(d, dtype="float32")
    tok = fast.encoder.tokenizer
    alone = tok(qs[0])["input_ids"]
    full = fast.encoder.encode(qs, [fast_code.code for fast_code in fast.score(qs, rs)])
    assert any(f[: len(alone)] != alone for f in full), "the fixture must tokenize across the boundary"
    assert fast.encoder.encode_split(qs, [r.code for r in fast.score(qs, rs)])[2] == [0] * 4
    (got, stats), want = fast.score_with_stats(qs, rs), _plain(d, dtype="float32").score(qs, rs)
    assert [a.raw_score for a in got] == [b.raw_score for b in want]
    assert not stats.shared_prefixes


def test_boundary_is_the_question_up_to_the_last_added_token(qwen3_dir, humaneval):
    """Qwen3's template: the prefix is everything up to ``</think>`` (the last added token before the code),
    the same for every answer to a question and for the question alone."""
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32")
    q = humaneval[0]["prompt"]
    codes = ["x = 1", "def f():\n    return 2", "\n\nprint('</think>')"]
    ids, _, bounds = m.encoder.encode_split([q] * 3, codes)
    think_end = m.encoder.tokenizer.convert_tokens_to_ids("</think>")
    assert bounds[0] == bounds[1] and ids[0][bounds[0] - 1] == think_end
    assert ids[0][: bounds[0]] == ids[1][: bounds[1]]
    # A pair the template renders itself (a think tag in the code) still splits inside the common part.
    assert 0 < bounds[2] <= bounds[0] and ids[2][: bounds[2]] == ids[0][: bounds[2]]


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
    bounds = [40, 40, 40, 0, 0, 40]
    p = plan(seqs, bounds, pad_id=0, packed=True, share=True, max_batch_tokens=64, max_batch_size=8)
    assert p.slot == [0, 0, 1, -1, 2, 3]
    assert all(u.prefix == len(pre) for u in p.shared)
    assert sorted(k for pk in p.packs for u in pk if u.prefix for k in u.members) == [0, 1, 3]
    assert [u.members for pack in p.packs for u in pack if not u.prefix] == [[2]]
    for pack in p.packs:  # the budget holds, except for a unit too large to split further
        assert sum(p.unit_tokens(u) for u in pack) <= 64 or (len(pack) == 1 and len(pack[0].members) == 1)
    unshared = plan(seqs, bounds, pad_id=0, packed=True, share=False, max_batch_tokens=64, max_batch_size=8)
    # Not shared, still split at the same boundary (that is what keeps the bits the same).
    assert sorted(u.prefix for pk in unshared.packs for u in pk) == [0, 40, 40, 40]
    assert all(len(u.members) == 1 for pk in unshared.packs for u in pk)
    assert unshared.computed_tokens > p.computed_tokens
    padded = plan(seqs, bounds, pad_id=0, packed=False, share=True, max_batch_tokens=64, max_batch_size=8)
    assert not padded.packs and sorted(k for b in padded.batches for k in b) == [0, 1, 2, 3]


def test_units_of_different_questions_share_one_pass():
    """The linear layers do not care which question a token answers: under a budget that holds them all,
    three groups and a lone sequence run as one forward pass, each group's prefix still run once."""
    seqs, bounds = [], []
    for g in range(3):
        pre = list(range(1000 * g, 1000 * g + 40))
        for a in range(4):
            seqs.append(pre + [g * 100 + a] * (5 + a))
            bounds.append(40)
    seqs.append([5] * 20)
    bounds.append(0)
    p = plan(seqs, bounds, pad_id=None, packed=True, share=True, max_batch_tokens=4096, max_batch_size=64)
    assert len(p.packs) == 1 and len(p.shared) == 3
    assert p.computed_tokens == 3 * 40 + sum(len(s) - 40 for s in seqs[:12]) + 20
    tight = plan(seqs, bounds, pad_id=None, packed=True, share=True, max_batch_tokens=100, max_batch_size=64)
    assert len(tight.packs) > 1 and all(sum(tight.unit_tokens(u) for u in pk) <= 100 for pk in tight.packs)


def test_a_boundary_past_the_pooled_token_is_none():
    """A question cut by truncation leaves no answer tokens: such a sequence is not split (and so is not
    shared), whatever else is planned with it; one read before its boundary likewise."""
    pre = list(range(100, 130))
    seqs = [pre[:20], pre + [5, 0], pre + [5, 6, 7]]  # pad id 0: the second is read at position 30
    p = plan(seqs, [30, 31, 30], pad_id=0, packed=True, share=True, max_batch_tokens=100, max_batch_size=8)
    assert p.pools == [19, 30, 32]
    assert sorted((u.prefix, tuple(u.members)) for pk in p.packs for u in pk) == [(0, (0,)), (0, (1,)), (30, (2,))]


@pytest.mark.parametrize("name", ["qwen3-odd-96", "qwen3-odd-120", "qwen2-64", "llama-64"])
def test_shared_groups_equal_plain_scoring_on_every_architecture(model_dirs, humaneval, name):
    q = humaneval[7]["prompt"]
    codes = [(humaneval[i]["prompt"] + humaneval[i]["canonical_solution"]).strip() for i in (1, 2, 3, 9)]
    fast = RewardModel.from_pretrained(model_dirs[name], dtype="float32", max_batch_tokens=200)
    got = fast.score_code([q] * 4, codes)
    p = fast.plan_for([q] * 4, [fenced(c) for c in codes])  # the group split over several passes, each running the prefix
    assert len(p.packs) > 1 and sum(1 for pk in p.packs for u in pk if u.prefix) > 1
    want = _plain(model_dirs[name], dtype="float32").score_code([q] * 4, codes)
    assert max(abs(a - b) for a, b in zip(got, want)) <= TOL


def test_eager_blocks_equal_plain_scoring(qwen3_dir, humaneval):
    qs, rs = _random_groups(humaneval, random.Random(11), groups=3)
    got = RewardModel.from_pretrained(qwen3_dir, dtype="float32", compile="off").score(qs, rs)
    want = _plain(qwen3_dir, dtype="float32").score(qs, rs)
    assert max(abs(a.reward - b.reward) for a, b in zip(got, want)) <= TOL
