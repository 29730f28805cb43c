"""The ``codescaler`` command: score, demo, export, bench, train-rm."""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO, Iterator

from .errors import CodeScalerError, InputError

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


def _load(args) -> "RewardModel":  # noqa: F821
    from .model import RewardModel

    return RewardModel.from_pretrained(
        args.model, backend=args.backend, dtype=args.dtype, max_length=args.max_length, compile=args.compile
    )


def _records(lines: Iterator[str]) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line number, record or None, error or None) for each non-blank input line."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            yield n, None, f"line {n}: invalid JSON ({exc})"
            continue
        if not isinstance(rec, dict):
            yield n, None, f"line {n}: expected a JSON object, got {type(rec).__name__}"
            continue
        for field in ("question", "response"):
            if not isinstance(rec.get(field), str):
                got = "missing" if field not in rec else type(rec[field]).__name__
                yield n, rec, f"line {n}: field {field!r} must be a string ({got})"
                break
        else:
            yield n, rec, None


def score_file(model, src: IO[str], dst: IO[str], *, chunk: int = 512, progress: bool | None = None) -> int:
    """Stream a JSONL file through ``model.score_iter``: one output line per input record, in input order.

    Malformed records become error records in place. Returns the number of error records written.
    """
    from collections import deque

    from tqdm import tqdm

    pending: deque = deque()  # records read ahead by score_iter, in input order
    errors = 0
    bar = tqdm(unit="resp", disable=None if progress is None else not progress, file=sys.stderr)

    def good_pairs():
        for n, rec, err in _records(src):
            pending.append((rec, err))
            if err is None:
                yield rec["question"], rec["response"]

    def write(rec, err, reward=None):
        nonlocal errors
        out = {"id": rec.get("id") if isinstance(rec, dict) else None}
        if err is None:
            out.update(reward=reward.reward, raw_score=reward.raw_score, status=reward.status)
        else:
            errors += 1
            out.update(reward=None, raw_score=None, status="input_error", error=err)
        dst.write(json.dumps(out, ensure_ascii=False) + "\n")
        bar.update(1)

    for reward in model.score_iter(good_pairs(), chunk_items=chunk):
        while pending[0][1] is not None:
            write(*pending.popleft())
        write(*pending.popleft(), reward)
    while pending:
        write(*pending.popleft())
    dst.flush()
    bar.close()
    return errors


def cmd_score(args) -> int:
    # Open both files before the (slow) model load so a wrong path fails at once.
    try:
        src = open(args.input, encoding="utf-8") if args.input != "-" else sys.stdin
    except OSError as exc:
        raise InputError(f"{args.input}: cannot read ({exc.strerror})") from exc
    try:
        dst = open(args.output, "w", encoding="utf-8") if args.output != "-" else sys.stdout
    except OSError as exc:
        src.close()
        raise InputError(f"{args.output}: cannot write ({exc.strerror})") from exc
    with src, dst:
        errors = score_file(_load(args), src, dst)
    if errors:
        print(f"codescaler: {errors} input line(s) could not be scored; see their error records", file=sys.stderr)
    return 0


def cmd_demo(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from .model import RewardModel

    console = Console()
    if args.model is None:
        from .tiny import tiny_model_dir

        with console.status("building the embedded tiny model (random Qwen3, real Qwen vocabulary)..."):
            args.model = str(tiny_model_dir())
        note = "embedded tiny model: random weights, so the scores show the pipeline, not judgement"
    else:
        note = f"model: {args.model}"
    model = RewardModel.from_pretrained(args.model, dtype=args.dtype, max_length=args.max_length,
                                        compile=args.compile)
    labels = [label for label, _ in DEMO_RESPONSES]
    pick = model.best_of_n(DEMO_QUESTION, [resp for _, resp in DEMO_RESPONSES])
    table = Table(title="Max subarray sum: Best-of-3", caption=note)
    for col in ("candidate", "status", "raw score", "reward", ""):
        table.add_column(col)
    for i, (label, r) in enumerate(zip(labels, pick.details)):
        raw = "-" if r.raw_score is None else f"{r.raw_score:+.4f}"
        table.add_row(label, r.status, raw, f"{r.reward:.4f}", "best" if i == pick.index else "")
    console.print(table)
    return 0


def cmd_export(args) -> int:
    from codescaler.engine.export import export_onnx

    if args.format == "tensorrt":
        from codescaler.engine.tensorrt import build_tensorrt

        build_tensorrt(args.model, args.out, dtype=args.dtype or "float16", max_length=args.max_length)
        return 0
    export_onnx(args.model, args.out, dtype=args.dtype or "float32", quantize=args.quantize,
                max_length=args.max_length)
    return 0


def cmd_bench(args) -> int:
    from codescaler.benchmarks.bench_score import main as bench

    workloads = ("grpo", "bon") if args.workload == "all" else (args.workload,)
    sizes = tuple(int(x) for x in args.batch_sizes.split(","))
    bench(workloads, dtype=args.dtype, batch_sizes=sizes, trl=not args.no_trl, model=args.model, threads=args.threads)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codescaler", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def model_opts(p, required: bool):
        p.add_argument("--model", required=required, default=None,
                       help="Hugging Face reward-model folder (e.g. a downloaded LARK-Lab/CodeScaler-1.7B) "
                       "or an engine directory from `codescaler export`")
        p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx", "tensorrt"))
        p.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                       help="default: bfloat16 on CUDA and on CPUs with fast bfloat16 matmuls, else float32")
        p.add_argument("--compile", action="store_true",
                       help="fuse the elementwise work with torch.compile (one-off compile, then faster)")
        p.add_argument("--max-length", type=int, default=None,
                       help="right-truncation length in tokens (default 4096, or the engine's)")

    p = sub.add_parser("score", help="score a JSONL file of {id, question, response} lines")
    model_opts(p, required=True)
    p.add_argument("--input", required=True, help="input JSONL ('-' for stdin)")
    p.add_argument("--output", required=True, help="output JSONL ('-' for stdout)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("export", help="export a reward model to an engine directory (ONNX, or TensorRT on GPUs)")
    p.add_argument("--model", required=True, help="Hugging Face reward-model folder")
    p.add_argument("--out", required=True, help="engine directory to write")
    p.add_argument("--format", default="onnx", choices=("onnx", "tensorrt"))
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                   help="graph dtype (default float32 for ONNX, float16 for TensorRT)")
    p.add_argument("--quantize", default=None, choices=("int8",), help="dynamic int8 weights (CPU)")
    p.add_argument("--max-length", type=int, default=4096, help="longest sequence the engine accepts")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("bench", help="time this engine against the model-card and TRL-style baselines")
    p.add_argument("--workload", default="all", choices=("all", "grpo", "bon"))
    p.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    p.add_argument("--batch-sizes", default="4,8,16", help="model-card baseline batch sizes to try")
    p.add_argument("--no-trl", action="store_true", help="skip the one-padded-batch TRL-style baseline")
    p.add_argument("--model", default=None, help="reward-model folder (default: a random hidden-512 Qwen3)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.set_defaults(func=cmd_bench)

    from codescaler.training.cli import add_train_rm_parser

    add_train_rm_parser(sub)

    p = sub.add_parser("demo", help="score the max-subarray example (embedded tiny model by default)")
    model_opts(p, required=False)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        return args.func(args)
    except CodeScalerError as exc:
        print(f"codescaler: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
