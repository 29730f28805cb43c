"""The server's model process: intake while the model runs, merging what arrives during a pass, a model
process that dies, ``/health`` on a stuck call, and the drain on SIGTERM. Run as a user runs it:
``codescaler serve`` in a subprocess. A "long call" is one request of ``BIG`` items (seconds of work on the
tiny model), not a sleep: the test waits for what the server reports (``busy_seconds``), never for time.
"""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from codescaler import RewardModel
from conftest import fenced
from test_serve import Server

BIG = 200  # items of ~60 tokens: a call of seconds on the tiny model


def big_body(n: int = BIG) -> dict:
    lines = "\n".join(f"    x{j} = {j} * {j + 1}" for j in range(10))
    return {"items": [{"question": f"Write f{i % 7}.", "response": fenced(f"def f{i}():\n{lines}\n    return {i}")}
                      for i in range(n)]}


def metric(server: Server, name: str) -> float:
    for family in text_string_to_metric_families(httpx.get(server.url + "/metrics", timeout=10).text):
        for s in family.samples:
            if s.name == name:
                return s.value
    return 0.0


def wait_busy(server: Server, at_least: float = 0.0, seconds: float = 120) -> list[dict]:
    """Poll /health until the model reports a call running for more than ``at_least`` s; every answer seen."""
    seen, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        r = httpx.get(server.url + "/health", timeout=10)
        seen.append({"code": r.status_code, **r.json()})
        if (seen[-1].get("busy_seconds") or 0) > at_least:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"the model never reported a call over {at_least} s: {seen[-3:]}")


def model_pid(server: Server) -> int:
    for _ in range(100):
        found = re.search(r"in model process (\d+)", server.log.read_text())
        if found:
            return int(found.group(1))
        time.sleep(0.1)
    raise AssertionError(f"no model process named in the startup line: {server.log.read_text()[-2000:]}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(qwen3_dir, tmp_path_factory):
    s = Server(qwen3_dir, tmp_path_factory.mktemp("worker") / "server.log", "--reward-cache", "off",
               "--batch-window-ms", "20", "--timeout", "600")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def model_fp32(qwen3_dir):
    return RewardModel.from_pretrained(qwen3_dir, dtype="float32", reward_cache="off")


def test_requests_arriving_during_a_pass_are_answered_and_merged_into_the_next(server, model_fp32):
    question = "Write a function that returns the square of x."
    answers = [fenced(f"def square(x):\n    return x * x + {k} - {k}") for k in range(6)]
    with ThreadPoolExecutor(8) as pool:
        big = pool.submit(server.post, "/v1/rewards", big_body())
        during = wait_busy(server)
        assert all(h["code"] == 200 and h["status"] == "ok" for h in during)
        calls, requests = metric(server, "codescaler_batch_requests_count"), metric(server, "codescaler_batch_requests_sum")
        small = list(pool.map(lambda a: server.post("/v1/rewards", {"items": [{"question": question, "response": a}]}),
                              answers))
        assert big.result().status_code == 200
    assert [r.status_code for r in small] == [200] * 6
    # The six were queued while the big call ran and went to the model as one call.
    assert metric(server, "codescaler_batch_requests_count") - calls == 2  # the big call's end, then theirs
    assert metric(server, "codescaler_batch_requests_sum") - requests == 7
    got = [r.json()["results"][0]["reward"] for r in small]
    assert got == [r.reward for r in model_fp32.score([question] * 6, answers)]


def test_a_killed_model_process_fails_only_its_call_and_is_started_again(server):
    pid = model_pid(server)
    with ThreadPoolExecutor(1) as pool:
        big = pool.submit(server.post, "/v1/rewards", big_body())
        wait_busy(server)
        os.kill(pid, signal.SIGKILL)
        r = big.result()
    assert r.status_code == 500
    assert "model process exited during this call (killed by SIGKILL)" in r.json()["error"]["message"]
    again = server.post("/v1/rewards", {"items": [{"question": "q", "response": fenced("x = 1")}]})
    assert again.status_code == 200 and again.json()["results"][0]["status"] == "ok"
    assert httpx.get(server.url + "/health", timeout=10).json()["status"] == "ok"


def test_sigterm_answers_queued_requests_with_503_finishes_the_call_and_exits_0(qwen3_dir, tmp_path):
    s = Server(qwen3_dir, tmp_path / "server.log", "--reward-cache", "off", "--timeout", "600", "--drain-timeout", "600")
    pid = model_pid(s)
    with ThreadPoolExecutor(4) as pool:
        big = pool.submit(s.post, "/v1/rewards", big_body(3 * BIG))
        wait_busy(s)
        # Other options than the big call's: queued behind it, not merged into it.
        queued = [pool.submit(s.post, "/v1/rewards", {"items": [{"question": "q", "response": fenced("x = 1")}],
                                                       "policy": "last"}) for _ in range(2)]
        for _ in range(1000):  # until both are admitted (the big call is still running: it has 600 items)
            if metric(s, "codescaler_queue_items") == 2:
                break
            time.sleep(0.01)
        assert metric(s, "codescaler_running_items") == 3 * BIG
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(60) == 0
        done = big.result()
        late = [q.result() for q in queued]
    assert done.status_code == 200 and len(done.json()["results"]) == 3 * BIG
    for r in late:
        assert r.status_code == 503, r.text
        assert r.json()["error"]["type"] == "overloaded" and "shutting down" in r.json()["error"]["message"]
        assert r.headers["retry-after"] == "1"
    log = s.log.read_text()
    assert "draining" in log and "Traceback" not in log and "Exception in ASGI" not in log
    assert not alive(pid)


def test_a_stuck_call_shows_in_health_and_is_cut_by_the_drain_timeout(qwen3_dir, tmp_path):
    s = Server(qwen3_dir, tmp_path / "server.log", "--reward-cache", "off", "--timeout", "0.3",
               "--drain-timeout", "0.5")
    pid = model_pid(s)
    with ThreadPoolExecutor(2) as pool:
        big = pool.submit(s.post, "/v1/rewards", big_body(4 * BIG))
        seen = wait_busy(s, at_least=0.3)
        # Past --timeout the request got its 504, but the model is still on it: /health says so.
        assert big.result().status_code == 504
        assert seen[-1]["code"] == 503 and seen[-1]["status"] == "busy"
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(60) == 0
    for _ in range(50):  # the model process was killed at the drain timeout
        if not alive(pid):
            break
        time.sleep(0.1)
    assert not alive(pid)
    assert "Traceback" not in s.log.read_text()
