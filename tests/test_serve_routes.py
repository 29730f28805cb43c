"""The server's routes in process, without a subprocess: ``create_app`` under Starlette's test client.

A route only parses its body, has the scheduler score (question, response) pairs and answers in its own
shape, so most tests here give the app a model whose forward pass is a table of raw scores: extraction,
statuses and the reward's shaping are codescaler's own, and every number is checked by hand. One test
runs the real tiny Qwen3 reward model and compares with ``RewardModel.score``; others give the app a
scheduler stand-in to reach the states a real model makes hard to hold (loading failed, one call stuck,
an answer that never comes).
"""

from __future__ import annotations

import base64
import struct
import threading
from concurrent.futures import Future

import pytest
from fastapi.testclient import TestClient

from codescaler import RewardModel, options
from codescaler.extract import extract_batch
from codescaler.model import CallStats, Reward
from codescaler.serve import ServeSettings, create_app
from codescaler.shape import shape, softplus
from conftest import fenced

CHAT = "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{r}<|im_end|>"


class FixedRawScores:
    """A ``RewardModel`` whose forward pass is a table: the raw score of a response is ``raw[its code]``.
    Extraction, status and shaping are the library's; each call is recorded (questions, responses,
    options) and its items count as many tokens as their response has characters."""

    source, backend_name, dtype, max_length = "fixed-raw-scores", "table", "float32", 1024

    def __init__(self, raw: dict[str, float]):
        self.raw = raw
        self.options = {n: options.BY_NAME[n].default for n in options.PER_CALL} | {"threads": 1}
        self.calls: list[tuple[list[str], list[str], dict]] = []

    def score(self, questions, responses, **given):
        return self.score_with_stats(questions, responses, **given)[0]

    def score_with_stats(self, questions, responses, **given):
        o = {**{n: self.options[n] for n in options.PER_CALL}, **{k: v for k, v in given.items() if v is not None}}
        self.calls.append((list(questions), list(responses), given))
        found = extract_batch(responses, policy=o["policy"], language=o["language"], threads=1)
        raws = [self.raw.get(e.code, 0.0) if e.valid else None for e in found]
        tokens = [len(r) if e.valid else 0 for r, e in zip(responses, found)]
        stats = CallStats(tokens, computed_tokens=sum(tokens), padded_tokens=0, passes=1, shared_prefixes=0,
                          reward_cache_hits=0)
        return [Reward(shape(raw, True) if e.valid else 0.0, raw, e.code, e.status) for e, raw in zip(found, raws)], stats


@pytest.fixture()
def table():
    """Raw scores for three programs; a response without a fenced program gets no raw score."""
    return FixedRawScores({"a = 1": -1.0, "b = 2": 2.0, "c = 3": 0.5, "d = 4": 2.0})


@pytest.fixture()
def client(table):
    with TestClient(create_app(table, ServeSettings(batch_window_ms=0))) as client:  # runs the scheduler
        client.app.state.scheduler.loaded.wait(30)
        table.calls.clear()  # the warm-up's
        yield client


def test_rerank_orders_documents_by_shaped_reward(client, table):
    documents = [fenced("a = 1"), {"text": fenced("b = 2")}, "no code", fenced("c = 3"), fenced("d = 4")]
    r = client.post("/v1/rerank", json={"query": "Set a variable.", "documents": documents, "top_n": 4,
                                        "model": "mine", "labels": "ignored"})
    assert r.status_code == 200, r.text
    got = r.json()
    # by reward, highest first; b and d tie (raw 2.0): the earlier document first; top_n=4 drops "no code"
    assert [x["index"] for x in got["results"]] == [1, 4, 3, 0]
    assert [x["relevance_score"] for x in got["results"]] == [softplus(2.0), softplus(2.0), softplus(0.5),
                                                              softplus(-1.0)]
    assert got["results"][0]["document"] == {"text": fenced("b = 2")}
    assert got["model"] == "mine" and got["id"].startswith("rerank-")
    tokens = sum(len(d if isinstance(d, str) else d["text"]) for d in documents if d != "no code")
    assert got["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert table.calls == [(["Set a variable."] * 5, [d if isinstance(d, str) else d["text"] for d in documents],
                            {n: table.options[n] for n in options.PER_CALL})]  # the defaults, resolved

    r = client.post("/rerank", json={"query": "q", "documents": [fenced("a = 1"), "none"], "return_documents": False,
                                     "policy": "last"})
    assert [(x["index"], x["relevance_score"], "document" in x) for x in r.json()["results"]] == [
        (0, softplus(-1.0), False), (1, 0.0, False)]
    assert r.json()["model"] == "fixed-raw-scores"  # none given: the served model's name
    assert table.calls[-1][2]["policy"] == "last"  # a per-call option reaches the model


