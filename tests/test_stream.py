"""score_groups, score_iter and answer-preserving truncation."""

from __future__ import annotations

import pytest

from codescaler import InputError, RewardModel
from conftest import fenced
from test_model import HFReference


def test_score_groups_equals_flat_score(qwen3_dir, humaneval):
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32")
    qs = [humaneval[i]["prompt"] for i in range(3)]
    groups = [[fenced("x = 1"), "none", fenced("y = 2")], [fenced("z = 3")], []]
    got = m.score_groups(qs, groups)
    assert [len(g) for g in got] == [3, 1, 0]
    flat = m.score([qs[0]] * 3 + [qs[1]], groups[0] + groups[1])
    assert [r.reward for g in got for r in g] == pytest.approx([r.reward for r in flat], abs=1e-6)
    with pytest.raises(InputError, match="one list per question"):
        m.score_groups(qs, groups[:2])


def test_score_iter_streams_in_order_across_chunks(qwen3_dir):
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32")
    pairs = [(f"question {i // 5}", fenced(f"x = {i}") if i % 7 else "no code") for i in range(53)]
    consumed = []

    def source():
        for p in pairs:
            consumed.append(p)
            yield p

    stream = m.score_iter(source(), chunk_items=8)
    first = next(stream)
    assert len(consumed) <= 9  # one chunk (plus the lookahead item), not the whole input
    got = [first, *stream]
    want = m.score([q for q, _ in pairs], [r for _, r in pairs])
    assert [r.code for r in got] == [r.code for r in want]
    assert [r.reward for r in got] == pytest.approx([r.reward for r in want], abs=1e-5)


def test_question_truncation_keeps_the_code_whole(qwen3_dir, humaneval):
    long_q = "\n".join(p["prompt"] for p in humaneval[:12])
    code = (humaneval[20]["prompt"] + humaneval[20]["canonical_solution"]).strip()
    right = RewardModel.from_pretrained(qwen3_dir, dtype="float32", max_length=384)
    keep = RewardModel.from_pretrained(qwen3_dir, dtype="float32", max_length=384, truncation="question")
    r_ids = right.encoder.encode([long_q], [code])[0]
    k_ids = keep.encoder.encode([long_q], [code])[0]
    code_ids = right.encoder.tokenizer(code, add_special_tokens=False)["input_ids"]
    assert len(r_ids) == 384 and 300 < len(k_ids) <= 384
    assert not _contains(r_ids, code_ids[:20])  # right truncation cut the code away entirely
    assert _contains(k_ids, code_ids[-20:])  # question truncation kept its end
    # the score is the model's on the shortened conversation, exactly
    tok = keep.encoder.tokenizer
    text = tok.decode(k_ids)
    ref = HFReference(qwen3_dir)
    want = ref.model(**tok(text, return_tensors="pt")).logits[0, 0].item()
    assert keep.score_code([long_q], [code])[0] == pytest.approx(want, abs=1e-5)
    # short conversations are untouched by the option
    assert keep.encoder.encode(["q"], ["x = 1"]) == right.encoder.encode(["q"], ["x = 1"])


def _contains(seq, sub):
    return any(seq[i:i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))
