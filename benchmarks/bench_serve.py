"""Load test of ``codescaler serve`` on loopback: cross-request batching on and off, against in-process scoring.

Starts its own server subprocess per mode (and stops it), then runs C concurrent clients x R requests of
mixed shapes built from HumanEval text: GRPO groups of 8 split in halves across two clients (sent at
the same step), Best-of-4 requests, reranks of 4 and a few invalid bodies (expected to get 422). A 503
is retried after its Retry-After. Every reward the server returns is compared with the same pair scored
in-process. Also times one small request (a rerank of 4) over HTTP against the same call in-process.

    python -m codescaler.benchmarks.bench_serve [--model tiny] [--clients 200] [--requests 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

GROUP = 8
# Shorter than the GRPO-step workload's (100-800 and 50-1000) so 4,000 requests run in about a minute per mode
# on 2 cores; per-request overhead, which batching across requests removes, weighs more on short items.
QUESTION_TOKENS = (30, 120)
PROGRAM_TOKENS = (8, 90)
KINDS = (("grpo", 0.70), ("bon", 0.15), ("rerank", 0.12), ("invalid", 0.03))
INVALID = (b'{"items": [{"question": "q", "response": ', b'{"items": [{"question": 1, "response": "r"}]}',
           b'{"groups": [{"question": "q"}]}')


@dataclass
class Request:
    path: str
    body: bytes
    pairs: list[tuple[str, str]]      # (question, response) scored, in the order the answer lists them
    kind: str


@dataclass
class Load:
    label: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    answered: int = 0
    items: int = 0                    # responses in the answered requests
    lost: int = 0
    why_lost: dict = field(default_factory=dict)   # HTTP status or error name -> count
    refused: int = 0                  # 503 answers (each retried)
    got: dict = field(default_factory=dict)   # (question, response) -> reward
    metrics: dict = field(default_factory=dict)


def _pool(seed: int, groups: int) -> list[tuple[str, list[str]]]:
    from tokenizers import Tokenizer

    from codescaler import tiny

    from .workloads import grpo_step

    tok = Tokenizer.from_file(str(tiny.qwen_tokenizer_json()))
    w = grpo_step(tok, questions=groups, group=GROUP, seed=seed, question_tokens=QUESTION_TOKENS,
                  answer_tokens=PROGRAM_TOKENS)
    return [(w.questions[i], w.responses[i:i + GROUP]) for i in range(0, len(w.responses), GROUP)]


def plan_requests(clients: int, requests: int, seed: int = 0, pool_groups: int = 48) -> list[list[Request]]:
    """Per client, its requests in order. Clients 2p and 2p+1 draw the same kind at each step; for
    "grpo" they send the two halves of one group. Every request's question is unique (a task number
    is prepended), so nothing is deduplicated across requests."""
    pool = _pool(seed, pool_groups)
    rng = random.Random(seed)
    plan: list[list[Request]] = [[] for _ in range(clients)]
    serial = 0

    def draw() -> tuple[str, list[str]]:
        nonlocal serial
        serial += 1
        question, responses = pool[rng.randrange(len(pool))]
        return f"Task {serial}. {question}", responses

    for _step in range(requests):
        for pair in range(0, clients, 2):
            kind = rng.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
            members = range(pair, min(pair + 2, clients))
            if kind == "grpo":
                q, responses = draw()
                halves = (responses[:GROUP // 2], responses[GROUP // 2:]) if len(members) == 2 else (responses,)
                for c, half in zip(members, halves):
                    body = {"groups": [{"question": q, "responses": half}]}
                    plan[c].append(Request("/v1/rewards", json.dumps(body).encode(), [(q, r) for r in half], kind))
                continue
            for c in members:
                q, responses = draw()
                if kind == "invalid":
                    plan[c].append(Request("/v1/rewards", rng.choice(INVALID), [], kind))
                    continue
                texts = rng.sample(responses, 4)
                body = {"question": q, "candidates": texts} if kind == "bon" else {"query": q, "documents": texts}
                path = "/v1/best_of_n" if kind == "bon" else "/v1/rerank"
                plan[c].append(Request(path, json.dumps(body).encode(), [(q, r) for r in texts], kind))
    return plan


def _rewards(req: Request, body: dict) -> list[float]:
    """The rewards of ``req.pairs`` in order, from the endpoint's answer."""
    if req.path == "/v1/rewards":
        return [r["reward"] for r in body["results"][0]]
    if req.path == "/v1/best_of_n":
        return body["rewards"]
    by_index = {r["index"]: r["relevance_score"] for r in body["results"]}
    return [by_index[i] for i in range(len(req.pairs))]


