"""``codescaler bench``: this engine timed against the model card's usage and a TRL-style padded batch;
the workloads and the runner are in :mod:`codescaler.benchmarks.bench_score`."""

from __future__ import annotations

import argparse


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(_positive(x) for x in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive batch sizes, got {text!r}") from None


# At the real shape a model-card run at batch 4 takes minutes per workload; 8, 16 and TRL's one padded
# batch (128 responses at once: gigabytes of activations) would add most of an hour per round. Batch 4 is
# the card's best batch on both CPU kinds measured.
DEFAULTS = {"bench": ((4, 8, 16), True), "1.7b": ((4,), False)}


def cmd_bench(args: argparse.Namespace) -> int:
    # Imported here: the benchmarks load HumanEval's workloads and torch when they run, and neither
    # `codescaler --help` nor `score` should pay for the modules (codescaler.tiny: tempfile, base64).
    from codescaler.benchmarks.bench_score import main as bench

    from ..tiny import resolve_model

    workloads = ("grpo", "bon") if args.workload == "all" else (args.workload,)
    sizes, trl = DEFAULTS[args.shape]
    sizes = sizes if args.batch_sizes is None else args.batch_sizes
    trl = trl if args.trl is None else args.trl
    model = None if args.model is None else resolve_model(args.model)
    bench(workloads, dtype=args.dtype, batch_sizes=sizes, trl=trl, model=model, threads=args.threads,
          shape=args.shape, layers=args.layers, repeats=args.repeats)
    return 0


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time this engine against the model-card and TRL-style baselines",
                       description="Time a HumanEval-derived GRPO step and a Best-of-16 request on this engine "
                       "against the model card's usage and a TRL-style padded batch, every system timed round-robin; "
                       "prints the CPU and its features, the GEMM peak on the model's own layer shapes (before "
                       "and after), and per system the best and median time and the share of that peak.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", default="all", choices=("all", "grpo", "bon"),
                   help="GRPO step (16 questions x 8 responses), Best-of-16, or both (default: all)")
    p.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"),
                   help="dtype of every timed path, baselines included (default: bfloat16)")
    p.add_argument("--batch-sizes", type=_sizes, default=None,
                   help="model-card baseline batch sizes to try, comma-separated (default: 4,8,16 at --shape "
                        "bench; 4 at 1.7b, the card's best there, where each larger size adds tens of minutes)")
    p.add_argument("--trl", action=argparse.BooleanOptionalAction, default=None,
                   help="time TRL-style one padded batch of every response too (default: on at --shape bench, "
                        "off at 1.7b, where that batch takes gigabytes and tens of minutes)")
    p.add_argument("--model", default=None, help="'tiny' or a reward-model folder (default: a random Qwen3 of --shape)")
    p.add_argument("--shape", default="bench", choices=("bench", "1.7b"),
                   help="the random model's layer dimensions: 'bench' (hidden 512, 8 layers) or '1.7b' "
                        "(CodeScaler-1.7B's: hidden 2048, intermediate 6144, 16/8 heads, head_dim 128)")
    p.add_argument("--layers", type=int, default=None,
                   help="layers of the random model (default: 8 for bench, 4 of the 28 for 1.7b)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--repeats", type=_positive, default=3, metavar="N",
                   help="timed runs of every path, interleaved (one run of each path, then again); the "
                        "tables show each path's best and median wall time and all N (default: 3)")
    p.set_defaults(func=cmd_bench)
