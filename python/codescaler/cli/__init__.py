"""The ``codescaler`` command: one module per subcommand, each adding its parser (score, demo, export,
bench here; train-rm, eval and serve beside the code they run, in ``codescaler.training.cli``,
``codescaler.eval.cli`` and ``codescaler.serve.cli``). Every module imports its heavy dependencies inside
its command, so ``codescaler --help`` loads none of them."""

from __future__ import annotations

import argparse
import os
import sys

from ..version import __version__
from ..errors import CodeScalerError, require_extra
from ..eval.cli import add_eval_parser
from ..records import INTERRUPTED
from ..serve.cli import add_serve_parser
from ..training.cli import add_train_rm_parser
from .bench import add_bench_parser
from .demo import add_demo_parser
from .export import add_export_parser
from .score import add_score_parser

# In the order `codescaler --help` lists them.
SUBCOMMANDS = (add_score_parser, add_demo_parser, add_export_parser, add_bench_parser, add_train_rm_parser,
               add_eval_parser, add_serve_parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codescaler", description="Execution-free reward engine for code: extract the program from an LLM "
        "response, score it with a CodeScaler reward model, shape the score.",
        epilog="Run `codescaler COMMAND --help` for a command's options; `codescaler demo` to try it.")
    parser.add_argument("--version", action="version", version=f"codescaler {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add_parser in SUBCOMMANDS:
        add_parser(sub)
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
