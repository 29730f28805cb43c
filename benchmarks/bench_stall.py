"""Can one huge item stall everyone? Small requests' latency while a ~10 MB item is in flight.

Starts ``codescaler serve --model MODEL`` as a subprocess on a free port, then for each big item: 8 clients
post small requests (one short question and one short valid program each, every question unique so the
reward cache never answers) for a few seconds alone (the baseline, after 2 s of warm-up), then again while one more client posts
the big item, until it is answered. Prints small-request p50/p99 for both phases and the big item's time,
HTTP status and item status. Big items: ``code``, a ~10 MB valid Python block (over MAX_CODE_BYTES:
answered code_too_long without parsing); ``question``, a 1 MB question with eight one-token answers
(tokenized only as far as max_length uses, once for the eight).

    python -m codescaler.benchmarks.bench_stall [--model tiny] [--big code,question] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Callable

from .bench_serve import ServerProcess

SMALL_CODE = "```python\ndef add(a, b):\n    return a + b\n```"


def big_body(kind: str, megabytes: float) -> bytes:
    if kind == "code":
        line = "total = total + compute(index, [1, 2, 3], {'key': 'value'})\n"
        code = "total = 0\n" + line * int(megabytes * 1_000_000 // len(line))
        items = [{"question": "Sum it up.", "response": f"```python\n{code}```"}]
    else:
        question = ("Explain the following program in detail, line by line.\n" * 20_000)[:1_000_000]
        items = [{"question": question, "response": f"```python\n{i}\n```"} for i in range(8)]
    return json.dumps({"items": items}).encode()


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")


async def small_clients(url: str, clients: int, until: Callable[[], bool], serial: list[int]) -> list[float]:
    """Latencies of small requests posted back to back by ``clients`` clients while ``until()`` is false."""
    import httpx

    latencies: list[float] = []

    async def client(http: httpx.AsyncClient) -> None:
        while not until():
            serial[0] += 1
            body = {"items": [{"question": f"Task {serial[0]}: add two numbers.", "response": SMALL_CODE}]}
            started = time.perf_counter()
            r = await http.post(url + "/v1/rewards", json=body)
            latencies.append(time.perf_counter() - started)
            if r.status_code != 200:
                raise SystemExit(f"a small request got {r.status_code}: {r.text[:300]}")

    async with httpx.AsyncClient(timeout=600) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return latencies


async def one_run(url: str, kind: str, megabytes: float, clients: int, baseline_s: float) -> dict:
    import httpx

    serial = [0]
    warm = time.monotonic() + 2.0  # first calls after start-up are slower: not measured
    await small_clients(url, clients, lambda: time.monotonic() > warm, serial)
    end = time.monotonic() + baseline_s
    alone = await small_clients(url, clients, lambda: time.monotonic() > end, serial)

    body = big_body(kind, megabytes)
    done: dict = {}

    async def big() -> None:
        async with httpx.AsyncClient(timeout=600) as http:
            started = time.perf_counter()
            r = await http.post(url + "/v1/rewards", content=body, headers={"Content-Type": "application/json"})
            done["seconds"] = time.perf_counter() - started
            done["http"] = r.status_code
            got = r.json()
            done["status"] = (sorted({x["status"] for x in got["results"]}) if r.status_code == 200
                              else got.get("error", {}).get("type"))

    task = asyncio.create_task(big())
    await asyncio.sleep(0.05)  # the big body is on its way before the small ones start
    during = await small_clients(url, clients, lambda: task.done(), serial)
    await task
    return {"kind": kind, "mb": len(body) / 1e6, "alone": alone, "during": during, **done}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--big", default="code,question", help="comma-separated: code, question")
    ap.add_argument("--megabytes", type=float, default=10.0, help="size of the big code block")
    ap.add_argument("--clients", type=int, default=8, help="clients posting small requests")
    ap.add_argument("--baseline-s", type=float, default=5.0, help="seconds of small requests alone first")
    ap.add_argument("--server-flag", action="append", default=[], help="extra flag for codescaler serve")
    args = ap.parse_args(argv)

    server = ServerProcess(args.model, args.server_flag)
    try:
        server.wait_healthy()
        rows = [asyncio.run(one_run(server.url, kind, args.megabytes, args.clients, args.baseline_s))
                for kind in args.big.split(",")]
    finally:
        server.stop()
    print(f"{'big item':<24} {'small alone p50/p99 (n)':>26} {'small during p50/p99 (n)':>27} "
          f"{'big item':>9}  answer")
    for r in rows:
        what = f"{r['kind']} ({r['mb']:.1f} MB body)"
        alone = f"{pct(r['alone'], 50):.3f}/{pct(r['alone'], 99):.3f} s ({len(r['alone'])})"
        during = f"{pct(r['during'], 50):.3f}/{pct(r['during'], 99):.3f} s ({len(r['during'])})"
        print(f"{what:<24} {alone:>26} {during:>27} {r['seconds']:>8.2f}s  {r['http']} {r['status']}")
    worst = max(pct(r["during"], 99) for r in rows)
    print(f"small-request p99 with a big item in flight: {worst:.3f} s (mean of all small during: "
          f"{statistics.fmean(x for r in rows for x in r['during']):.3f} s)")


if __name__ == "__main__":
    main()
