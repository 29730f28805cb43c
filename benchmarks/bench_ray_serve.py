"""Question routing on Ray Serve: a GRPO step whose groups arrive in several requests, served by two
replicas, with ``routing=question`` (each question's requests to one replica) and ``routing=least_loaded``.

    python -m codescaler.benchmarks.bench_ray_serve [--shape bench] [--clients 8] [--per-request 2]

The step is ``workloads.grpo_step`` (16 questions x 8 responses), each group cut into requests of
``--per-request`` responses, shuffled, and sent by ``--clients`` concurrent clients to a local Ray Serve
(this machine's CPUs, one per replica). Per routing: wall time, responses/s, request latency, the question
cache's hits and misses summed over the replicas (each replica's ``/metrics``, read through the
``X-Codescaler-Replica`` header) and the requests each replica answered. The rewards of both routings are
checked bit for bit against each other, and the median latency of a one-item request is shown (it crosses
the ingress and a replica: two hops).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import random
import socket
import statistics
import time
import urllib.request
from pathlib import Path

REPLICA = "X-Codescaler-Replica"


def _call(url: str, path: str, body: dict | None = None, replica: str | None = None) -> tuple[str, bytes, float]:
    headers = {"Content-Type": "application/json", **({REPLICA: replica} if replica else {})}
    started = time.perf_counter()
    req = urllib.request.Request(url + path, None if body is None else json.dumps(body).encode(), headers)
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.headers.get(REPLICA), r.read(), time.perf_counter() - started


def _question_cache(url: str, replicas: set[str]) -> tuple[float, float]:
    hits = misses = 0.0
    for r in replicas:
        for line in _call(url, "/metrics", replica=r)[1].decode().splitlines():
            if line.startswith("codescaler_prefix_cache_hits_total "):
                hits += float(line.split()[-1])
            elif line.startswith("codescaler_prefix_cache_misses_total "):
                misses += float(line.split()[-1])
    return hits, misses


def _requests(args: argparse.Namespace) -> list[dict]:
    from tokenizers import Tokenizer

    from codescaler import tiny

    from .workloads import grpo_step

    w = grpo_step(Tokenizer.from_file(str(tiny.qwen_tokenizer_json())))
    bodies = []
    for at in range(0, len(w.questions), w.group_size):
        rs = w.responses[at:at + w.group_size]
        bodies += [{"groups": [{"question": w.questions[at], "responses": rs[i:i + args.per_request]}]}
                   for i in range(0, len(rs), args.per_request)]
    random.Random(args.seed).shuffle(bodies)
    return bodies


def _run(args: argparse.Namespace, path: str | Path, routing: str, port: int, bodies: list[dict]) -> dict:
    from ray import serve

    from codescaler.integrations import ray_serve

    started = time.perf_counter()
    serve.run(ray_serve.app({"model": str(path), "dtype": args.dtype, "num_replicas": "2", "num_cpus": "1",
                             "routing": routing}), name=routing, route_prefix="/")
    up = time.perf_counter() - started
    url = f"http://127.0.0.1:{port}"
    replicas: set[str] = set()
    while len(replicas) < 2:  # unpinned GETs go to the least loaded replica: both answer in a few tries
        replicas.add(_call(url, "/health")[0])
    small = {"items": [{"question": "Return 1.", "response": "```python\ndef f():\n    return 1\n```"}]}
    for r in replicas:  # compile and warm each replica before timing
        _call(url, "/v1/rewards", small, replica=r)
    small_ms = statistics.median(_call(url, "/v1/rewards", small)[2] for _ in range(args.small_reps)) * 1000
    before = _question_cache(url, replicas)
    started = time.perf_counter()
    with cf.ThreadPoolExecutor(args.clients) as pool:
        answers = list(pool.map(lambda body: _call(url, "/v1/rewards", body), bodies))
    wall = time.perf_counter() - started
    hits, misses = (a - b for a, b in zip(_question_cache(url, replicas), before))
    serve.delete(routing)
    latencies = sorted(a[2] for a in answers)
    responses = sum(len(b["groups"][0]["responses"]) for b in bodies)
    return {"routing": routing, "up": up, "wall": wall, "responses": responses,
            "p50": latencies[len(latencies) // 2] * 1000, "p95": latencies[int(len(latencies) * 0.95)] * 1000,
            "hits": hits, "misses": misses, "small_ms": small_ms,
            "split": sorted(sum(a[0] == r for a in answers) for r in replicas),
            "results": [json.loads(a[1])["results"] for a in answers]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m codescaler.benchmarks.bench_ray_serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="bench", choices=("bench", "1.7b"))
    p.add_argument("--layers", type=int, default=None, help="for --shape 1.7b: how many of its 28 layers")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--per-request", type=int, default=2, help="responses per request (a group of 8 is cut in 8/this)")
    p.add_argument("--small-reps", type=int, default=30, help="one-item requests timed for the latency column")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    from .bench_score import bench_model_dir

    path = bench_model_dir(args.shape, args.layers)
    bodies = _requests(args)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        rows = [_run(args, path, routing, port, bodies) for routing in ("question", "least_loaded")]
    finally:
        serve.shutdown()
        ray.shutdown()
    same = rows[0].pop("results") == rows[1].pop("results")
    print(f"GRPO step 16x8 cut into {len(bodies)} requests of {args.per_request}, {args.clients} clients, "
          f"{args.shape} shape, {args.dtype}, 2 replicas x 1 CPU")
    print(f"{'routing':<13} {'s':>6} {'resp/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'q hits':>6} {'q misses':>8} "
          f"{'requests per replica':>20} {'1-item ms':>9}")
    for r in rows:
        print(f"{r['routing']:<13} {r['wall']:>6.2f} {r['responses'] / r['wall']:>7.1f} {r['p50']:>7.0f} "
              f"{r['p95']:>7.0f} "
              f"{r['hits']:>6.0f} {r['misses']:>8.0f} {' / '.join(map(str, r['split'])):>20} {r['small_ms']:>9.1f}")
    print(f"rewards equal bit for bit across routings: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
