"""The reward server, run as a user runs it: `codescaler serve` in a subprocess on a loopback port.

Two servers per module: ``main`` (a long batch window, so requests sent together deterministically merge
and a short deadline deterministically expires before the model starts) and ``guarded`` (API key from
the environment, a tiny queue). Rewards are compared with the in-process ``RewardModel`` in float32.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from codescaler import InputError, RewardModel, options
from codescaler.serve.chat_text import last_user_turn, split_query
from conftest import fenced, wait_healthy

WINDOW_MS = 300
MAX_ITEMS = 64
MAX_BODY = 200_000
KEY = "s3cret-key"
BODY_TIMEOUT = 1.0
CONNECTIONS = 6


class Server:
    def __init__(self, model_dir: Path, log: Path, *flags: str, env: dict | None = None):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "codescaler.cli", "serve", "--model", str(model_dir), "--port", str(self.port),
               "--dtype", "float32", *flags]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "wb"),
                                     env={**os.environ, **(env or {})})
        wait_healthy(self.url, self.proc, log, seconds=180, what="server", poll=0.1)

    def post(self, path: str, body=None, **kw) -> httpx.Response:
        """POST ``body`` as JSON, or raw bytes given as ``content=`` (sent as application/json too)."""
        if "content" in kw:
            kw["headers"] = {"Content-Type": "application/json", **kw.get("headers", {})}
        return httpx.post(self.url + path, timeout=60, **({"json": body} if "content" not in kw else {}), **kw)

    def metric(self, name: str, **labels) -> float:
        """The value of one Prometheus sample (0 when it does not exist yet)."""
        text = httpx.get(self.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        return 0.0

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture(scope="module")
def main(qwen3_dir, tmp_path_factory):
    # No reward cache: these tests watch batching, queues and deadlines, which a cache hit skips.
    s = Server(qwen3_dir, tmp_path_factory.mktemp("serve") / "main.log", "--batch-window-ms", str(WINDOW_MS),
               "--max-items", str(MAX_ITEMS), "--max-body-bytes", str(MAX_BODY), "--reward-cache", "off",
               "--body-timeout", str(BODY_TIMEOUT))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def guarded(qwen3_dir, tmp_path_factory):
    s = Server(qwen3_dir, tmp_path_factory.mktemp("serve") / "guarded.log", "--batch-window-ms", str(WINDOW_MS),
               "--max-queue", "8", "--reward-cache", "off", "--limit-concurrency", str(CONNECTIONS),
               env={"CODESCALER_API_KEY": KEY})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def model(qwen3_dir):
    return RewardModel.from_pretrained(qwen3_dir, dtype="float32")


@pytest.fixture(scope="module")
def group(humaneval):
    """One question (long enough to be shared) and 8 distinct responses, two without valid code."""
    p = humaneval[3]
    solution = (p["prompt"] + p["canonical_solution"]).strip()
    responses = [fenced(f"{solution}\n\nCHECK = {i}") for i in range(6)] + ["no code", fenced("def f(:")]
    return p["prompt"], responses


def results_of(pairs_model, questions, responses, **kw):
    return [{"reward": r.reward, "raw_score": r.raw_score, "status": r.status, "truncated": r.truncated}
            for r in pairs_model.score(questions, responses, **kw)]


def assert_results(got, want):
    assert [r["status"] for r in got] == [r["status"] for r in want]
    assert [r["truncated"] for r in got] == [r["truncated"] for r in want]
    assert [r["reward"] for r in got] == pytest.approx([r["reward"] for r in want], abs=1e-4)
    for g, w in zip(got, want):
        assert (g["raw_score"] is None) == (w["raw_score"] is None)
        if w["raw_score"] is not None:
            assert g["raw_score"] == pytest.approx(w["raw_score"], abs=1e-4)


# ------------------------------------------------------------------------------------------ endpoints

def test_health_names_the_model_and_startup_line(main, qwen3_dir):
    r = httpx.get(main.url + "/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "model": {"name": str(qwen3_dir), "backend": "torch", "dtype": "float32",
                                                  "max_length": 4096}, "busy_seconds": 0.0}
    lines = [line for line in main.log.read_text().splitlines() if line.startswith("codescaler: serving")]
    assert len(lines) == 1 and "float32" in lines[0] and "torch" in lines[0] and main.url in lines[0]
    assert "in model process " in lines[0]


def test_rewards_items_and_groups_equal_in_process(main, model, group):
    question, responses = group
    items = [{"question": question, "response": r} for r in responses[:3]] + \
            [{"question": "Print hello.", "response": fenced("print('hello')")}]
    r = main.post("/v1/rewards", {"items": items})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"]["dtype"] == "float32"
    assert_results(body["results"], results_of(model, [i["question"] for i in items], [i["response"] for i in items]))

    r = main.post("/v1/rewards", {"groups": [{"question": question, "responses": responses},
                                             {"question": "Print hello.", "responses": []},
                                             {"question": "Print hi.", "responses": [fenced("print('hi')")]}]})
    assert r.status_code == 200, r.text
    got = r.json()["results"]
    assert [len(g) for g in got] == [8, 0, 1]
    assert_results(got[0], results_of(model, [question] * 8, responses))
    assert_results(got[2], results_of(model, ["Print hi."], [fenced("print('hi')")]))


def test_per_call_options_come_from_the_option_table(main, model):
    two_blocks = "```python\nx = 1\n```\nthen\n```python\ny = 2\n```"
    body = {"items": [{"question": "Set y.", "response": two_blocks}]}
    default = main.post("/v1/rewards", body).json()["results"][0]
    last = main.post("/v1/rewards", {**body, "policy": "last", "score_empty": True}).json()["results"][0]
    assert default["status"] != "ok" and default["reward"] == 0.0  # the published recipe: exactly one block
    assert last["status"] == "ok"
    assert_results([last], results_of(model, ["Set y."], [two_blocks], policy="last"))
    schema = httpx.get(main.url + "/openapi.json").json()["components"]["schemas"]["RewardsRequest"]["properties"]
    for name in options.PER_CALL:
        choices = options.BY_NAME[name].choices
        if choices:
            assert schema[name]["anyOf"][0]["enum"] == list(choices)
    r = main.post("/v1/rewards", {**body, "language": "cobol"})
    assert r.status_code == 422 and "language" in r.json()["error"]["message"]


def test_best_of_n_picks_the_highest_reward(main, model, group):
    question, responses = group
    candidates = [responses[6], responses[1], responses[0], responses[1]]
    r = main.post("/v1/best_of_n", {"question": question, "candidates": candidates})
    assert r.status_code == 200, r.text
    body = r.json()
    want = model.best_of_n(question, candidates)
    assert body["index"] == want.index
    assert body["rewards"] == pytest.approx(want.rewards, abs=1e-4)
    assert_results(body["results"], results_of(model, [question] * 4, candidates))
    assert set(body) == {"index", "rewards", "results", "model"}


def test_rerank_follows_the_cohere_vllm_contract(main, model, group):
    question, responses = group
    docs = [responses[6], {"text": responses[0]}, responses[2], responses[1]]
    texts = [d if isinstance(d, str) else d["text"] for d in docs]
    want = [r.reward for r in model.score([question] * 4, texts)]
    order = sorted(range(4), key=lambda i: (-want[i], i))
    for path in ("/v1/rerank", "/rerank"):
        r = main.post(path, {"query": question, "documents": docs, "model": "my-rm", "rank_fields": ["text"]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"id", "model", "results", "usage"} and body["model"] == "my-rm"
        assert [x["index"] for x in body["results"]] == order
        assert [x["relevance_score"] for x in body["results"]] == pytest.approx([want[i] for i in order], abs=1e-4)
        assert [x["document"]["text"] for x in body["results"]] == [texts[i] for i in order]
        assert body["usage"]["total_tokens"] > 0
    r = main.post("/v1/rerank", {"query": question, "documents": docs, "top_n": 2, "return_documents": False})
    assert [x["index"] for x in r.json()["results"]] == order[:2]
    assert all("document" not in x for x in r.json()["results"])


def test_get_reward_parses_rendered_queries(main, model, group):
    question, responses = group
    prompt = f"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    queries = [prompt + r + "<|im_end|>" for r in responses[:3]]
    want = [r.reward for r in model.score([question] * 3, responses[:3])]  # the prompt's final newline kept
    for body in ({"query": queries}, {"query": queries, "prompts": [prompt] * 3, "labels": [None] * 3}):
        r = main.post("/get_reward", body)
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["rewards"] == pytest.approx(want, abs=1e-4) and got["scores"] == got["rewards"]
        assert got["extra_logs"]["valid_code"] == [1.0, 1.0, 1.0]
    r = main.post("/get_reward", {"query": ["plain text, no chat template"]})
    assert r.status_code == 422 and "prompts" in r.json()["error"]["message"]
    r = main.post("/get_reward", {"query": queries, "prompts": [prompt, "another prompt", prompt]})
    assert r.status_code == 422 and "query[1]" in r.json()["error"]["message"]


# Questions as RL datasets hold them: HumanEval prompts end in a newline; others have leading spaces,
# blank lines, tabs, CRLF, or nothing but whitespace around them.
ODD_QUESTIONS = ["\n  Write f.\n\n", "\tWrite g.  ", "Write h.\r\n", "   ", "\n"]


def test_get_reward_equals_v1_rewards_bitwise(main, humaneval):
    questions = [p["prompt"] for p in humaneval[:3]] + ODD_QUESTIONS
    responses = [fenced(f"def f{i}():\n    return {i}", prose=" " * i) for i in range(len(questions))]
    responses[-1] = "\n  no code\n"
    items = [{"question": q, "response": r} for q, r in zip(questions, responses)]
    want = main.post("/v1/rewards", {"items": items}).json()["results"]
    assert want[-1]["status"] != "ok" and {r["status"] for r in want[:-1]} == {"ok"}
    renders = {  # the prompt a policy continued; the response it generated, then its end marker
        "chatml": lambda q: (f"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n"
                             "<|im_start|>assistant\n", "<|im_end|>"),
        "llama3": lambda q: ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
                             f"{q}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"),
    }
    for name, render in renders.items():
        prompts, ends = zip(*map(render, questions))
        queries = ["<|endoftext|>" + p + r + e for p, r, e in zip(prompts, responses, ends)]  # left padding too
        for body in ({"query": queries}, {"query": queries, "prompts": list(prompts), "labels": [None] * len(queries)}):
            got = main.post("/get_reward", body).json()
            assert got["rewards"] == [r["reward"] for r in want], (name, set(body))
            assert got["extra_logs"]["valid_code"] == [float(r["status"] == "ok") for r in want]


def test_empty_lists_are_answered_without_the_model(main):
    assert main.post("/v1/rewards", {"items": []}).json()["results"] == []
    assert main.post("/v1/rewards", {"groups": []}).json()["results"] == []
    assert main.post("/v1/rerank", {"query": "q", "documents": []}).json()["results"] == []
    assert main.post("/get_reward", {"query": []}).json()["rewards"] == []
    r = main.post("/v1/best_of_n", {"question": "q", "candidates": []})
    assert r.status_code == 422 and "candidates" in r.json()["error"]["message"]


# ------------------------------------------------------------------------------------ bad input, limits

@pytest.mark.parametrize("content, field", [
    (b'{"items": [{"question": "q", "response": ', "not valid JSON"),
    (b'{"items": [{"question": 3, "response": "r"}]}', "items[0].question"),
    (b'{"items": [{"question": "q"}]}', "items[0].response"),
    (b'{"groups": [{"question": "q", "responses": "r"}]}', "groups[0].responses"),
    (b'{"items": [], "groups": []}', "exactly one of 'items' and 'groups'"),
    (b'{"items": [], "polciy": "last"}', "polciy"),
    (b'{"items": [{"question": "\\ud800 q", "response": "r"}]}', "items[0].question"),
    (b'{"items": [{"question": "\xff", "response": "r"}]}', "not valid UTF-8"),
    (b'["a list"]', "body"),
    (b"", "body is missing"),
])
def test_malformed_bodies_get_422_naming_the_problem(main, content, field):
    r = main.post("/v1/rewards", content=content, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request" and field in error["message"]


def test_a_lone_surrogate_elsewhere_fails_only_its_request(main, model):
    r = main.post("/v1/best_of_n", content=b'{"question": "\\udfff", "candidates": ["x"]}')
    assert r.status_code == 422 and "question" in r.json()["error"]["message"]
    r = main.post("/v1/rewards", {"items": [{"question": "Print hi.", "response": fenced("print('hi')")}]})
    assert r.status_code == 200


# The one rule for odd text: a lone surrogate anywhere in a question or a response (outside the code
# block or inside it) is never scored; the API raises InputError, the server answers 422, both naming
# the field (tests/test_cli.py and tests/test_ray.py: the same cases are input_error lines).
ODD = {"outside the block": "\ud800 Here:\n```python\nx = 1\n```", "inside the block": "```python\nx = '\udfff'\n```"}


@pytest.mark.parametrize("odd", ODD.values(), ids=ODD.keys())
def test_odd_text_is_never_scored_by_the_api(model, odd):
    good = fenced("x = 1")
    cases = [
        (lambda: model.score(["q", "q"], [good, odd]), r"responses\[1\]"),
        (lambda: model.score(["q", odd], [good, good]), r"questions\[1\]"),
        (lambda: model.score_code(["q"], [odd]), r"codes\[0\]"),
        (lambda: model.score_groups(["q", "q"], [[good], [good, odd]]), r"responses_per_question\[1\]\[1\]"),
        (lambda: model.score_groups(["q", odd], [[good], [good]]), r"questions\[1\]"),
        (lambda: model.best_of_n("q", [good, odd]), r"candidates\[1\]"),
        (lambda: model.best_of_n(odd, [good]), r"^question"),
        (lambda: list(model.score_iter([("q", good)] * 3 + [("q", odd)], chunk_items=2)), r"responses\[3\]"),
        (lambda: list(model.score_iter([("q", good), (odd, good)])), r"questions\[1\]"),
    ]
    for call, field in cases:
        with pytest.raises(InputError, match=field + " is not valid Unicode: lone surrogate"):
            call()


def test_odd_text_gets_422_naming_the_field_on_every_route(main, model):
    scored = main.metric("codescaler_items_scored_total")
    chat = "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n"
    for odd in ODD.values():
        for path, body, field in [
            ("/v1/rewards", {"items": [{"question": "q", "response": "a"}, {"question": "q", "response": odd}]},
             "items[1].response"),
            ("/v1/rewards", {"items": [{"question": odd, "response": "a"}]}, "items[0].question"),
            ("/v1/rewards", {"groups": [{"question": "q", "responses": ["a", odd]}]}, "groups[0].responses[1]"),
            ("/v1/rewards", {"groups": [{"question": odd, "responses": ["a"]}]}, "groups[0].question"),
            ("/v1/best_of_n", {"question": "q", "candidates": ["a", odd]}, "candidates[1]"),
            ("/v1/best_of_n", {"question": odd, "candidates": ["a"]}, "question"),
            ("/v1/rerank", {"query": "q", "documents": ["a", odd]}, "documents[1]"),
            ("/rerank", {"query": "q", "documents": [{"text": odd}]}, "documents[0].text"),
            ("/rerank", {"query": odd, "documents": ["a"]}, "query"),
            ("/v1/rerank", {"query": "q", "documents": ["a"], "model": "rm" + odd}, "model"),  # echoed: refused too
            ("/get_reward", {"query": [chat + "a<|im_end|>", chat + odd + "<|im_end|>"]}, "query[1]"),
            ("/get_reward", {"query": [chat + "a"], "prompts": [odd]}, "prompts[0]"),
        ]:
            r = main.post(path, content=json.dumps(body).encode())  # "\ud800" escapes, as any JSON client sends
            assert r.status_code == 422, (path, field, r.text)
            error = r.json()["error"]
            assert error["type"] == "invalid_request" and f"{field}: not valid Unicode: lone surrogate" in error["message"]
    assert main.metric("codescaler_items_scored_total") == scored  # refused before the model ran


def test_limits_answer_413(main):
    items = [{"question": "q", "response": f"r{i}"} for i in range(MAX_ITEMS + 1)]
    r = main.post("/v1/rewards", {"items": items})
    assert r.status_code == 413 and "--max-items" in r.json()["error"]["message"]
    big = json.dumps({"items": [{"question": "q" * (MAX_BODY + 10), "response": "r"}]}).encode()
    r = main.post("/v1/rewards", content=big)
    assert r.status_code == 413 and "--max-body-bytes" in r.json()["error"]["message"]

    def chunks():  # no Content-Length: the streamed size is what counts
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    r = main.post("/v1/rewards", content=chunks())
    assert r.status_code == 413
    assert httpx.get(main.url + "/health").status_code == 200


DEEP = b"[" * 2000 + b"]" * 2000


@pytest.mark.parametrize("path, content", [
    ("/v1/rewards", b'{"items": ' + DEEP + b"}"),
    ("/v1/rerank", b'{"query": "q", "documents": [], "model": "\\ud800", "x": ' + DEEP + b"}"),  # a surrogate first
    ("/get_reward", b'{"query": [], "labels": ' + DEEP + b"}"),  # labels are otherwise accepted as anything
    ("/classify", b'{"input": "x", "user": ' + b'{"a": ' * 300 + b"1" + b"}" * 300 + b"}"),
])
def test_json_nested_deeper_than_the_limit_gets_422(main, path, content):
    r = main.post(path, content=content)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == {"type": "invalid_request", "message": "the body is not valid JSON here: arrays and "
                                 "objects nested deeper than 200 levels"}
    shallow = b'{"query": [], "labels": ' + b"[" * 150 + b"]" * 150 + b"}"  # within the limit: read
    assert main.post("/get_reward", content=shallow).json()["rewards"] == []


def test_bodies_are_uncompressed_json_else_415(main):
    import gzip

    body = json.dumps({"items": []}).encode()
    for headers, says in [
        ({"Content-Type": "application/json", "Content-Encoding": "gzip"}, "Content-Encoding 'gzip' is not supported"),
        ({"Content-Type": "text/plain"}, "(got 'text/plain')"),  # what a browser page may send without preflight
        ({"Content-Type": "application/x-www-form-urlencoded"}, "(got 'application/x-www-form-urlencoded')"),
        ({"Content-Type": "application/json; charset=latin-1"}, "charset=latin-1"),
        ({}, "no Content-Type was given"),
    ]:
        content = gzip.compress(body) if "Content-Encoding" in headers else body
        r = httpx.post(main.url + "/v1/rewards", content=content, headers=headers, timeout=30)
        assert r.status_code == 415, (headers, r.text)
        assert r.json()["error"]["type"] == "unsupported_media_type" and says in r.json()["error"]["message"]
    r = main.post("/v1/rewards", content=body, headers={"Content-Type": "Application/JSON; charset=UTF-8"})
    assert r.status_code == 200
    assert httpx.put(main.url + "/v1/rewards", content=b"x").status_code == 405  # the method is judged first


def test_only_loopback_host_names_are_served_on_loopback(main):
    body = {"items": []}
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "0.0.0.0"):
        r = main.post("/v1/rewards", body, headers={"Host": host})
        assert r.status_code == 400, (host, r.text)
        assert r.json()["error"]["type"] == "invalid_host" and "--allowed-hosts" in r.json()["error"]["message"]
        assert httpx.get(main.url + "/health", headers={"Host": host}).status_code == 400
    for host in (f"localhost:{main.port}", f"LOCALHOST:{main.port}", f"127.0.0.1:{main.port}", "[::1]:80", "localhost"):
        assert main.post("/v1/rewards", body, headers={"Host": host}).status_code == 200, host


def test_a_slow_body_gets_408_and_its_connection_closed(main):
    raw = socket.create_connection(("127.0.0.1", main.port))
    raw.settimeout(10 * BODY_TIMEOUT)
    started = time.monotonic()
    raw.sendall(b"POST /v1/rewards HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{\"items\":")  # 9 of 100 bytes, then nothing
    answer = b""
    while chunk := raw.recv(65536):  # until the server closes the connection
        answer += chunk
    raw.close()
    assert BODY_TIMEOUT <= time.monotonic() - started < 5 * BODY_TIMEOUT
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(payload)["error"]["message"] == f"the body did not arrive within --body-timeout ({BODY_TIMEOUT:g} s)"
    assert main.post("/v1/rewards", {"items": []}).status_code == 200


def test_rerank_top_n_may_be_a_json_integer_written_as_float(main):
    r = main.post("/v1/rerank", {"query": "q", "documents": ["a", "b", "c"], "top_n": 2.0})
    assert r.status_code == 200 and len(r.json()["results"]) == 2
    r = main.post("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": 2.5})
    assert r.status_code == 422 and "top_n" in r.json()["error"]["message"]
    # exactly one of items and groups given and not null, as the schema's oneOf says
    assert main.post("/v1/rewards", {"items": [], "groups": None}).status_code == 200
    assert main.post("/v1/rewards", {"items": None, "groups": None}).status_code == 422


def test_past_its_deadline_a_request_gets_504_and_is_not_scored(main):
    scored = main.metric("codescaler_items_scored_total")
    body = {"items": [{"question": "Print a.", "response": fenced(f"print({i})")} for i in range(3)]}
    started = time.monotonic()
    r = main.post("/v1/rewards", body, headers={"X-Request-Timeout": "0.05"})
    assert r.status_code == 504 and r.json()["error"]["type"] == "timeout"
    assert time.monotonic() - started < WINDOW_MS / 1000  # answered at its deadline, not after the batch window
    time.sleep(2 * WINDOW_MS / 1000)  # a dropped request must not run once the window closes either
    assert main.metric("codescaler_items_scored_total") == scored


def wait_for(condition, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


def test_a_disconnecting_client_does_not_break_its_batch(main, model):
    others = [{"question": "Print b.", "response": fenced(f"print('b{i}')")} for i in range(3)]
    gone = main.metric("codescaler_requests_total", endpoint="/v1/rewards", status="499")
    payload = json.dumps({"items": [{"question": "Print b.", "response": fenced("print('gone')")}]}).encode()
    raw = socket.create_connection(("127.0.0.1", main.port))
    raw.sendall(b"POST /v1/rewards HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
    wait_for(lambda: main.metric("codescaler_queue_items") == 1)  # queued, waiting in the batch window
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(main.post, "/v1/rewards", {"items": others})
        wait_for(lambda: main.metric("codescaler_queue_items") == 4)  # both requests wait for one call
        raw.close()
        answer = pending.result()
    assert answer.status_code == 200, answer.text
    assert_results(answer.json()["results"], results_of(model, ["Print b."] * 3, [o["response"] for o in others]))
    wait_for(lambda: main.metric("codescaler_requests_total", endpoint="/v1/rewards", status="499") == gone + 1)
    assert httpx.get(main.url + "/health").status_code == 200


# ------------------------------------------------------------------------------ cross-request batching

def test_a_group_split_across_two_clients_runs_its_question_once(main, model, group):
    question, responses = group
    calls = main.metric("codescaler_batch_items_count")
    prefixes = main.metric("codescaler_shared_prefixes_total")

    async def both():
        async with httpx.AsyncClient(timeout=60) as a, httpx.AsyncClient(timeout=60) as b:
            return await asyncio.gather(
                a.post(main.url + "/v1/rewards", json={"groups": [{"question": question, "responses": responses[:4]}]}),
                b.post(main.url + "/v1/rewards", json={"groups": [{"question": question, "responses": responses[4:]}]}))

    first, second = asyncio.run(both())
    assert first.status_code == second.status_code == 200
    got = first.json()["results"][0] + second.json()["results"][0]
    assert_results(got, results_of(model, [question] * 8, responses))
    assert main.metric("codescaler_batch_items_count") - calls == 1  # one model call for both requests
    assert main.metric("codescaler_shared_prefixes_total") - prefixes == 1  # the question ran once


def test_scheduler_merges_equal_options_and_isolates_a_failing_request(model):
    from codescaler.serve.metrics import ServeMetrics
    from codescaler.serve.scheduler import Scheduler

    metrics = ServeMetrics()
    scheduler = Scheduler(model, window_s=0.3, max_batch_tokens=1 << 20, max_batch_items=1024, max_queue=1 << 20,
                          metrics=metrics)
    scheduler.start()
    try:
        scheduler.loaded.wait()
        two_blocks = "```python\nx = 1\n```\n```python\ny = 2\n```"
        calls = lambda: {s.name: s.value for s in metrics.batch_requests.collect()[0].samples}  # noqa: E731
        with pytest.raises(InputError, match="language"):
            scheduler.submit(["q"], ["r"], {"language": "cobol"})
        jobs = [scheduler.submit(["Set x."], [two_blocks], {}),
                scheduler.submit(["Set x."], [two_blocks], {"policy": "last"}),
                scheduler.submit(["Set y."], [fenced("y = 2")], {"policy": "codescaler"})]
        assert jobs[0].future.result(60).rewards[0].status != "ok"
        assert jobs[1].future.result(60).rewards[0].status == "ok"
        assert jobs[2].future.result(60).rewards[0].reward == pytest.approx(
            model.score(["Set y."], [fenced("y = 2")])[0].reward, abs=1e-6)
        # the default options, left out or given, merged into one call; "last" ran in a call of its own
        assert calls()["codescaler_batch_requests_count"] == 2 and calls()["codescaler_batch_requests_sum"] == 3

        bad = scheduler.submit(["Bad \ud800."], [fenced("x = 1")], {})  # HTTP refuses this; the model raises
        good = scheduler.submit(["Set y."], [fenced("y = 3")], {})
        with pytest.raises(InputError, match="lone surrogate"):
            bad.future.result(60)
        assert good.future.result(60).rewards[0].status == "ok"  # its merged call failed; it was retried alone
    finally:
        scheduler.stop()


def test_health_and_scoring_answer_503_until_the_model_is_warm(model):
    import threading

    from fastapi.testclient import TestClient

    from codescaler.serve import create_app

    release = threading.Event()

    def slow_load():
        release.wait(60)
        return model

    with TestClient(create_app(slow_load)) as client:
        assert client.get("/health").status_code == 503
        for body in ({"items": []}, {"items": [{"question": "q", "response": "r"}]}):
            r = client.post("/v1/rewards", json=body)
            assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        release.set()
        client.app.state.scheduler.loaded.wait(60)
        assert client.get("/health").json()["status"] == "ok"
        assert client.post("/v1/rewards", json={"items": []}).json()["results"] == []


# ------------------------------------------------------------------------------------- guarded server

def test_api_key_is_required_except_for_health(guarded):
    body = {"items": [{"question": "q", "response": "no code"}]}
    assert guarded.post("/v1/rewards", body).status_code == 401
    r = guarded.post("/v1/rewards", body, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"
    assert httpx.get(guarded.url + "/metrics").status_code == 401
    assert guarded.post("/v1/rewards", body, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert httpx.get(guarded.url + "/health").status_code == 200


def test_a_full_queue_answers_503_with_retry_after_then_serves(guarded):
    auth = {"Authorization": f"Bearer {KEY}"}
    # Long items (each cut at max_length): the call lasts long enough for the extra request to find it queued or running.
    body = "\n".join(f"x{j} = {j} * {j}" for j in range(1500))
    filling = {"items": [{"question": "Print c.", "response": fenced(f"{body}\nprint({i})")} for i in range(8)]}
    extra = {"items": [{"question": "Print d.", "response": fenced("print('d')")}]}

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(guarded.post, "/v1/rewards", filling, headers=auth)
        wait_for(lambda: guarded.metric("codescaler_queue_items") + guarded.metric("codescaler_running_items") == 8)
        refused = guarded.post("/v1/rewards", extra, headers=auth)
        assert pending.result().status_code == 200
    assert refused.status_code == 503 and refused.json()["error"]["type"] == "overloaded"
    assert int(refused.headers["Retry-After"]) >= 1
    assert guarded.post("/v1/rewards", extra, headers=auth).status_code == 200


def test_past_the_connection_limit_new_requests_get_503(guarded):
    idle = [socket.create_connection(("127.0.0.1", guarded.port)) for _ in range(CONNECTIONS)]
    try:
        time.sleep(0.2)
        r = httpx.get(guarded.url + "/health")
        assert r.status_code == 503 and r.headers["connection"] == "close"
    finally:
        for s in idle:
            s.close()
    wait_for(lambda: httpx.get(guarded.url + "/health").status_code == 200, seconds=10)


def test_an_api_key_on_the_command_line_is_warned_about(guarded, tmp_path):
    assert "--api-key" not in guarded.log.read_text()  # from the environment: no warning
    r = subprocess.run([sys.executable, "-m", "codescaler.cli", "serve", "--model", str(tmp_path / "none"),
                        "--port", "0", "--api-key", "visible"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert ("codescaler: warning: --api-key is visible to every user of this machine in the process list; set "
            "$CODESCALER_API_KEY instead") in r.stderr


def test_allowed_hosts_flag():
    from codescaler.serve.cli import _allowed_hosts

    assert _allowed_hosts(None, "127.0.0.1") == ("localhost", "127.0.0.1", "[::1]")
    assert _allowed_hosts(None, "::1") == ("localhost", "127.0.0.1", "[::1]")
    assert _allowed_hosts(None, "127.0.0.2") == ("localhost", "127.0.0.1", "[::1]", "127.0.0.2")
    assert _allowed_hosts(None, "0.0.0.0") is None and _allowed_hosts(None, "10.1.2.3") is None
    assert _allowed_hosts("RM.example.com, *.internal,::1", "0.0.0.0") == ("rm.example.com", "*.internal", "[::1]")
    assert _allowed_hosts("localhost,*", "127.0.0.1") is None


def test_bad_serve_flags_fail_before_loading(tmp_path):
    r = subprocess.run([sys.executable, "-m", "codescaler.cli", "serve", "--model", str(tmp_path / "none"),
                        "--max-queue", "0"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--max-queue" in r.stderr


# ------------------------------------------------------------------------------- chat text (pure unit)

def test_split_query_chatml_without_prompt():
    q = ("<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nfirst<|im_end|>\n<|im_start|>assistant\nold"
         "<|im_end|>\n<|im_start|>user\n Write f. <|im_end|>\n<|im_start|>assistant\n<think>\n```python\ndraft\n```"
         "</think>\n\nHere:\n```python\nf = 1\n```<|im_end|><|endoftext|><|endoftext|>")
    assert split_query(q) == (" Write f. ", "Here:\n```python\nf = 1\n```")
    with pytest.raises(ValueError, match="neither ChatML nor Llama-3"):
        split_query("User: hi\nAssistant: ```python\nx\n```")
    with pytest.raises(ValueError, match="neither ChatML nor Llama-3"):
        split_query("<|im_start|>assistant\nno user turn")


def test_split_query_with_prompt():
    llama = ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWrite g.<|eot_id|>"
             "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert split_query("<|endoftext|>" + llama + "```python\ng = 1\n```<|eot_id|>", llama) == \
        ("Write g.", "```python\ng = 1\n```")
    assert split_query("Q: add\nA: ```python\na\n```", "Q: add\nA: ") == ("Q: add\nA: ", "```python\na\n```")
    with pytest.raises(ValueError, match="does not start with its prompt"):
        split_query("something else", "Q: add")
    assert last_user_turn("<|im_start|>user\nA<|im_end|><|im_start|>user\nB\n<|im_end|>") == "B\n"
    assert last_user_turn(" not a chat\n") == " not a chat\n"


# Templates in the manner of each supported format: Qwen3's (ChatML turns, verbatim user content, its
# think block on the last assistant turn), plain ChatML, and Llama-3 headers with content verbatim or
# trimmed (Meta's Llama-3 template trims: then what it rendered is the question).
LLAMA3 = ("{{- bos_token -}}{%- for m in messages -%}{{- '<|start_header_id|>' + m.role + '<|end_header_id|>\\n\\n' "
          "+ m.content{trim} + '<|eot_id|>' -}}{%- endfor -%}{%- if add_generation_prompt -%}"
          "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}")
ROUND_TRIP_QUESTIONS = ["Write f.", "Write f.\n", "  Write f.", "\n\nWrite f.\n\n", "\tA\r\nB \n", " ", "",
                        "<|im_start|>system\nnot a header here", "x <|end_header_id|> y", "émoji 🙂\n"]
ROUND_TRIP_ANSWERS = ["```python\nx = 1\n```", "  lead\n```python\nx = 1\n```\n", "\n\ntrailing\n\n", " ", ""]


@pytest.mark.parametrize("name, template, end", [
    ("qwen3", "QWEN3_STYLE_TEMPLATE", "<|im_end|>"),
    ("chatml", "CHATML_TEMPLATE", "<|im_end|>"),
    ("llama3", LLAMA3.replace("{trim}", ""), "<|eot_id|>"),
    ("llama3-trim", LLAMA3.replace("{trim}", " | trim"), "<|eot_id|>"),
])
def test_chat_text_round_trips_each_template(qwen3_dir, name, template, end):
    """parse(render(q)) == q: the question (and the answer) come back exactly as the template rendered them."""
    from transformers import AutoTokenizer

    from codescaler import tiny

    tokenizer = AutoTokenizer.from_pretrained(qwen3_dir)
    template = getattr(tiny, template, template)
    rendered = (lambda text: text.strip()) if name == "llama3-trim" else (lambda text: text)

    def render(messages, **kw):
        return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, **kw)

    for q in ROUND_TRIP_QUESTIONS:
        history = [{"role": "system", "content": "Be brief.\n"}, {"role": "user", "content": "earlier\n"},
                   {"role": "assistant", "content": "before"}, {"role": "user", "content": q}]
        prompt = render(history, add_generation_prompt=True)
        assert last_user_turn(prompt) == rendered(q), (name, q)
        for a in ROUND_TRIP_ANSWERS:
            query = "<|endoftext|>" + prompt + a + end + "<|endoftext|>" * 2  # as a policy generates, padded
            assert split_query(query, prompt) == (rendered(q), a), (name, q, a)
            assert split_query(query) == (rendered(q), a), (name, q, a)
            thought = "<|endoftext|>" + prompt + "<think>\nplan ```python\ndraft\n```\n</think>\n\n" + a + end
            assert split_query(thought, prompt)[1] == a.lstrip("\n"), (name, a)  # as Qwen3 drops reasoning
        if name == "qwen3":  # a whole conversation rendered: the answer as the template rendered it
            whole = render(history + [{"role": "assistant", "content": ROUND_TRIP_ANSWERS[1]}])
            assert split_query(whole) == (q, ROUND_TRIP_ANSWERS[1])