def test_get_reward_splits_rendered_queries_into_question_and_response(client, table):
    queries = [CHAT.format(q="Set b.", r=fenced("b = 2")), CHAT.format(q="Say hi.", r="hi"),
               "<|im_start|>user\nSet c.<|im_end|>\n<|im_start|>assistant\n" + fenced("c = 3")]
    r = client.post("/get_reward", json={"query": queries, "labels": [1, 0, 1]})
    assert r.status_code == 200, r.text
    got = r.json()
    assert table.calls[-1][:2] == (["Set b.", "Say hi.", "Set c."], [fenced("b = 2"), "hi", fenced("c = 3")])
    assert got["rewards"] == got["scores"] == [softplus(2.0), 0.0, softplus(0.5)]
    assert got["extra_logs"] == {"valid_code": [1.0, 0.0, 1.0], "truncated": [0.0, 0.0, 0.0]}
    assert got["model"] == {"name": "fixed-raw-scores", "backend": "table", "dtype": "float32", "max_length": 1024}

    prompt = "Question: set a.\nAnswer:"
    r = client.post("/get_reward", json={"query": [prompt + fenced("a = 1")], "prompts": [prompt]})
    assert r.json()["rewards"] == [softplus(-1.0)] and table.calls[-1][:2] == ([prompt], [fenced("a = 1")])

    calls = len(table.calls)
    r = client.post("/get_reward", json={"query": [queries[0], "User: hi\nAssistant: x"]})
    assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request"
    assert r.json()["error"]["message"].startswith("query[1]: ")
    assert r.json()["error"]["message"].endswith("; send 'prompts' so the response can be told from the prompt")
    r = client.post("/get_reward", json={"query": queries, "prompts": ["one"]})
    assert r.status_code == 422 and r.json()["error"]["message"] == "prompts has 1 items but query has 3"
    assert len(table.calls) == calls  # refused bodies never reach the model


def test_rewards_groups_best_of_n_and_pooling_shapes(client):
    r = client.post("/v1/rewards", json={"groups": [{"question": "q1", "responses": [fenced("a = 1"), "none"]},
                                                    {"question": "q2", "responses": [fenced("b = 2")]}]})
    assert [[x["reward"] for x in g] for g in r.json()["results"]] == [[softplus(-1.0), 0.0], [softplus(2.0)]]
    assert r.json()["results"][0][1] == {"reward": 0.0, "raw_score": None, "status": "no_block", "truncated": False}

    r = client.post("/v1/best_of_n", json={"question": "q", "candidates": [fenced("c = 3"), fenced("b = 2"),
                                                                             fenced("d = 4")]})
    assert r.json()["index"] == 1 and r.json()["rewards"] == [softplus(0.5), softplus(2.0), softplus(2.0)]

    body = {"messages": [{"role": "user", "content": "Set b."},
                         {"role": "assistant", "content": [{"type": "text", "text": fenced("b = 2")}]}],
            "encoding_format": "base64", "endianness": "big"}
    (item,) = client.post("/pooling", json=body).json()["data"]
    assert struct.unpack(">f", base64.b64decode(item["data"]))[0] == pytest.approx(softplus(2.0), rel=1e-7)
    assert item["raw_score"] == 2.0 and item["status"] == "ok"

    r = client.post("/classify", json={"input": [CHAT.format(q="Set a.", r=fenced("a = 1"))],
                                       "truncate_prompt_tokens": 10})
    assert r.status_code == 422 and "below the server's max_length (1024)" in r.json()["error"]["message"]


