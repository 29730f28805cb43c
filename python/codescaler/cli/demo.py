"""``codescaler demo``: Best-of-3 on one question, printed as a table; the embedded tiny model by default,
so it runs on a fresh install with no model folder."""

from __future__ import annotations

import argparse

from ..model import RewardModel
from ..options import MODEL_HELP, add_arguments, from_args

DEMO_QUESTION = (
    "Given an integer array nums, find the contiguous subarray (containing at least one number) "
    "which has the largest sum and return its sum.\n\n"
    "Example: nums = [-2,1,-3,4,-1,2,1,-5,4] -> 6, because [4,-1,2,1] has the largest sum 6.\n"
    "Write a Python function max_subarray_sum(nums)."
)
DEMO_RESPONSES = (
    (
        "correct (Kadane)",
        "Keep the best sum ending at each position.\n\n```python\n"
        "def max_subarray_sum(nums):\n"
        "    best = cur = nums[0]\n"
        "    for x in nums[1:]:\n"
        "        cur = max(x, cur + x)\n"
        "        best = max(best, cur)\n"
        "    return best\n```\n",
    ),
    (
        "wrong (sum of positives)",
        "Just add up the positive numbers.\n\n```python\n"
        "def max_subarray_sum(nums):\n"
        "    return sum(x for x in nums if x > 0)\n```\n",
    ),
    (
        "no code block",
        "Use Kadane's algorithm: track the best sum ending here and the best overall.",
    ),
)


def cmd_demo(args: argparse.Namespace) -> int:
    # Imported here: rich adds ~70 ms to every start-up of the command; codescaler.tiny (tempfile, base64)
    # is needed only for the embedded model.
    from rich.console import Console
    from rich.table import Table

    from ..tiny import TINY, tiny_model_dir

    console = Console()
    if args.model == TINY:
        with console.status("building the embedded tiny model (random Qwen3, real Qwen vocabulary)..."):
            tiny_model_dir()
        note = "embedded tiny model: random weights, so the scores show the pipeline, not judgement"
    else:
        note = f"model: {args.model}"
    model = RewardModel.from_pretrained(args.model, **from_args(args))
    labels = [label for label, _ in DEMO_RESPONSES]
    pick = model.best_of_n(DEMO_QUESTION, [resp for _, resp in DEMO_RESPONSES])
    table = Table(title="Max subarray sum: Best-of-3")
    for col in ("candidate", "status", "raw score", "reward", ""):
        table.add_column(col)
    for i, (label, r) in enumerate(zip(labels, pick.details)):
        raw = "-" if r.raw_score is None else f"{r.raw_score:+.4f}"
        table.add_row(label, r.status, raw, f"{r.reward:.4f}", "best" if i == pick.index else "")
    console.print(table)
    # Under the table, not as its caption: a caption wraps to the table's width, mid-phrase.
    console.print(f"{note}; {model.backend_name}, {model.dtype}", soft_wrap=True, highlight=False)
    return 0


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="score the max-subarray example (embedded tiny model by default)",
                       description="Best-of-3 on a max-subarray question: a correct program, a wrong one and an "
                       "answer without code.", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny", help=MODEL_HELP + " (default: tiny)")
    add_arguments(p)
    p.set_defaults(func=cmd_demo)
