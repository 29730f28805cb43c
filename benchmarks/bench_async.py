"""Asynchronous RL traffic against ``codescaler serve``: a GRPO step sent one sample per request.

    python -m codescaler.benchmarks.bench_async [--shape bench|1.7b] [--layers 4] [--clients 32] [--reps 2]

The step is ``workloads.grpo_step`` (16 questions x 8 responses, HumanEval-derived). The reference is the
whole step scored in one ``RewardModel.score`` call in this process (empty question cache, reward cache
off; best of ``--reps``). Against it, a fresh server per run receives the 128 samples as 128 one-item
``/v1/rewards`` requests from ``--clients`` concurrent clients in random order (each client sends its
next sample when the previous one is answered, as a rollout worker does), while another client polls
``/health`` every 20 ms. Reported per server mode (the model in its own process, the default, and on a
thread of the server process, ``--no-model-process``):

- wall: first request sent to last answer, vs the one-call time (target <= 1.2x);
- model: the server's summed model-call seconds (``codescaler_model_call_seconds_sum``), vs the same;
- question prefixes computed (prefix-cache misses; 16 means each group's question ran once) and hits;
- /health latency p50/p99/max during the run (target p99 <= 100 ms);
- whether every reward equals the one-call reward bit for bit.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codescaler import RewardModel

    from .workloads import Workload


def reference(m: RewardModel, reps: int, workload: Workload, calls: int = 1) -> tuple[float, list[float]]:
    """Best-of-``reps`` seconds to score the step in ``calls`` calls in this process (a random split, the
    question cache emptied first), and the rewards in the step's order."""
    best, rewards = float("inf"), None
    n = len(workload.responses)
    for rep in range(reps):
        if m.prefix_cache is not None:
            m.prefix_cache.clear()
        order = list(range(n))
        random.Random(rep).shuffle(order)
        got = [None] * n
        t = time.perf_counter()
        for c in range(calls):
            part = order if calls == 1 else order[c::calls]
            for i, r in zip(part, m.score([workload.questions[i] for i in part], [workload.responses[i] for i in part])):
                got[i] = r.reward
        best = min(best, time.perf_counter() - t)
        rewards = got
    return best, rewards


async def arrive(url: str, pairs: list[tuple[int, str, str]], clients: int) -> tuple[float, dict, list[float]]:
    """Send each pair as its own request; return wall seconds, reward by index, /health latencies."""
    import httpx

    got: dict[int, float] = {}
    health: list[float] = []
    done = asyncio.Event()
    queues = [pairs[k::clients] for k in range(clients)]

    async def client(mine: list[tuple[int, str, str]]) -> None:
        async with httpx.AsyncClient(timeout=600) as http:
            for index, question, response in mine:
                while True:
                    r = await http.post(url + "/v1/rewards", json={"items": [{"question": question, "response": response}]})
                    if r.status_code == 503:
                        await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                        continue
                    r.raise_for_status()
                    got[index] = r.json()["results"][0]["reward"]
                    break

    async def poll() -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            while not done.is_set():
                t = time.perf_counter()
                r = await http.get(url + "/health")
                health.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
                await asyncio.sleep(0.02)

    poller = asyncio.ensure_future(poll())
    started = time.perf_counter()
    await asyncio.gather(*(client(q) for q in queues))
    seconds = time.perf_counter() - started
    done.set()
    await poller
    return seconds, got, health


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m codescaler.benchmarks.bench_async", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="bench", choices=("bench", "1.7b"))
    p.add_argument("--layers", type=int, default=None, help="for --shape 1.7b: how many of its 28 layers")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--modes", default="process,thread", help="server modes to run: process, thread")
    args = p.parse_args(argv)

    from tokenizers import Tokenizer

    from codescaler import tiny

    from .bench_score import bench_model_dir
    from .bench_serve import ServerProcess
    from .workloads import grpo_step

    path = bench_model_dir(args.shape, args.layers)
    w = grpo_step(Tokenizer.from_file(str(tiny.qwen_tokenizer_json())))
    from codescaler import RewardModel

    model = RewardModel.from_pretrained(path, dtype=args.dtype, reward_cache="off")
    one, want = reference(model, args.reps, w)
    print(f"GRPO step {w.groups}x{w.group_size}, {args.shape} shape"
          f"{f' ({args.layers} layers)' if args.layers else ''}, {args.dtype}: one call {one:.2f} s (best of {args.reps})", flush=True)
    print(f"{'server mode':<16} {'wall s':>7} {'x one call':>10} {'model s':>8} {'x one call':>10} {'calls':>5} "
          f"{'alone':>9} {'q computed':>10} {'q hits':>6} {'health p50':>10} {'p99':>7} {'max':>7} {'same bits':>9}")
    print("(alone: the same number of calls in this process, no HTTP, no clients, x one call; q computed "
          "includes the server's two warm-up questions)")
    for mode in args.modes.split(","):
        flags = ["--dtype", args.dtype, "--reward-cache", "off", "--timeout", "600"]
        flags += ["--no-model-process"] if mode == "thread" else []
        for rep in range(args.reps):
            pairs = list(enumerate(zip(w.questions, w.responses)))
            random.Random(rep).shuffle(pairs)
            server = ServerProcess(str(path), flags)
            try:
                server.wait_healthy()
                wall, got, health = asyncio.run(arrive(server.url, [(i, q, r) for i, (q, r) in pairs], args.clients))
                m = server.metrics()
            finally:
                server.stop()
            busy = m.get("codescaler_model_call_seconds_sum", float("nan"))
            calls = int(m.get("codescaler_model_call_seconds_count", 0))
            alone, _ = reference(model, 1, w, calls)
            same = all(got[i] == want[i] for i in range(len(want)))
            print(f"{mode:<16} {wall:>7.2f} {wall / one:>9.2f}x {busy:>8.2f} {busy / one:>9.2f}x {calls:>5} "
                  f"{alone / one:>8.2f}x "
                  f"{m.get('codescaler_prefix_cache_misses_total', m.get('codescaler_prefix_cache_misses', 0)):>10.0f} "
                  f"{m.get('codescaler_prefix_cache_hits_total', m.get('codescaler_prefix_cache_hits', 0)):>6.0f} "
                  f"{1000 * statistics.median(health):>8.1f}ms {1000 * pct(health, 0.99):>5.0f}ms "
                  f"{1000 * max(health):>5.0f}ms {str(same):>9}  (slowest /health: poll {health.index(max(health)) + 1} "
                  f"of {len(health)})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
