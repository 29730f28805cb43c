"""RewardModel with the torch backend against Hugging Face's own forward at float32."""

from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import codescaler
from codescaler import InputError, ModelLoadError, RewardModel, TemplateError, shape, tiny
from conftest import SHAPES, fenced

TOL = 1e-5


class HFReference:
    """The model card's usage: apply_chat_template, tokenize, AutoModelForSequenceClassification."""

    def __init__(self, path, max_length=4096):
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
        self.max_length = max_length

    def text(self, q, code):
        return self.tok.apply_chat_template(
            [{"role": "user", "content": q}, {"role": "assistant", "content": code}], tokenize=False)

    @torch.no_grad()
    def one(self, q, code) -> float:
        enc = self.tok(self.text(q, code), return_tensors="pt", truncation=True, max_length=self.max_length)
        return self.model(**enc).logits[0, 0].item()

    @torch.no_grad()
    def padded(self, qs, codes, side) -> list[float]:
        self.tok.padding_side = side
        enc = self.tok([self.text(q, c) for q, c in zip(qs, codes)], return_tensors="pt", padding=True,
                       truncation=True, max_length=self.max_length)
        return self.model(**enc).logits[:, 0].tolist()


def _pairs(humaneval, n, seed=0):
    rng = random.Random(seed)
    probs = rng.sample(humaneval, n)
    return [p["prompt"] for p in probs], [(p["prompt"] + p["canonical_solution"]).strip() for p in probs]


@pytest.mark.parametrize("name", list(SHAPES))
def test_raw_scores_equal_hf_float32(model_dirs, humaneval, name):
    path = model_dirs[name]
    qs, codes = _pairs(humaneval, 12, seed=len(name))
    codes[3] = codes[2]  # a duplicate, scored once
    m = RewardModel.from_pretrained(path, backend="torch", dtype="float32")
    ref = HFReference(path)
    got = m.score_code(qs, codes)
    want = [ref.one(q, c) for q, c in zip(qs, codes)]
    assert max(abs(a - b) for a, b in zip(got, want)) <= TOL
    # HF's own padded batches, both padding sides, agree with the same numbers.
    for side in ("right", "left"):
        assert max(abs(a - b) for a, b in zip(ref.padded(qs, codes, side), want)) <= TOL


@pytest.mark.parametrize("max_length", [16, 57, 300])
def test_right_truncation_matches_hf(qwen3_dir, humaneval, max_length):
    qs, codes = _pairs(humaneval, 6, seed=max_length)
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32", max_length=max_length)
    ref = HFReference(qwen3_dir, max_length=max_length)
    got = m.score_code(qs, codes)
    want = [ref.one(q, c) for q, c in zip(qs, codes)]
    assert max(abs(a - b) for a, b in zip(got, want)) <= TOL
    lengths = [len(ids) for ids in m.encoder.encode(qs, codes)]
    assert max(lengths) == max_length  # truncation happened, and never past max_length


def test_sequence_ending_in_the_pad_id_pools_like_hf(qwen3_dir):
    """A literal <|endoftext|> (the pad id) cut by truncation: HF reads the score one token earlier."""
    ref = HFReference(qwen3_dir)
    q, code = "q", "s = '<|endoftext|>' + 'tail'"
    ids = ref.tok(ref.text(q, code))["input_ids"]
    cut = ids.index(151643) + 1  # keep the pad-id token as the last one
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32", max_length=cut)
    ref.max_length = cut
    assert m.score_code([q], [code])[0] == pytest.approx(ref.one(q, code), abs=TOL)


def test_score_extracts_shapes_and_skips_invalid(qwen3_dir, humaneval):
    qs, codes = _pairs(humaneval, 4, seed=3)
    responses = [fenced(codes[0]), "I would loop over it.", fenced('print "py2"'), fenced(codes[3]),
                 fenced(codes[0])]
    questions = qs + [qs[0]]
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32")
    ref = HFReference(qwen3_dir)
    got = m.score(questions, responses)
    assert [r.status for r in got] == ["ok", "no_block", "syntax_error", "ok", "ok"]
    assert [r.raw_score is None for r in got] == [False, True, True, False, False]
    assert got[1].reward == got[2].reward == 0.0
    for i in (0, 3, 4):
        raw = ref.one(questions[i], got[i].code)
        assert got[i].raw_score == pytest.approx(raw, abs=TOL)
        assert got[i].reward == pytest.approx(shape(raw, True), abs=TOL)
    # score_empty runs the model on the empty answer as upstream does; the reward stays 0
    again = m.score(questions, responses, score_empty=True)
    assert again[1].raw_score == pytest.approx(ref.one(questions[1], ""), abs=TOL)
    assert again[1].reward == 0.0


