"""The ``codescaler`` command: score, demo, export, bench, train-rm, serve."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import IO

from . import __version__
from . import options as opts
from .errors import CodeScalerError, InputError, require_extra
from .eval.cli import add_eval_parser
from .integrations import ray_data
from .model import RewardModel
from .options import MODEL_HELP, add_arguments, from_args
from .serve.cli import add_serve_parser
from .training.cli import add_train_rm_parser
# Imported inside the commands that need them: codescaler.engine (export; torch, onnx), codescaler.benchmarks
# and codescaler.tiny (tempfile, base64), so that `codescaler --help` and `score` load none of them.
from .records import INTERRUPTED, ScoreSummary, dumps, interrupted_summary, records, replaced_on_success

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


SCORE_FORMAT = """\
input: JSON Lines, one object per line with string fields "question" and "response" (any other fields,
such as "id", are allowed; "id" is echoed). Lines are decoded one by one as UTF-8 (a byte-order mark on
line 1 is accepted).

output: exactly one JSON line per input line, in input order:
  {"id": ..., "reward": float, "raw_score": float|null, "status": "ok"|"no_block"|..., "truncated": bool}
A line that cannot be scored (not UTF-8, blank, not JSON, not an object, a missing or non-string field,
a question, response or id that is not valid Unicode, e.g. a lone surrogate escape "\\ud800") gets
{"id": ..., "reward": null, "raw_score": null, "status": "input_error", "error": "line N: ..."}; "id"
is null when the line has no readable id.
A summary (counts, backend and dtype) goes to stderr; the model is loaded only if some line can be scored.
The output is written to OUTPUT.part and renamed to OUTPUT when every line is in it: an error or an
interrupt (Ctrl-C, exit status 130) leaves no output file, only a one-line summary of what was scored.
"""

def score_file(model, src: IO[bytes], dst: IO[str], *, chunk: int = 512, progress: bool | None = None,
               options: dict | None = None, summary: ScoreSummary | None = None) -> ScoreSummary:
    """Stream JSONL bytes through ``model.score_iter``: one output line per input line, in input order.

    ``model`` is a :class:`RewardModel` or a zero-argument callable returning one; it is called only
    when the first scorable line arrives, so a file of errors (or an empty one) never loads a model.
    Undecodable, blank and malformed lines become error records in place. ``options`` are per-call
    options passed to ``score_iter``. ``summary``, when given, is filled in as lines are written (so a
    caller interrupted midway knows how far the run got).
    """
    from collections import deque

    from tqdm import tqdm

    pending: deque = deque()  # records read ahead by score_iter, in input order
    summary = ScoreSummary() if summary is None else summary
    bar = tqdm(unit="line", disable=None if progress is None else not progress, file=sys.stderr)

    def write(rec, err, reward=None):
        out = {"id": rec.get("id") if isinstance(rec, dict) else None}
        if err is None:
            out.update(reward=reward.reward, raw_score=reward.raw_score, status=reward.status,
                       truncated=reward.truncated)
            summary.ok += reward.status == "ok"
            summary.no_code += reward.status != "ok"
            summary.truncated += reward.truncated
        else:
            summary.errors += 1
            out.update(reward=None, raw_score=None, status="input_error", error=err)
        summary.lines += 1
        dst.write(dumps(out) + "\n")
        bar.update(1)

    lines = records(iter(src))
    first = None
    for _n, rec, err in lines:  # lines before the first scorable one need no model
        if err is None:
            first = rec
            break
        write(rec, err)
    if first is not None:
        if callable(model) and not hasattr(model, "score_iter"):
            model = model()
        summary.model = model.describe()

        def good_pairs():
            pending.append((first, None))
            yield first["question"], first["response"]
            for _n, rec, err in lines:
                pending.append((rec, err))
                if err is None:
                    yield rec["question"], rec["response"]

        for reward in model.score_iter(good_pairs(), chunk_items=chunk, **(options or {})):
            while pending[0][1] is not None:
                write(*pending.popleft())
            write(*pending.popleft(), reward)
        while pending:
            write(*pending.popleft())
        cache = getattr(model, "reward_cache", None)
        if cache is not None:
            summary.reward_cache = cache.summary()
    dst.flush()
    bar.close()
    return summary


@contextlib.contextmanager
def _open_io(args):
    """Open input (binary) and output before the slow model load, so a wrong path fails at once; the
    output is written under a temporary name and renamed when complete (:func:`replaced_on_success`)."""
    if args.input != "-" and args.output != "-" and os.path.exists(args.output):
        try:
            if os.path.samefile(args.input, args.output):
                raise InputError(f"{args.output}: is also the input; writing it would destroy the input")
        except OSError:
            pass
    try:
        src = open(args.input, "rb") if args.input != "-" else sys.stdin.buffer
    except OSError as exc:
        raise InputError(f"{args.input}: cannot read ({exc.strerror})") from exc
    with src, (replaced_on_success(args.output) if args.output != "-" else contextlib.nullcontext("-")) as name:
        try:
            dst = open(name, "w", encoding="utf-8") if name != "-" else sys.stdout
        except OSError as exc:
            raise InputError(f"{args.output}: cannot write ({exc.strerror})") from exc
        with dst:
            yield src, dst


def cmd_score(args) -> int:
    import time

    if ray_data.wanted(args):
        return ray_data.cmd_score(args)

    chosen = opts.from_args(args)
    per_call = {k: v for k, v in chosen.items() if k in opts.PER_CALL}
    load = {k: v for k, v in chosen.items() if k not in opts.PER_CALL}
    opts.checked(chosen)  # a bad value fails before any file is touched

    def load_model():
        return RewardModel.from_pretrained(args.model, **load)

    started = time.perf_counter()
    where = "stdout" if args.output == "-" else args.output
    summary = ScoreSummary()
    try:
        with _open_io(args) as (src, dst):
            score_file(load_model, src, dst, options=per_call, summary=summary)
    except KeyboardInterrupt:
        print(interrupted_summary(summary.lines, "line", where), file=sys.stderr)
        return INTERRUPTED
    took = time.perf_counter() - started
    if summary.lines == 0:
        print(f"codescaler: {args.input} is empty; wrote an empty {where} (the model was not loaded)",
              file=sys.stderr)
        return 0
    parts = [f"{summary.ok} ok", f"{summary.no_code} without valid code", f"{summary.errors} input error(s)",
             f"{summary.truncated} truncated"]
    print(f"codescaler: {summary.lines} line(s) in {took:.1f} s -> {where}: {', '.join(parts)}", file=sys.stderr)
    print(f"codescaler: model {summary.model}" if summary.model else
          "codescaler: no line could be scored; the model was not loaded", file=sys.stderr)
    if summary.reward_cache:
        print(f"codescaler: reward cache {summary.reward_cache}", file=sys.stderr)
    if summary.errors:
        print("codescaler: lines with status input_error carry an 'error' naming the line and the problem",
              file=sys.stderr)
    return 0


def cmd_demo(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from .tiny import TINY, tiny_model_dir

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


def cmd_export(args) -> int:
    from codescaler.engine.export import export_onnx

    from .tiny import resolve_model

    args.model = resolve_model(args.model)
    if args.format == "tensorrt":
        from codescaler.engine.tensorrt import build_tensorrt

        build_tensorrt(args.model, args.out, dtype=args.dtype or "float16", max_length=args.max_length)
        return 0
    if args.format == "aoti":
        from codescaler.engine.export import export_aoti

        if args.quantize:
            raise InputError("--quantize applies to --format onnx")
        export_aoti(args.model, args.out, dtype=args.dtype, max_length=args.max_length)
        return 0
    export_onnx(args.model, args.out, dtype=args.dtype or "float32", quantize=args.quantize,
                max_length=args.max_length)
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def cmd_bench(args) -> int:
    from codescaler.benchmarks.bench_score import main as bench

    from .tiny import resolve_model

    workloads = ("grpo", "bon") if args.workload == "all" else (args.workload,)
    sizes = tuple(int(x) for x in args.batch_sizes.split(","))
    model = None if args.model is None else resolve_model(args.model)
    bench(workloads, dtype=args.dtype, batch_sizes=sizes, trl=not args.no_trl, model=model, threads=args.threads,
          shape=args.shape, layers=args.layers, repeats=args.repeats)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codescaler", description="Execution-free reward engine for code: extract the program from an LLM "
        "response, score it with a CodeScaler reward model, shape the score.",
        epilog="Run `codescaler COMMAND --help` for a command's options; `codescaler demo` to try it.")
    parser.add_argument("--version", action="version", version=f"codescaler {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help: str, description: str | None = None, epilog: str | None = None):
        return sub.add_parser(name, help=help, description=description or help, epilog=epilog,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = command("score", "score a JSONL file of {id, question, response} lines", epilog=SCORE_FORMAT)
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--input", required=True, help="input JSONL ('-' for stdin); with --ray also Parquet, a folder or a glob")
    p.add_argument("--output", required=True, help="output JSONL ('-' for stdout); with --ray also Parquet (.parquet)")
    add_arguments(p)
    ray_data.add_ray_arguments(p)
    p.set_defaults(func=cmd_score)

    p = command("demo", "score the max-subarray example (embedded tiny model by default)",
                "Best-of-3 on a max-subarray question: a correct program, a wrong one and an answer without code.")
    p.add_argument("--model", default="tiny", help=MODEL_HELP + " (default: tiny)")
    add_arguments(p)
    p.set_defaults(func=cmd_demo)

    p = command("export", "export a reward model to an engine directory (compiled, ONNX, or TensorRT on GPUs)",
                "Export a Hugging Face reward-model folder to an engine directory, loadable by every "
                "command's --model: manifest.json, the tokenizer and the model: the decoder blocks compiled "
                "by AOTInductor for this machine with the weights (aoti: loads in well under a second, "
                "nothing to compile), model.onnx (onnx) or a TensorRT plan (tensorrt).")
    p.add_argument("--model", required=True, help="'tiny' or a Hugging Face reward-model folder")
    p.add_argument("--out", required=True, help="engine directory to write")
    p.add_argument("--format", default="onnx", choices=("onnx", "aoti", "tensorrt"), help="engine kind (default: onnx)")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                   help="engine dtype (default: float32 for ONNX, float16 for TensorRT, this CPU's default "
                        "for aoti)")
    p.add_argument("--quantize", default=None, choices=("int8",), help="dynamic int8 weights (CPU)")
    p.add_argument("--max-length", type=int, default=4096, help="longest sequence the engine accepts (default 4096)")
    p.set_defaults(func=cmd_export)

    p = command("bench", "time this engine against the model-card and TRL-style baselines",
                "Time a HumanEval-derived GRPO step and a Best-of-16 request on this engine against the "
                "model card's usage and a TRL-style padded batch; prints a table with the matmul peak.")
    p.add_argument("--workload", default="all", choices=("all", "grpo", "bon"),
                   help="GRPO step (16 questions x 8 responses), Best-of-16, or both (default: all)")
    p.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"),
                   help="dtype of every timed path, baselines included (default: bfloat16)")
    p.add_argument("--batch-sizes", default="4,8,16", help="model-card baseline batch sizes to try")
    p.add_argument("--no-trl", action="store_true", help="skip the one-padded-batch TRL-style baseline")
    p.add_argument("--model", default=None, help="'tiny' or a reward-model folder (default: a random Qwen3 of --shape)")
    p.add_argument("--shape", default="bench", choices=("bench", "1.7b"),
                   help="the random model's layer dimensions: 'bench' (hidden 512, 8 layers) or '1.7b' "
                        "(CodeScaler-1.7B's: hidden 2048, intermediate 6144, 16/8 heads, head_dim 128)")
    p.add_argument("--layers", type=int, default=None,
                   help="layers of the random model (default: 8 for bench, 4 of the 28 for 1.7b)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--repeats", type=_positive, default=3, metavar="N",
                   help="timed runs of every path; the tables show the median wall time and the min-max of the N "
                        "(default: 3)")
    p.set_defaults(func=cmd_bench)

    add_train_rm_parser(sub)
    add_eval_parser(sub)
    add_serve_parser(sub)
    return parser


# What a command needs beyond the Quickstart's `pip install .`: checked before the command starts, so a
# missing extra is one line naming the install, not a traceback after a model load.
EXTRAS = {"serve": (("serve", ("fastapi", "uvicorn", "prometheus_client")),)}


def main(argv: list[str] | None = None) -> int:
    # Only what the user asked for on the terminal: no weight-loading bars or advisory warnings from
    # transformers (a user who wants them sets these variables).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        for extra, modules in EXTRAS.get(args.command, ()):
            require_extra(extra, modules, f"codescaler {args.command}")
        return args.func(args)
    except CodeScalerError as exc:
        print(f"codescaler: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # commands that write files say what they wrote themselves
        print("codescaler: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