def _die_with_parent() -> None:
    """In the server's process: ask Linux to end it when the benchmark ends, however that happens."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ServerProcess:
    def __init__(self, model: str, flags: list[str]) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="bench-serve-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, "-m", "codescaler.cli", "serve", "--model", model,
                                      "--port", str(self.port), *flags], stdout=subprocess.DEVNULL, stderr=self.log,
                                     preexec_fn=_die_with_parent)

    def wait_healthy(self, seconds: float = 300) -> None:
        import httpx

        deadline = time.monotonic() + seconds
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"the server did not start:\n{open(self.log.name).read()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)

    def metrics(self) -> dict[str, float]:
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        out: dict[str, float] = {}
        for family in text_string_to_metric_families(httpx.get(self.url + "/metrics", timeout=10).text):
            for s in family.samples:
                if not s.labels:
                    out[s.name] = s.value
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        os.unlink(self.log.name)


async def run_load(url: str, plan: list[list[Request]], label: str, time_limit: float) -> Load:
    import httpx

    load = Load(label)
    stop_at = time.monotonic() + time_limit

    def lose(why: str) -> None:
        load.lost += 1
        load.why_lost[why] = load.why_lost.get(why, 0) + 1

    async def client(requests: list[Request], http: httpx.AsyncClient) -> None:
        for req in requests:
            started = time.perf_counter()
            while True:
                if time.monotonic() > stop_at:
                    lose("time limit")
                    break
                try:
                    r = await http.post(url + req.path, content=req.body, headers={"Content-Type": "application/json"})
                except httpx.HTTPError as exc:
                    lose(type(exc).__name__)
                    break
                if r.status_code == 503:
                    load.refused += 1
                    await asyncio.sleep(min(float(r.headers.get("Retry-After", "1")), 1.0))
                    continue
                if r.status_code != (422 if req.kind == "invalid" else 200):
                    lose(str(r.status_code))
                    break
                load.answered += 1
                load.items += len(req.pairs)
                load.latencies.append(time.perf_counter() - started)
                if req.pairs:
                    load.got.update(zip(req.pairs, _rewards(req, r.json())))
                break

    async def connected_client(requests: list[Request]) -> None:
        # One connection per client, as separate processes would have: a pool shared by 200 clients
        # spends more CPU on its own bookkeeping than the server spends on HTTP.
        async with httpx.AsyncClient(timeout=httpx.Timeout(time_limit), limits=one) as http:
            await client(requests, http)

    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    started = time.perf_counter()
    await asyncio.gather(*(connected_client(reqs) for reqs in plan))
    load.seconds = time.perf_counter() - started
    return load


def small_request_ms(url: str, question: str, docs: list[str], reps: int) -> float:
    """p50 of one rerank of ``docs`` over HTTP, one at a time on a kept-alive connection."""
    import httpx

    body = json.dumps({"query": question, "documents": docs}).encode()
    times = []
    with httpx.Client(timeout=60) as http:
        for i in range(reps + 3):
            t = time.perf_counter()
            r = http.post(url + "/v1/rerank", content=body, headers={"Content-Type": "application/json"})
            if i >= 3:  # the first calls open the connection
                times.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
    return 1000 * statistics.median(times)


def serve_mode(model: str, flags: list[str], plan: list[list[Request]], label: str, small: tuple[str, list[str]], reps: int, time_limit: float) -> tuple[Load, float]:
    server = ServerProcess(model, flags)
    try:
        server.wait_healthy()
        small_ms = small_request_ms(server.url, *small, reps)
        before = server.metrics()
        load = asyncio.run(run_load(server.url, plan, label, time_limit))
        after = server.metrics()
        load.metrics = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    finally:
        server.stop()
    return load, small_ms


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m codescaler.benchmarks.bench_serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny", help="'tiny' (default), a reward-model folder or an engine directory")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                   help="server and in-process dtype (default: float32, so rewards can be compared exactly)")
    p.add_argument("--threads", type=int, default=1,
                   help="model threads, server and in-process alike (default: 1, leaving a core of a small "
                   "machine to HTTP and to the load generator)")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--requests", type=int, default=20, help="requests per client")
    p.add_argument("--window-ms", type=float, default=5.0, help="batch window of the batching run (default: 5)")
    p.add_argument("--small-reps", type=int, default=50, help="repetitions of the single small request")
    p.add_argument("--time-limit", type=float, default=600, help="seconds per load run before giving up")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from codescaler import RewardModel
    from codescaler.tiny import resolve_model

    model = str(resolve_model(args.model))
    plan = plan_requests(args.clients, args.requests, args.seed)
    requests = [r for reqs in plan for r in reqs]
    pairs = list(dict.fromkeys(pair for r in requests for pair in r.pairs))
    items = sum(len(r.pairs) for r in requests)
    small_q, small_responses = _pool(args.seed + 1, 1)[0]
    small_docs = small_responses[:4]
    small = (small_q, small_docs)
    print(f"{args.clients} clients x {args.requests} requests = {len(requests)} requests, {items} items "
          f"({sum(r.kind == 'invalid' for r in requests)} invalid bodies); model {args.model}, {args.dtype}, "
          f"{args.threads} model thread(s)",
          file=sys.stderr)

    # The server's own deadline is the run's: a request that waits long under load is slow, not lost.
    # No reward cache: the repeated small requests would be answered from it.
    common = ["--dtype", args.dtype, "--threads", str(args.threads), "--timeout", str(args.time_limit),
              "--reward-cache", "off"]
    runs = []
    for label, flags in ((f"server, batching ({args.window_ms:g} ms window)", ["--batch-window-ms", str(args.window_ms)]),
                         ("server, no batching", ["--no-batching", "--batch-window-ms", "0"])):
        print(f"running: {label} ...", file=sys.stderr)
        runs.append(serve_mode(model, common + flags, plan, label, small, args.small_reps, args.time_limit))

    print("running: in-process ...", file=sys.stderr)
    m = RewardModel.from_pretrained(model, dtype=args.dtype, threads=args.threads, reward_cache="off")
    m.score(*zip(*pairs[:GROUP]))
    t = time.perf_counter()
    local = {pair: r.reward for pair, r in zip(pairs, m.score_iter(pairs))}
    local_s = time.perf_counter() - t
    times = []
    for _ in range(args.small_reps + 3):
        t = time.perf_counter()
        m.score([small_q] * len(small_docs), small_docs)
        times.append(time.perf_counter() - t)
    local_small_ms = 1000 * statistics.median(times[3:])

    head = (f"{'mode':<34} {'req/s':>7} {'items/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'lost':>5} {'503':>5} "
            f"{'calls':>6} {'items/call':>10} {'req/call':>8} {'busy':>5} {'max |Δ reward|':>14}")
    print(head)
    print("-" * len(head))
    for load, _ in runs:
        calls = load.metrics.get("codescaler_batch_items_count", 0.0)
        per_call = load.metrics.get("codescaler_batch_items_sum", 0.0) / calls if calls else float("nan")
        req_call = load.metrics.get("codescaler_batch_requests_sum", 0.0) / calls if calls else float("nan")
        delta = max((abs(v - local[k]) for k, v in load.got.items()), default=float("nan"))
        busy = load.metrics.get("codescaler_model_call_seconds_sum", 0.0) / load.seconds
        print(f"{load.label:<34} {load.answered / load.seconds:>7.1f} {load.items / load.seconds:>8.1f} "
              f"{1000 * _pct(load.latencies, 0.5):>8.1f} {1000 * _pct(load.latencies, 0.99):>8.1f} {load.lost:>5} "
              f"{load.refused:>5} {calls:>6.0f} {per_call:>10.1f} {req_call:>8.2f} {busy:>5.0%} {delta:>14.2e}")
    print(f"{'in-process RewardModel.score_iter':<34} {'':>7} {len(pairs) / local_s:>8.1f}")
    print()
    print(f"one rerank of {len(small_docs)} candidates, p50 of {args.small_reps}: in-process {local_small_ms:.1f} ms; "
          + "; ".join(f"HTTP {load.label.removeprefix('server, ')} {ms:.1f} ms (+{ms - local_small_ms:.1f})"
                      for load, ms in runs))
    for load, _ in runs:
        if load.lost:
            print(f"{load.label}: lost {load.lost}: {load.why_lost}")
    lost = sum(load.lost for load, _ in runs)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
