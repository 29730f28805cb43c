"""The reward cache's target: a second identical GRPO step costs <=5% of the first's time, in process and,
with the cache in Redis, in a second process (another replica) that never saw the step.

    python -m codescaler.benchmarks.bench_reward_cache [--shape bench] [--redis redis://127.0.0.1:6379/0]

The step is ``workloads.grpo_step`` (16 questions x 8 responses) on the bench-shape model. Each row is
one call's wall time (extraction, tokenization, cache lookups and the forward passes the cache leaves);
the first call of each model runs with empty caches (the question cache emptied too, so the first
step is a true first). Without ``--redis`` a throwaway ``redis-server`` is started on a free port. Every
second step's rewards are checked bit for bit against the first's.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _step(path: str | Path, dtype: str, cache: str, role: str) -> None:
    """Score the workload twice in this process; print one line per call: role, call, seconds, misses, hits."""
    from tokenizers import Tokenizer

    from codescaler import RewardModel, tiny

    from .workloads import grpo_step

    m = RewardModel.from_pretrained(path, dtype=dtype, reward_cache=cache)
    w = grpo_step(Tokenizer.from_file(str(tiny.qwen_tokenizer_json())))
    if m.prefix_cache is not None:
        m.prefix_cache.clear()
    got = []
    for call in ("first", "second"):
        t = time.perf_counter()
        rewards, stats = m.score_with_stats(w.questions, w.responses)
        seconds = time.perf_counter() - t
        got.append([(r.reward, r.raw_score) for r in rewards])
        c = m.reward_cache
        print(f"{role}\t{call}\t{seconds:.4f}\t{c.misses}\t{c.hits}\t{stats.computed_tokens}", flush=True)
    assert got[0] == got[1], "the second step's rewards differ from the first's"
    print(f"{role}\trewards\t{hashlib.sha256(repr(got[0]).encode()).hexdigest()}", flush=True)


def _redis() -> tuple[str, subprocess.Popen, str]:
    folder = tempfile.mkdtemp(prefix="bench-redis-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", folder], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    return f"redis://127.0.0.1:{port}/0", proc, folder


def _child(args: argparse.Namespace, cache: str, role: str) -> list[list[str]]:
    out = subprocess.run([sys.executable, "-m", "codescaler.benchmarks.bench_reward_cache", "--shape", args.shape,
                          "--dtype", args.dtype, "--child", cache, role], capture_output=True, text=True, check=True)
    return [line.split("\t") for line in out.stdout.splitlines() if "\t" in line]


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m codescaler.benchmarks.bench_reward_cache", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="bench", choices=("bench", "1.7b"))
    p.add_argument("--layers", type=int, default=None, help="for --shape 1.7b: how many of its 28 layers")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--redis", default=None, help="a Redis URL (default: start a throwaway redis-server)")
    p.add_argument("--child", nargs=2, metavar=("CACHE", "ROLE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    from .bench_score import bench_model_dir

    path = bench_model_dir(args.shape, args.layers)
    if args.child:
        _step(path, args.dtype, *args.child)
        return
    server = None
    url = args.redis
    if url is None:
        if shutil.which("redis-server") is None:
            sys.exit("redis-server not found: install Debian's redis-server or pass --redis URL")
        url, server, folder = _redis()
    try:
        rows = _child(args, "memory", "in-process")
        rows += _child(args, url, "replica 1 (redis)")
        rows += _child(args, url, "replica 2 (redis)")
    finally:
        if server is not None:
            server.kill()
            server.wait()
            shutil.rmtree(folder, ignore_errors=True)
    times = {(r[0], r[1]): float(r[2]) for r in rows if r[1] in ("first", "second")}
    sums = {r[0]: r[2] for r in rows if r[1] == "rewards"}
    first = times[("in-process", "first")]
    print(f"GRPO step 16x8, {args.shape} shape, {args.dtype}: time of each call vs the first step in process")
    print(f"{'process':<20} {'call':<7} {'seconds':>8} {'vs first':>9} {'misses':>7} {'hits':>5} {'tokens run':>10}")
    for r in rows:
        if r[1] in ("first", "second"):
            print(f"{r[0]:<20} {r[1]:<7} {float(r[2]):>8.3f} {100 * float(r[2]) / first:>8.1f}% {r[3]:>7} {r[4]:>5} "
                  f"{r[5]:>10}")
    print("same rewards in every process:", len(set(sums.values())) == 1)


if __name__ == "__main__":
    main()
