"""GRPO with the CodeScaler reward computed in-process: two steps of a tiny policy on CPU."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("trl")

import torch

from conftest import fenced

torch.set_num_threads(1)


def test_reward_function_gives_the_published_reward(qwen3_dir, humaneval):
    from codescaler import RewardModel
    from codescaler.training.grpo import CodeScalerReward

    p = humaneval[0]
    code = p["prompt"] + p["canonical_solution"]
    reward = CodeScalerReward(qwen3_dir)
    prompts = [[{"role": "user", "content": p["prompt"] + "\nAnswer in Python."}]] * 2
    completions = [[{"role": "assistant", "content": fenced(code)}], [{"role": "assistant", "content": "no code"}]]
    got = reward(prompts, completions, question=[p["prompt"]] * 2)
    raw = RewardModel.from_pretrained(qwen3_dir).score_code([p["prompt"]], [code.strip()])[0]
    assert got[0] == pytest.approx(math.log1p(math.exp(raw)), rel=1e-6) and got[1] == 0.0
    fallback = reward(prompts, completions)  # no question column: the prompt's user turn is the question
    assert fallback == [r.reward for r in RewardModel.from_pretrained(qwen3_dir).score(
        [prompts[0][0]["content"]] * 2, [fenced(code), "no code"])]


def test_grpo_two_steps_with_a_tiny_policy(tmp_path, qwen3_dir):
    from codescaler.training.grpo_example import save_tiny_policy, train

    policy = save_tiny_policy(tmp_path / "policy")
    trainer, reward = train(policy, qwen3_dir, tmp_path / "out", max_steps=2, num_generations=2, batch_size=2,
                            max_completion_length=8, limit=4)
    assert trainer.state.global_step == 2
    assert reward.calls >= 2 and reward.last and all(r.status for r in reward.last)
    logged = [e for e in trainer.state.log_history if "rewards/codescaler/mean" in e]
    assert len(logged) == 2 and all("codescaler/valid_code" in e for e in logged)