class Held:
    """A scheduler stand-in the test sets: ready or not, stopping, failed, busy for some seconds; a
    submitted job is never answered (``abandoned`` lists the jobs the route gave up on)."""

    def __init__(self, model, **_scheduler_arguments):
        self.model, self.ready, self.stopping, self.error, self.busy = model, True, False, None, 0.0
        self.abandoned = []
        self.loaded = threading.Event()

    def start(self):
        self.loaded.set()

    def stop(self):
        pass

    def busy_seconds(self):
        return self.busy

    def submit(self, questions, responses, options):
        return type("Job", (), {"future": Future()})()

    def abandon(self, job):
        self.abandoned.append(job)


def test_health_states_come_from_the_scheduler():
    client = TestClient(create_app(FixedRawScores({}), ServeSettings(timeout=5.0), scheduler_class=Held))
    held = client.app.state.scheduler
    assert client.get("/health").json() == {"status": "ok", "model": {
        "name": "fixed-raw-scores", "backend": "table", "dtype": "float32", "max_length": 1024}, "busy_seconds": 0.0}
    held.busy = 7.25  # one model call has run longer than any request may wait
    r = client.get("/health")
    assert r.status_code == 503 and r.headers["Retry-After"] == "7"
    assert r.json()["status"] == "busy" and r.json()["busy_seconds"] == 7.25
    held.ready, held.error = False, RuntimeError("no such file")
    r = client.get("/health")
    assert r.status_code == 503 and r.json() == {"status": "failed: no such file"}
    held.stopping = True
    assert client.get("/health").json() == {"status": "shutting down"}


def test_a_request_past_its_deadline_gets_504_and_is_abandoned():
    client = TestClient(create_app(FixedRawScores({}), scheduler_class=Held))
    held = client.app.state.scheduler
    r = client.post("/v1/rewards", json={"items": [{"question": "q", "response": fenced("a = 1")}]},
                    headers={"X-Request-Timeout": "0.2"})
    assert r.status_code == 504 and r.json()["error"]["type"] == "timeout"
    assert r.json()["error"]["message"].startswith("no answer within 0.2 s")
    assert len(held.abandoned) == 1  # its items not yet started are dropped from the queue
    r = client.post("/v1/rewards", json={"items": []}, headers={"X-Request-Timeout": "soon"})
    assert r.status_code == 422 and "X-Request-Timeout must be a positive number" in r.json()["error"]["message"]
    held.ready = False
    r = client.post("/v1/rewards", json={"items": []})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"


def test_routes_answer_what_the_model_scores_in_process(qwen3_dir, humaneval):
    """The real tiny Qwen3 reward model behind the app: each route's numbers are ``RewardModel.score``'s."""
    model = RewardModel.from_pretrained(qwen3_dir, dtype="float32")
    p = humaneval[0]
    responses = [fenced(p["prompt"] + p["canonical_solution"]), "no code", fenced("def f(:"), fenced("x = 1")]
    want = model.score([p["prompt"]] * len(responses), responses)
    with TestClient(create_app(model)) as client:
        client.app.state.scheduler.loaded.wait(120)
        got = client.post("/v1/rewards", json={"groups": [{"question": p["prompt"], "responses": responses}]})
        assert [x["status"] for x in got.json()["results"][0]] == [w.status for w in want]
        assert [x["reward"] for x in got.json()["results"][0]] == pytest.approx([w.reward for w in want], abs=1e-4)
        ranked = client.post("/v1/rerank", json={"query": p["prompt"], "documents": responses}).json()["results"]
        assert [x["index"] for x in ranked] == sorted(range(len(want)), key=lambda i: (-want[i].reward, i))
