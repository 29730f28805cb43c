"""Ray Serve with two replicas: requests for one question reach one replica (its question cache hits,
as each replica's /metrics shows), different questions spread over both, a question's replica is passed
over when it holds more than `max_imbalance` requests beyond the other, every answer is the one
`codescaler serve` gives, bit for bit, and two replicas share one Redis reward cache."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import socket
import time
import urllib.error
import urllib.request

import pytest

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

from codescaler.errors import InputError  # noqa: E402
from codescaler.integrations import ray_serve  # noqa: E402

REPLICA = "X-Codescaler-Replica"


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance in this process (2 CPUs) with Serve's HTTP proxy on a free port."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()


def _deploy(name: str, port: int, prefix: str, **args) -> str:
    """The `serve run` app with two half-CPU replicas of the tiny model, at `prefix`; its base URL."""
    started = time.perf_counter()
    serve.run(ray_serve.app({"model": "tiny", "num_replicas": "2", "num_cpus": "0.5", **args}), name=name,
              route_prefix=prefix)
    print(f"\n{name}: two replicas up in {time.perf_counter() - started:.1f} s")
    return f"http://127.0.0.1:{port}{prefix.rstrip('/')}"


@pytest.fixture(scope="module")
def affinity(cluster):
    url = _deploy("affinity", cluster, "/")
    yield url
    serve.delete("affinity")


def _call(url: str, path: str, body: dict | None = None, replica: str | None = None):
    """(status, replica that answered, JSON or text) of one request."""
    headers = {"Content-Type": "application/json", **({REPLICA: replica} if replica else {})}
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data, headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status, got, raw = r.status, r.headers.get(REPLICA), r.read()
    except urllib.error.HTTPError as err:
        status, got, raw = err.code, err.headers.get(REPLICA), err.read()
    text = raw.decode()
    return status, got, (json.loads(text) if text.startswith(("{", "[")) else text)


def _item(question: str, k: int) -> dict:
    return {"items": [{"question": question, "response": f"```python\ndef f():\n    return {k}\n```"}]}


def _counter(metrics: str, name: str) -> float:
    return next(float(x.split()[-1]) for x in metrics.splitlines() if x.startswith(name + " "))


def _cache(url: str, replica: str) -> tuple[float, float]:
    """(prefix cache hits, misses) on one replica, from its /metrics."""
    status, who, metrics = _call(url, "/metrics", replica=replica)
    assert status == 200 and who == replica
    return tuple(_counter(metrics, f"codescaler_prefix_cache_{n}_total") for n in ("hits", "misses"))


def test_one_question_one_replica(affinity):
    questions = [f"Write a function that returns the number {n}, as an int.\n" for n in range(16)]
    owner = {}
    for q in questions:
        status, replica, _ = _call(affinity, "/v1/rewards", _item(q, 0))
        assert status == 200 and replica
        owner[q] = replica
    replicas = sorted(set(owner.values()))
    assert len(replicas) == 2, f"16 questions all went to {replicas}"
    before = {r: _cache(affinity, r) for r in replicas}
    for k in range(1, 4):  # each question three more times, interleaved with the others
        for q in questions:
            status, replica, body = _call(affinity, "/v1/rewards", _item(q, k))
            assert status == 200 and body["results"][0]["status"] == "ok"
            assert replica == owner[q], f"{q!r} went to {replica}, first to {owner[q]}"
    for r in replicas:
        hits, misses = (a - b for a, b in zip(_cache(affinity, r), before[r]))
        mine = sum(o == r for o in owner.values())
        # every later request met its question in the cache of the replica it reached
        assert (hits, misses) == (3 * mine, 0), (r, hits, misses, mine)


def _replicas(url: str) -> list[str]:
    """The ids of the app's two replicas, from the header of answers to requests without a question."""
    replicas = set()
    for _ in range(64):
        replicas.add(_call(url, "/health")[1])
        if len(replicas) == 2:
            return sorted(replicas)
    raise AssertionError(f"64 requests without a question all went to {replicas}")


def test_a_replica_named_in_the_header_answers(affinity):
    for r in _replicas(affinity):
        for body in (None, _item("Sort a list.", 1)):
            status, who, _ = _call(affinity, "/health" if body is None else "/v1/rewards", body, replica=r)
            assert status == 200 and who == r


