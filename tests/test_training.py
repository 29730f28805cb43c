"""Reward-model training: data preparation, the sandboxed HumanEval pairs, TRL training, export and scoring."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")

import torch

from codescaler import RewardModel, tiny
from codescaler.training.data import Pair, prepare_pairs, read_pairs, split_by_question, tokenize_pairs
from codescaler.training.humaneval_pairs import build_pairs, mutants
from codescaler.training.sandbox import check_program
from codescaler.training.train import TrainOptions, pairwise_metrics, scorer_encoder, train_reward_model

from conftest import fenced, write_jsonl

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def he_pairs(humaneval) -> tuple[list[dict], object]:
    """Canonical-vs-failing-mutant rows for 16 HumanEval problems, built in the sandbox."""
    return build_pairs(humaneval[:16], per_problem=3, seed=0)


@pytest.fixture(scope="session")
def rm_base(tmp_path_factory):
    d = tmp_path_factory.mktemp("train-base")
    tiny.save_random_reward_model(d, hidden_size=64, num_hidden_layers=2, seed=3)
    return d


def _pairs(rows) -> list[Pair]:
    return [Pair(r["question_content"], r["code_pos"], r["code_neg"]) for r in rows]


# -- mutants (the sandbox itself: tests/test_sandbox.py) -------------------------------------------------


def test_mutants_are_single_edits_that_parse(humaneval):
    import ast
    import difflib

    p = humaneval[0]
    program = p["prompt"] + p["canonical_solution"]
    found = mutants(p["prompt"], p["canonical_solution"])
    assert len(found) >= 5
    for label, text in found:
        ast.parse(text)
        assert text != program and text.startswith(p["prompt"])
        changed = [d for d in difflib.ndiff(program.splitlines(), text.splitlines()) if d[:1] in "+-"]
        assert 1 <= len(changed) <= 2, label


def test_humaneval_pairs_keep_only_failing_mutants(humaneval, he_pairs):
    rows, stats = he_pairs
    assert stats.problems_used == 16 and stats.kept == len(rows) > 16
    assert stats.generated == stats.kept + stats.survived
    by_id = {p["task_id"]: p for p in humaneval}
    for row in rows[:6]:  # re-run independently: the positive passes, the kept negative fails
        p = by_id[row["task_id"]]
        assert check_program(row["code_pos"], p["test"], p["entry_point"]).passed
        assert not check_program(row["code_neg"], p["test"], p["entry_point"]).passed


# -- data ------------------------------------------------------------------------------------------------


def test_training_tokens_equal_the_scorers(rm_base, he_pairs, humaneval):
    """Features fed to the trainer are, token for token, what RewardModel scores (and what the template
    itself renders), including right truncation."""
    pairs = _pairs(he_pairs[0][:12])
    for max_length in (4096, 60):
        ds = tokenize_pairs(pairs, scorer_encoder(rm_base, max_length))
        scorer = RewardModel.from_pretrained(rm_base, max_length=max_length).encoder
        qs = [p.question for p in pairs]
        assert ds["chosen_ids"] == scorer.encode(qs, [p.chosen for p in pairs])
        assert ds["rejected_ids"] == scorer.encode(qs, [p.rejected for p in pairs])
        tok = scorer.tokenizer
        for p, ids in zip(pairs, ds["chosen_ids"]):
            text = tok.apply_chat_template([{"role": "user", "content": p.question},
                                            {"role": "assistant", "content": p.chosen}], tokenize=False)
            assert ids == tok(text, truncation=True, max_length=max_length)["input_ids"]
    assert max(len(x) for x in ds["chosen_ids"]) == 60


def test_trl_conversational_rows_are_extracted_like_responses(tmp_path, rm_base, humaneval):
    p = humaneval[2]
    good, bad = p["prompt"] + p["canonical_solution"], p["prompt"] + "    return 0\n"
    row = {"chosen": [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": fenced(good)}],
           "rejected": [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": fenced(bad)}]}
    split = {"prompt": row["chosen"][:1], "chosen": row["chosen"][1:], "rejected": row["rejected"][1:]}
    path = write_jsonl(tmp_path / "trl.jsonl", [row, split])
    pairs = read_pairs(path)
    train, held, report = prepare_pairs(pairs, unaligned_ratio=0.0, eval_fraction=0.0)
    assert report.duplicates == 1 and len(train) == 1 and not held  # both rows are the same pair
    model = RewardModel.from_pretrained(rm_base)
    ds = tokenize_pairs(train, scorer_encoder(rm_base, 4096))
    scored = model.score([p["prompt"]] * 2, [fenced(good), fenced(bad)])
    assert [r.code for r in scored] == [train[0].chosen, train[0].rejected]
    assert ds["chosen_ids"][0] == model.encoder.encode([p["prompt"]], [scored[0].code])[0]


def test_prepare_drops_invalid_and_duplicates_and_reports_counts(humaneval):
    pairs = []
    for p in humaneval[:10]:
        pos = p["prompt"] + p["canonical_solution"]
        pairs.append(Pair(p["prompt"], pos, p["prompt"] + "    return None\n"))
    pairs += [pairs[0], pairs[1]]  # duplicates
    pairs.append(Pair("q", "def f(:\n  pass", "x = 1"))  # chosen does not parse
    pairs.append(Pair("q", "x = 1", "Use a loop.\n```python\na = 1\n```\n```python\nb = 2\n```"))  # two blocks
    train, held, report = prepare_pairs(pairs, unaligned_ratio=0.5, eval_fraction=0.2, seed=1)
    assert (report.read, report.invalid, report.duplicates) == (14, 2, 2)
    assert report.pairs == {"train": len(train), "eval": len(held)}
    assert report.unaligned["train"] == round(0.5 * 8) and report.unaligned["eval"] == round(0.5 * 2)
    assert any("dropped 2 without valid code" in line for line in report.lines())


def test_split_is_by_question_and_unaligned_stay_inside_their_split(he_pairs):
    pairs = _pairs(he_pairs[0])
    train, held, _ = prepare_pairs(pairs, unaligned_ratio=0.3, eval_fraction=0.25, seed=0)
    train_q, held_q = {p.question for p in train}, {p.question for p in held}
    assert train_q and held_q and not train_q & held_q
    assert len(held_q) == round(16 * 0.25)
    for split in (train, held):
        own = {p.question: p.chosen for p in split if p.kind == "aligned"}
        positives = {p.chosen for p in split if p.kind == "aligned"}
        unaligned = [p for p in split if p.kind == "unaligned"]
        assert unaligned
        for p in unaligned:
            assert p.rejected in positives and p.rejected != own[p.question]
    a, b = split_by_question(pairs, 0.25, seed=0)
    assert {p.question for p in b} == held_q and len(a) + len(b) == len(pairs)


def test_reads_parquet_and_names_bad_rows(tmp_path, he_pairs):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = he_pairs[0][:5]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pairs.parquet")
    assert read_pairs(tmp_path / "pairs.parquet") == _pairs(rows)
    bad = write_jsonl(tmp_path / "bad.jsonl", [rows[0], {"question_content": "q", "code_pos": 1, "code_neg": "x"}])
    from codescaler.errors import InputError

    with pytest.raises(InputError, match=r"bad.jsonl:2: field 'code_pos'"):
        read_pairs(bad)


# -- training --------------------------------------------------------------------------------------------


def _quiet(*_):
    pass


def test_loss_falls_and_training_resumes_from_a_checkpoint(tmp_path, rm_base, he_pairs):
    from codescaler.cli import main

    data = write_jsonl(tmp_path / "pairs.jsonl", he_pairs[0])
    opts = TrainOptions(eval_fraction=0.25, unaligned_ratio=0.3, max_steps=16, batch_size=4, learning_rate=2e-3,
                        max_length=384, logging_steps=1, save_steps=8, seed=0)
    out = tmp_path / "rm"
    first = train_reward_model(rm_base, data, out, options=opts, log=_quiet)
    assert first.global_step == first.steps_run == 16
    assert sum(first.losses[-4:]) / 4 < sum(first.losses[:4]) / 4
    assert {e["kind"] for e in first.eval_history} == {"aligned", "unaligned"}
    assert set(first.held_out) == set(first.held_out_base) == {"aligned", "unaligned", "all"}
    assert (out / "checkpoints" / "checkpoint-16").is_dir()

    # The command continues the same run from checkpoint-16 and takes only the new steps.
    rc = main(["train-rm", "--base", str(rm_base), "--data", str(data), "--out", str(out), "--eval-fraction", "0.25",
               "--max-steps", "20", "--batch-size", "4", "--lr", "2e-3", "--max-length", "384", "--save-steps", "4",
               "--resume"])
    assert rc == 0
    summary = json.loads((out / "training_summary.json").read_text())
    assert (summary["global_step"], summary["steps_run"]) == (20, 4)

    # The output is a plain HF folder the scorer loads; it ranks as pairwise_metrics reports.
    model = RewardModel.from_pretrained(out)
    assert set(pairwise_metrics(model, _pairs(he_pairs[0][:4]))) >= {"aligned", "all"}


def test_lora_run_writes_a_merged_plain_model(tmp_path, rm_base, he_pairs):
    opts = TrainOptions(max_steps=2, batch_size=2, max_length=256, lora_r=4, gradient_checkpointing=True,
                        eval_fraction=0.0, unaligned_ratio=0.0)
    out = tmp_path / "lora"
    train_reward_model(rm_base, _pairs(he_pairs[0][:8]), out, options=opts, log=_quiet)
    assert not (out / "adapter_config.json").exists()
    model = RewardModel.from_pretrained(out)
    assert len(model.score_code(["q"], ["x = 1"])) == 1


def test_train_export_score_rank_pairs_the_same(tmp_path, rm_base, he_pairs):
    from codescaler.engine.export import export_onnx

    opts = TrainOptions(eval_fraction=0.25, max_steps=6, batch_size=4, learning_rate=2e-3, max_length=384)
    out = tmp_path / "rm"
    result = train_reward_model(rm_base, _pairs(he_pairs[0]), out, options=opts, log=_quiet)
    _, held, _ = prepare_pairs(_pairs(he_pairs[0]), eval_fraction=0.25, seed=0)
    export_onnx(out, tmp_path / "engine", max_length=384, log=_quiet)
    torch_model = RewardModel.from_pretrained(out, dtype="float32", max_length=384)
    engine = RewardModel.from_pretrained(tmp_path / "engine")
    qs = [p.question for p in held]

    def scores(model):
        return model.score_code(qs, [p.chosen for p in held]), model.score_code(qs, [p.rejected for p in held])

    (t_pos, t_neg), (e_pos, e_neg) = scores(torch_model), scores(engine)
    decided = [i for i in range(len(held)) if abs(t_pos[i] - t_neg[i]) > 1e-4]
    assert len(decided) > len(held) // 2
    assert [t_pos[i] > t_neg[i] for i in decided] == [e_pos[i] > e_neg[i] for i in decided]
    assert pairwise_metrics(engine, held)["all"]["accuracy"] == pytest.approx(result.held_out["all"]["accuracy"],
                                                                                abs=1.5 / len(held))
