"""``codescaler score``: a JSON Lines file of (question, response) records in, one reward record per line
out, in input order (``--ray`` hands the same options to :mod:`codescaler.integrations.ray_data`)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import IO, Any, Callable, Iterator

from .. import options as opts
from ..errors import InputError
from ..integrations import ray_data
from ..model import Reward, RewardModel
from ..records import (INTERRUPTED, ScoreSummary, dumps, input_error, interrupted_summary, records,
                       replaced_on_success)

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


def score_file(model: RewardModel | Callable[[], RewardModel], src: IO[bytes], dst: IO[str], *, chunk: int = 512,
               progress: bool | None = None, options: dict[str, Any] | None = None,
               summary: ScoreSummary | None = None) -> ScoreSummary:
    """Stream JSONL bytes through ``model.score_iter``: one output line per input line, in input order.

    ``model`` is a :class:`RewardModel` or a zero-argument callable returning one; it is called only
    when the first scorable line arrives, so a file of errors (or an empty one) never loads a model.
    Undecodable, blank and malformed lines become error records in place. ``options`` are per-call
    options passed to ``score_iter``. ``summary``, when given, is filled in as lines are written (so a
    caller interrupted midway knows how far the run got).
    """
    from collections import deque

    # Imported here: tqdm adds ~50 ms to every start-up of the command, `codescaler --help` included.
    from tqdm import tqdm

    pending: deque[tuple[dict | None, str | None]] = deque()  # records read ahead by score_iter, in input order
    summary = ScoreSummary() if summary is None else summary
    bar = tqdm(unit="line", disable=None if progress is None else not progress, file=sys.stderr)

    def write(rec: dict | None, err: str | None, reward: Reward | None = None) -> None:
        out = {"id": rec.get("id") if isinstance(rec, dict) else None,
               **(reward.as_dict() if err is None else input_error(err))}
        summary.add(out["status"], out.get("truncated"))
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

        def good_pairs() -> Iterator[tuple[str, str]]:
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
def _open_io(args: argparse.Namespace) -> Iterator[tuple[IO[bytes], IO[str]]]:
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


def cmd_score(args: argparse.Namespace) -> int:
    if ray_data.wanted(args):
        return ray_data.cmd_score(args)

    chosen = opts.from_args(args)
    per_call, load = opts.split(chosen)  # checked: a bad value fails before any file is touched

    def load_model() -> RewardModel:
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


def add_score_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score a JSONL file of {id, question, response} lines",
                       description="score a JSONL file of {id, question, response} lines", epilog=SCORE_FORMAT,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help=opts.MODEL_HELP)
    p.add_argument("--input", required=True, help="input JSONL ('-' for stdin); with --ray also Parquet, a folder or a glob")
    p.add_argument("--output", required=True, help="output JSONL ('-' for stdout); with --ray also Parquet (.parquet)")
    opts.add_arguments(p)
    ray_data.add_ray_arguments(p)
    p.set_defaults(func=cmd_score)