def test_answers_are_codescaler_serves_bit_for_bit(affinity, humaneval):
    """Every route, an error, a multi-question body: the same JSON as `codescaler serve` (ids and
    timestamps aside), rewards compared as exact floats."""
    from fastapi.testclient import TestClient

    from codescaler.model import RewardModel
    from codescaler.serve.app import create_app

    p, q = humaneval[0], humaneval[1]
    good = f"```python\n{(p['prompt'] + p['canonical_solution']).strip()}\n```"
    other = f"```python\n{(q['prompt'] + q['canonical_solution']).strip()}\n```"
    chat = (f"<|im_start|>user\n{p['prompt']}<|im_end|>\n<|im_start|>assistant\n{good}<|im_end|>")
    bodies = [("/v1/rewards", {"items": [{"question": p["prompt"], "response": good},
                                         {"question": q["prompt"], "response": other},
                                         {"question": p["prompt"], "response": "no code"}]}),
              ("/v1/rewards", {"groups": [{"question": q["prompt"], "responses": [other, "x"]},
                                          {"question": p["prompt"],
                                           "responses": [good, good + " ", "```python\nx = (\n```"]}]}),
              ("/v1/best_of_n", {"question": p["prompt"], "candidates": ["none", good, other]}),
              ("/v1/rerank", {"query": p["prompt"], "documents": ["nothing", good, {"text": other}], "top_n": 2}),
              ("/get_reward", {"query": [chat, chat.replace("return", "yield")]}),
              ("/classify", {"messages": [{"role": "user", "content": p["prompt"]},
                                          {"role": "assistant", "content": good}]}),
              ("/pooling", {"input": [chat], "encoding_format": "base64"}),
              ("/v1/rewards", {"items": [{"question": 1}]}),
              ("/v1/rewards", {"items": [], "groups": []}),
              ("/v1/nothing", {"items": []}),
              ("/get_reward", {"query": ["plain text, no chat template"]})]
    volatile = ("id", "created")
    with TestClient(create_app(RewardModel.from_pretrained("tiny"))) as local:
        scheduler = local.app.state.scheduler
        assert scheduler.loaded.wait(300) and scheduler.error is None, scheduler.error
        for path, body in bodies:
            want = local.post(path, json=body)
            status, replica, got = _call(affinity, path, body)
            assert replica and status == want.status_code, (path, body, got)
            want = want.json()
            if isinstance(got, dict):
                for key in volatile:
                    assert (key in got) == (key in want)
                    got.pop(key, None), want.pop(key, None)
            assert json.dumps(got) == json.dumps(want), (path, body)  # floats by their repr: exact
        status, _, health = _call(affinity, "/health")
        assert status == 200 and health == local.get("/health").json()


def test_a_burst_for_one_question_stays_on_its_replica(affinity):
    """Eight requests at once for one question: within the default bound (16), all go to its replica."""
    question = "Return the sum of a list of integers.\n"
    body = {"items": [{"question": question, "response": f"```python\nx = {k}\n```"} for k in range(48)]}
    with cf.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: _call(affinity, "/v1/rewards", body), range(8)))
    assert all(status == 200 for status, _, _ in got)
    assert len({replica for _, replica, _ in got}) == 1


def test_an_overloaded_replica_is_passed_over(cluster, affinity):
    """With max_imbalance=0, while the question's replica works on a long request, the next request for
    that question goes to the other replica; once it is done, they go back to the question's replica."""
    url = _deploy("imbalance", cluster, "/imbalance", max_imbalance="0")
    try:
        question = "Return the sum of a list of integers.\n"
        status, owner, _ = _call(url, "/v1/rewards", _item(question, 0))
        assert status == 200
        long = {"items": [{"question": question, "response": f"```python\nx = {k}  # {'pad ' * 20}\n```"}
                          for k in range(1000)]}
        with cf.ThreadPoolExecutor(1) as pool:
            started = time.perf_counter()
            running = pool.submit(lambda: (_call(url, "/v1/rewards", long), time.perf_counter()))
            time.sleep(0.2)
            status, elsewhere, small = _call(url, "/v1/rewards", _item(question, 1))
            answered = time.perf_counter()
            (status_long, replica_long, _), finished = running.result()
        print(f"\nlong request: {finished - started:.1f} s; the small one answered after {answered - started:.1f} s")
        assert status == status_long == 200 and replica_long == owner
        assert finished > answered, "the long request ended before the small one was answered: make it longer"
        assert elsewhere != owner and small["results"][0]["status"] == "ok"
        assert _call(url, "/v1/rewards", _item(question, 2))[1] == owner
    finally:
        serve.delete("imbalance")


