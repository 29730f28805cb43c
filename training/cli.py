"""``codescaler train-rm``: argument parsing only; trl, torch and datasets are imported when the command runs."""

from __future__ import annotations

import argparse


def cmd_train_rm(args: argparse.Namespace) -> int:
    from .train import TrainOptions, train_reward_model

    data = args.data
    if data == "humaneval":
        from .humaneval_pairs import humaneval_pairs

        data, stats = humaneval_pairs()
        print(f"HumanEval pairs: {data} ({stats.kept} failing mutants kept of {stats.generated} run, "
              f"{stats.survived} survived the tests, over {stats.problems_used} problems)")
    options = TrainOptions(
        eval_fraction=args.eval_fraction, unaligned_ratio=args.unaligned_ratio, epochs=args.epochs,
        max_steps=args.max_steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
        learning_rate=args.lr, max_length=args.max_length, center_rewards_coefficient=args.center_rewards,
        lora_r=args.lora_r, gradient_checkpointing=args.gradient_checkpointing, precision=args.precision,
        train_embeddings=args.train_embeddings, save_steps=args.save_steps, resume=args.resume,
        logging_steps=args.logging_steps, seed=args.seed,
    )
    from codescaler.tiny import resolve_model

    train_reward_model(resolve_model(args.base), data, args.out, eval_data=args.eval_data, options=options)
    return 0


def add_train_rm_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-rm", help="train a reward model on preference pairs (Bradley-Terry, TRL)",
                       description="Fine-tune a one-label reward model on preference pairs with TRL's "
                       "RewardTrainer; the output folder is what every --model takes.")
    p.add_argument("--base", required=True, help="Hugging Face one-label *ForSequenceClassification folder, or 'tiny'")
    p.add_argument("--data", required=True,
                   help="pairs: JSONL or Parquet, CodeScalerPair columns (question_content, code_pos, code_neg "
                   "[, margin]) or TRL conversational chosen/rejected; 'humaneval' builds the offline HumanEval "
                   "canonical-vs-failing-mutant pairs")
    p.add_argument("--eval-data", default=None, help="held-out pairs (default: split --eval-fraction of the "
                   "questions of --data)")
    p.add_argument("--out", required=True, help="output model folder (checkpoints in OUT/checkpoints)")
    p.add_argument("--eval-fraction", type=float, default=0.1, help="share of questions held out")
    p.add_argument("--unaligned-ratio", type=float, default=0.3,
                   help="unaligned pairs added per aligned pair (negative: valid code for another question)")
    p.add_argument("--epochs", type=float, default=1.0, help="passes over the training pairs (default 1)")
    p.add_argument("--max-steps", type=int, default=-1,
                   help="stop after this many optimizer steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=8, help="pairs per device step")
    p.add_argument("--grad-accum", type=int, default=1, help="device steps per optimizer step (default 1)")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (default 1e-4)")
    p.add_argument("--max-length", type=int, default=4096, help="right-truncation length, as the scorer's")
    p.add_argument("--center-rewards", type=float, default=None, metavar="COEF",
                   help="center_rewards_coefficient: penalise (r_chosen + r_rejected)^2")
    p.add_argument("--lora-r", type=int, default=0, help="LoRA rank (0: full fine-tuning)")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute activations in the backward pass: less memory, ~30%% more time")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                   help="auto: bf16 on CUDA devices that support it, else fp32")
    p.add_argument("--train-embeddings", action="store_true",
                   help="also train the token embedding (frozen by default without LoRA)")
    p.add_argument("--save-steps", type=int, default=0,
                   help="checkpoint and evaluate every N steps (default: every epoch)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT/checkpoints")
    p.add_argument("--logging-steps", type=int, default=10, help="print training loss every N steps")
    p.add_argument("--seed", type=int, default=0, help="seed for data splits, sampling and initialisation")
    p.set_defaults(func=cmd_train_rm)