def test_best_of_n_picks_highest_reward(qwen3_dir, humaneval):
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32")
    q = humaneval[0]["prompt"]
    cands = [fenced((humaneval[i]["prompt"] + humaneval[i]["canonical_solution"]).strip()) for i in range(6)]
    cands.append("no code at all")
    pick = m.best_of_n(q, cands)
    assert len(pick.rewards) == 7 and pick.rewards[-1] == 0.0
    assert pick.index == max(range(7), key=lambda i: pick.rewards[i])
    assert pick.rewards == [r.reward for r in m.score([q] * 7, cands)]


def test_hostile_responses_end_as_statuses(qwen3_dir):
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32")
    hostile = ["```python\n" + "(" * 10_000_000 + "\n```", "```python\nx = 1\x00\n```",
               "```python\nx = " + "[" * 1000 + "]" * 1000 + "\n```"]
    got = m.score(["q"] * 3, hostile)
    assert [r.status for r in got] == ["code_too_long", "syntax_error", "syntax_error"]  # 10 MB: over MAX_CODE_BYTES
    assert [r.reward for r in got] == [0.0] * 3


def test_bad_arguments_are_typed(qwen3_dir):
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32")
    with pytest.raises(TypeError, match=r"responses\[1\] must be str"):
        m.score(["q", "q"], ["```\nx=1\n```", None])
    with pytest.raises(TypeError, match="questions must be a sequence"):
        m.score("q", ["x"])
    with pytest.raises(InputError, match="2 items but responses has 1"):
        m.score(["q", "q"], ["x"])
    with pytest.raises(InputError, match="backend 'tpu'"):
        RewardModel.from_pretrained(qwen3_dir, backend="tpu")
    with pytest.raises(ValueError, match="dtype 'int4'"):
        RewardModel.from_pretrained(qwen3_dir, dtype="int4")


def _edit_config(src, dst, **changes):
    import shutil

    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(changes)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_bad_model_folders_name_the_problem(qwen3_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        RewardModel.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match="no classification head"):
        RewardModel.from_pretrained(_edit_config(qwen3_dir, tmp_path / "lm", architectures=["Qwen3ForCausalLM"]))
    with pytest.raises(ModelLoadError, match="num_labels is 2"):
        RewardModel.from_pretrained(_edit_config(qwen3_dir, tmp_path / "two", id2label={"0": "a", "1": "b"},
                                                 label2id={"a": 0, "b": 1}))
    no_tpl = _edit_config(qwen3_dir, tmp_path / "notpl")
    (no_tpl / "chat_template.jinja").unlink()
    with pytest.raises(TemplateError, match="no chat_template"):
        RewardModel.from_pretrained(no_tpl)


def test_weights_without_score_head(tmp_path):
    """A causal-LM checkpoint relabelled as a classifier: the head would be random, so refuse."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(vocab_size=tiny.QWEN3_VOCAB_SIZE, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16)
    Qwen3ForCausalLM(cfg).save_pretrained(tmp_path)
    tiny.save_qwen_tokenizer(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.update(architectures=["Qwen3ForSequenceClassification"], num_labels=1)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="no score head"):
        RewardModel.from_pretrained(tmp_path)


def test_public_contract_names():
    for name in ("extract", "extract_batch", "shape", "RewardModel", "Reward", "BestOfN", "Extraction"):
        assert hasattr(codescaler, name)


def test_score_with_stats_returns_what_its_own_call_ran(qwen3_dir):
    """Statistics come back with the rewards (not as state read afterwards): a second call served by the
    reward cache reports no forward pass, and the rewards are score()'s."""
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32")
    qs = ["Add one.", "Add one.", "Add one.", "Print it."]
    rs = [fenced("x = 1"), fenced("y = 2"), "no code", fenced("x = 1")]
    rewards, stats = m.score_with_stats(qs, rs)
    assert [r.raw_score is None for r in rewards] == [False, False, True, False]
    assert stats.item_tokens[2] == 0 and all(stats.item_tokens[i] > 0 for i in (0, 1, 3))
    assert (stats.passes, stats.shared_prefixes, stats.padded_tokens, stats.reward_cache_hits) == (1, 1, 0, 0)
    assert stats.computed_tokens == m.plan_for(qs, rs).computed_tokens > 0
    again, cached = m.score_with_stats(qs, rs)
    assert [(r.reward, r.raw_score) for r in again] == [(r.reward, r.raw_score) for r in rewards]
    assert (cached.passes, cached.computed_tokens, cached.reward_cache_hits) == (0, 0, 3)
    assert [(r.reward, r.raw_score) for r in m.score(qs, rs)] == [(r.reward, r.raw_score) for r in rewards]