def test_two_replicas_share_one_redis_reward_cache(cluster, affinity, humaneval, tmp_path):
    """reward_cache=redis://...: what one replica scored, the other reads from Redis instead of running it."""
    import shutil

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed here (Debian package redis-server; .ci/run installs it)")
    pytest.importorskip("redis", reason="the redis client is in codescaler's serve and test extras")
    from test_reward_cache import RedisServer

    redis_server = RedisServer(tmp_path)
    url = _deploy("redis", cluster, "/redis", reward_cache=redis_server.url)
    try:
        a, b = _replicas(url)
        p = humaneval[2]
        body = {"groups": [{"question": p["prompt"], "responses": [
            f"```python\n{(p['prompt'] + p['canonical_solution']).strip()}\n```", "```python\nx = 1\n```"]}]}

        def reward_cache(replica):
            status, _, metrics = _call(url, "/metrics", replica=replica)
            assert status == 200
            return (_counter(metrics, "codescaler_reward_cache_hits_total"),
                    _counter(metrics, "codescaler_reward_cache_misses_total"))

        before_a, before_b = reward_cache(a), reward_cache(b)
        status, who, got_a = _call(url, "/v1/rewards", body, replica=a)
        assert status == 200 and who == a
        hits_a, computed = (x - y for x, y in zip(reward_cache(a), before_a))
        assert (hits_a, computed) == (0, 2)
        status, who, got_b = _call(url, "/v1/rewards", body, replica=b)
        assert status == 200 and who == b
        assert tuple(x - y for x, y in zip(reward_cache(b), before_b)) == (2, 0)  # both read from Redis
        assert got_a == got_b
    finally:
        serve.delete("redis")
        redis_server.kill()


def test_routing_arguments_are_checked():
    with pytest.raises(InputError, match="routing='sticky': choose one of question, least_loaded"):
        ray_serve.app({"model": "tiny", "routing": "sticky"})
    with pytest.raises(InputError, match="max_imbalance must be 0 or more requests, got -1"):
        ray_serve.app({"model": "tiny", "max_imbalance": "-1"})
    with pytest.raises(InputError, match="max_imbalance='a few': expected int"):
        ray_serve.app({"model": "tiny", "max_imbalance": "a few"})


@pytest.mark.parametrize("path, body, question", [
    ("/v1/rewards", {"items": [{"question": "a", "response": "r"}, {"question": "b", "response": "r"}]}, "a"),
    ("/v1/rewards", {"groups": [{"question": "b", "responses": []}, {"question": "a", "responses": ["r"]}]}, "b"),
    ("/v1/best_of_n", {"question": "a", "candidates": ["r"]}, "a"),
    ("/rerank", {"query": "a", "documents": ["r"]}, "a"),
    ("/get_reward", {"query": ["<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nr"]}, "a"),
    ("/get_reward", {"query": ["P: a. A: r"], "prompts": ["P: a. A: "]}, "P: a. A: "),
    ("/classify", {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]},
                                {"role": "assistant", "content": "r"}]}, "a"),
    ("/pooling", {"input": "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nr"}, "a"),
    ("/v1/rewards", {"items": []}, None),
    ("/v1/rewards", {"items": [{"question": 1, "response": "r"}]}, None),
    ("/get_reward", {"query": ["no template"]}, None),
    ("/health", {}, None),
])
def test_the_routing_question_is_the_first_one(path, body, question):
    assert ray_serve.routing_question(path, json.dumps(body).encode()) == question
    assert ray_serve.routing_question(path, b"\xff not json") is None
