"""The CodeScaler reward as a TRL ``GRPOTrainer`` reward function, computed in-process by this package's engine.

GRPO hands the function every completion of a step with the dataset's other columns; the reward reads the
original question from a ``question`` column (falling back to the prompt's last user turn), extracts the
program from each completion and scores it with :class:`codescaler.RewardModel` — one forward per unique
valid answer, each question's prefix computed once per group — so the policy gets exactly the published
reward: 0.0 without valid code, else softplus(raw score).
"""

from __future__ import annotations

from pathlib import Path


def _text(message) -> str:
    """A completion or prompt as plain text: the last message's content when conversational."""
    if isinstance(message, list):
        return message[-1]["content"] if message else ""
    return message


def _question(prompt) -> str:
    if isinstance(prompt, list):
        users = [m["content"] for m in prompt if m.get("role") == "user"]
        return users[-1] if users else ""
    return prompt


class CodeScalerReward:
    """``reward(prompts, completions, question=None, **kw) -> list[float]`` for ``GRPOTrainer(reward_funcs=...)``."""

    __name__ = "codescaler"  # the name TRL logs the reward under (rewards/codescaler/mean)

    def __init__(self, model, *, policy: str = "codescaler"):
        if isinstance(model, (str, Path)):
            from codescaler.model import RewardModel

            model = RewardModel.from_pretrained(model)
        self.model = model
        self.policy = policy
        self.calls = 0
        self.last = []  # the Reward objects of the latest call, for logging and inspection

    def __call__(self, prompts, completions, question=None, **kwargs) -> list[float]:
        questions = list(question) if question is not None else [_question(p) for p in prompts]
        rewards = self.model.score(questions, [_text(c) for c in completions], policy=self.policy)
        self.calls += 1
        self.last = rewards
        log_metric = kwargs.get("log_metric")
        if log_metric is not None and rewards:
            log_metric("codescaler/valid_code", sum(r.status == "ok" for r in rewards) / len(rewards))
        return [r.reward for r in rewards]
