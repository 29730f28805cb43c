"""The HTTP client and the RL adapters (TRL, verl, OpenRLHF), against the in-process model and a real
``codescaler serve`` subprocess; the frameworks' calls made with their current signatures.

One server for the module (float32, an API key, ``--max-items 64``); rewards from it must equal the
in-process float32 ``RewardModel``'s within 1e-4. Retries are shown on a stub server that answers 503 first.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures as cf
import importlib.util
import inspect
import json
import re
import shlex
import socket
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from codescaler import RewardModel
from codescaler.integrations import openrlhf, scorer, verl
from codescaler.integrations.client import (AsyncClient, AuthenticationError, Client, RejectedRequestError,
                                            ServerBusyError, ServerTimeoutError, ServerUnreachableError)
from codescaler.errors import InputError
from conftest import fenced

KEY = "integration-key"
MAX_ITEMS = 64
TOL = 1e-4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(qwen3_dir, tmp_path_factory):
    """``codescaler serve`` as a user runs it; yields its URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("integrations") / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "codescaler.cli", "serve", "--model", str(qwen3_dir),
                             "--dtype", "float32", "--port", str(port), "--api-key", KEY,
                             "--max-items", str(MAX_ITEMS)], stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    url = f"http://127.0.0.1:{port}"
    try:
        with Client(url, api_key=KEY) as c:
            deadline = time.monotonic() + 180
            while True:
                assert proc.poll() is None, f"server exited: {log.read_text()}"
                try:
                    c.wait_ready(timeout=1)
                    break
                except (ServerUnreachableError, ServerBusyError):
                    assert time.monotonic() < deadline, f"server not ready: {log.read_text()}"
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def model(qwen3_dir):
    return RewardModel.from_pretrained(qwen3_dir, dtype="float32")


@pytest.fixture(scope="module")
def cases(humaneval):
    """(questions, responses): valid answers of two questions, duplicates, invalid code, no code."""
    a, b = humaneval[0], humaneval[2]
    sol_a, sol_b = (a["prompt"] + a["canonical_solution"]).strip(), (b["prompt"] + b["canonical_solution"]).strip()
    responses = [fenced(sol_a), fenced(sol_a + "\n\nX = 1"), "no code here", fenced("def f(:"), fenced(sol_a),
                 fenced(sol_b), fenced(sol_b, tag="py") + "\n```python\nprint(1)\n```"]
    questions = [a["prompt"]] * 5 + [b["prompt"]] * 2
    return questions, responses


def assert_same(got, want):
    """Rewards from a server (``code`` is "") against the in-process model's."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.reward == pytest.approx(w.reward, abs=TOL)
        assert (g.raw_score is None) == (w.raw_score is None)
        if w.raw_score is not None:
            assert g.raw_score == pytest.approx(w.raw_score, abs=TOL)
        assert (g.status, g.truncated, g.code) == (w.status, w.truncated, "")


# ------------------------------------------------------------------------------------------------ client

def test_import_codescaler_does_not_import_httpx():
    code = ("import sys, codescaler; assert 'httpx' not in sys.modules; "
            "assert codescaler.Client.__module__ == 'codescaler.integrations.client'; assert 'httpx' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_client_matches_the_in_process_model(server, model, cases):
    questions, responses = cases
    with Client(server, api_key=KEY) as c:
        assert_same(c.score(questions, responses), model.score(questions, responses))
        assert_same(c.score(questions, responses, policy="last", score_empty=True),
                    model.score(questions, responses, policy="last", score_empty=True))
        groups = [responses[:5], responses[5:]]
        for got, want in zip(c.score_groups([questions[0], questions[5]], groups),
                             model.score_groups([questions[0], questions[5]], groups)):
            assert_same(got, want)
        best, want = c.best_of_n(questions[0], responses[:5]), model.best_of_n(questions[0], responses[:5])
        assert best.index == want.index
        assert_same(best.details, want.details)
        assert best.rewards == [d.reward for d in best.details]
        assert c.model_info["dtype"] == "float32" and c.model_info["name"] == str(model.source)
        assert c.score([], []) == []


def test_async_client_matches_the_in_process_model(server, model, cases):
    questions, responses = cases

    async def run():
        async with AsyncClient(server, api_key=KEY, chunk_items=3) as c:  # 3 concurrent requests
            return (await c.score(questions, responses), await c.score_groups([questions[0]], [responses[:5]]),
                    await c.best_of_n(questions[5], responses[5:]), await c.health())

    scored, grouped, best, health = asyncio.run(run())
    assert_same(scored, model.score(questions, responses))
    assert_same(grouped[0], model.score(questions[:5], responses[:5]))
    assert best.index == model.best_of_n(questions[5], responses[5:]).index
    assert health["status"] == "ok"


def test_large_calls_are_split_under_the_servers_item_limit(server, model, cases):
    questions, responses = cases
    qs, rs = questions * 10, responses * 10  # 70 items, over the server's --max-items 64
    with Client(server, api_key=KEY, chunk_items=1000) as c, pytest.raises(RejectedRequestError) as err:
        c.score(qs, rs)
    assert err.value.status == 413 and isinstance(err.value, InputError) and "--max-items" in str(err.value)
    with Client(server, api_key=KEY, chunk_items=MAX_ITEMS) as c:
        assert_same(c.score(qs, rs), model.score(qs, rs))
        groups = [responses] * 10  # 7 per group: whole groups, at most 64 items per request
        got = c.score_groups([questions[0]] * 10, groups)
        assert [len(g) for g in got] == [7] * 10
        assert_same(got[9], model.score([questions[0]] * 7, responses))


def test_missing_or_wrong_api_key_is_an_authentication_error(server, monkeypatch):
    monkeypatch.delenv("CODESCALER_API_KEY", raising=False)
    for key in (None, "wrong"):
        with Client(server, api_key=key) as c, pytest.raises(AuthenticationError) as err:
            c.score(["q"], ["a"])
        assert err.value.status == 401 and "API key" in str(err.value)
    monkeypatch.setenv("CODESCALER_API_KEY", KEY)  # the server's variable is the client's default too
    with Client(server) as c:
        assert len(c.score(["q"], ["```python\nx = 1\n```"])) == 1
        assert c.health()["status"] == "ok"


def test_bad_input_fails_before_any_request():
    c = Client("http://127.0.0.1:9")  # nothing listens: any request would fail differently
    with pytest.raises(InputError, match="questions has 1 items but responses has 2"):
        c.score(["q"], ["a", "b"])
    with pytest.raises(InputError, match="policy 'nope'"):
        c.score(["q"], ["a"], policy="nope")
    with pytest.raises(InputError, match="lone surrogate"):
        c.score(["q"], ["\ud800"])
    with pytest.raises(InputError, match="at least one candidate"):
        c.best_of_n("q", [])
    with pytest.raises(InputError, match="http:// or https://"):
        Client("localhost:8000")


class Stub:
    """An HTTP server that plays a list of answers (status, headers, body) in order, the last one forever."""

    def __init__(self, answers):
        self.answers, self.seen = list(answers), []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.seen.append((time.monotonic(), self.path, body, dict(self.headers)))
                status, headers, payload = stub.answers[min(len(stub.seen), len(stub.answers)) - 1]
                data = json.dumps(payload).encode()
                self.send_response(status)
                for k, v in {**headers, "Content-Type": "application/json", "Content-Length": str(len(data))}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


BUSY = (503, {"Retry-After": "1"}, {"error": {"type": "overloaded", "message": "the queue is full"}})
OK = (200, {}, {"results": [{"reward": 0.5, "raw_score": 0.1, "status": "ok", "truncated": False}],
                "model": {"name": "stub", "backend": "torch", "dtype": "float32", "max_length": 4096}})


def test_503_is_retried_after_the_servers_retry_after():
    stub = Stub([BUSY, OK])
    try:
        started = time.monotonic()
        got = Client(stub.url, api_key="k", timeout=30).score(["q"], ["a"], policy="last")
        assert [(r.reward, r.raw_score, r.status, r.code) for r in got] == [(0.5, 0.1, "ok", "")]
        (t0, path, body, headers), (t1, *_rest) = stub.seen
        assert path == "/v1/rewards" and body == {"items": [{"question": "q", "response": "a"}], "policy": "last"}
        assert headers["Authorization"] == "Bearer k" and float(headers["X-Request-Timeout"]) == 30
        assert 1.0 <= t1 - t0 < 3.0 and time.monotonic() - started < 5
    finally:
        stub.close()


def test_retry_waits_are_capped_and_retries_run_out():
    stub = Stub([(503, {"Retry-After": "3600"}, BUSY[2]), OK])
    try:
        started = time.monotonic()
        assert Client(stub.url, max_retry_wait=0.2).score(["q"], ["a"])[0].reward == 0.5
        assert time.monotonic() - started < 2
    finally:
        stub.close()
    stub = Stub([BUSY])
    try:
        with pytest.raises(ServerBusyError, match="queue is full.*after 2 retries"):
            Client(stub.url, retries=2, max_retry_wait=0.05).score(["q"], ["a"])
        assert len(stub.seen) == 3
    finally:
        stub.close()


def test_unreachable_server_is_retried_then_a_typed_error():
    port = _free_port()
    started = time.monotonic()
    with pytest.raises(ServerUnreachableError, match="after 2 retries"):
        Client(f"http://127.0.0.1:{port}", retries=2).score(["q"], ["a"])
    assert time.monotonic() - started >= 0.25 + 0.5  # the two backoff waits


def test_client_retries_until_a_late_server_is_up(qwen3_dir, tmp_path):
    """A client started before its server: connection errors are retried until the model answers."""
    port = _free_port()
    client = Client(f"http://127.0.0.1:{port}", retries=150, max_retry_wait=1.0)  # ~2.5 min to start
    result = {}
    caller = threading.Thread(target=lambda: result.setdefault("got", client.score(["q"], ["```python\nx = 1\n```"])))
    caller.start()
    time.sleep(0.5)
    proc = subprocess.Popen([sys.executable, "-m", "codescaler.cli", "serve", "--model", str(qwen3_dir),
                             "--dtype", "float32", "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "late.log", "wb"))
    try:
        caller.join(120)
        assert not caller.is_alive(), (tmp_path / "late.log").read_text()
        assert result["got"][0].status == "ok"
    finally:
        proc.terminate()
        proc.wait(30)


# --------------------------------------------------------------------------------------------------- TRL

def test_trl_reward_plain_and_conversational(server, model, cases, monkeypatch):
    from codescaler.integrations.trl import CodeScalerReward
    from codescaler.training.grpo import CodeScalerReward as Reexported

    assert Reexported is CodeScalerReward
    questions, responses = cases
    want = [r.reward for r in model.score(questions, responses)]
    prompts = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": q}] for q in questions]
    completions = [[{"role": "assistant", "content": r}] for r in responses]
    monkeypatch.setenv("CODESCALER_API_KEY", KEY)
    rendered = [f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n" for q in questions]
    for reward in (CodeScalerReward(model), CodeScalerReward(server)):
        for got in (reward(prompts, completions),                                 # conversational, last user turn
                    reward(questions, responses),                                 # plain text prompt
                    reward(rendered, responses),                                  # rendered chat, turn kept as is
                    reward(["ignored"] * len(questions), responses, question=questions)):  # a question column
            assert got == pytest.approx(want, abs=TOL)
    loaded = CodeScalerReward(model.source, dtype="float32", policy="last")  # load and per-call options
    assert loaded(prompts, completions) == pytest.approx([r.reward for r in model.score(questions, responses,
                                                                                        policy="last")], abs=TOL)
    with pytest.raises(InputError, match="already loaded"):
        CodeScalerReward(model, dtype="float32")
    with pytest.raises(InputError, match="codescaler serve"):
        CodeScalerReward(server, dtype="float32")


class Recording:
    """Wraps a CodeScalerReward to keep what GRPOTrainer passed it."""

    def __init__(self, reward):
        self.reward, self.calls = reward, []
        self.__name__ = reward.__name__

    def __call__(self, prompts, completions, **kwargs):
        self.calls.append((prompts, completions, kwargs))
        return self.reward(prompts, completions, **kwargs)


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    from codescaler.training.grpo_example import save_tiny_policy

    return save_tiny_policy(tmp_path_factory.mktemp("policy"))


@pytest.mark.parametrize("where", ["in-process", "server"])
def test_trl_reward_inside_a_grpo_step(where, server, model, qwen3_dir, tiny_policy, tmp_path, monkeypatch):
    pytest.importorskip("trl")
    import trl
    from trl import GRPOConfig, GRPOTrainer

    from codescaler.integrations.trl import CodeScalerReward
    from codescaler.training.grpo_example import humaneval_prompts

    monkeypatch.setenv("CODESCALER_API_KEY", KEY)
    reward = Recording(CodeScalerReward(server if where == "server" else qwen3_dir, dtype=None if where == "server"
                                        else "float32"))
    config = GRPOConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2, num_generations=2,
                        max_completion_length=8, logging_steps=1, save_strategy="no", report_to=[], seed=0,
                        bf16=False, disable_tqdm=True)
    trainer = GRPOTrainer(model=str(tiny_policy), reward_funcs=reward, args=config,
                          train_dataset=humaneval_prompts(2))
    trainer.train()
    assert trainer.state.global_step == 1 and reward.calls
    prompts, completions, kwargs = reward.calls[0]
    # TRL's reward-function contract in the installed version
    assert {"completion_ids", "trainer_state", "log_metric", "log_extra", "question"} <= set(kwargs), trl.__version__
    want = model.score(kwargs["question"], [c[-1]["content"] for c in completions])
    assert [r.reward for r in reward.reward.last] == pytest.approx([r.reward for r in want], abs=TOL)
    logged = [e for e in trainer.state.log_history if "rewards/codescaler/mean" in e]
    assert logged and "codescaler/valid_code" in logged[0] and "codescaler/truncated" in logged[0]


# -------------------------------------------------------------------------------------------------- verl

def test_verl_per_item_and_batch_signatures(server, model, qwen3_dir, cases):
    questions, responses = cases
    want = [r.reward for r in model.score(questions, responses)]
    infos = [{"question": q, "split": "train", "index": i} for i, q in enumerate(questions)]
    for kwargs in (dict(model=str(qwen3_dir), dtype="float32"), dict(url=server, api_key=KEY)):
        # verl's per-item call: compute_score(data_source=, solution_str=, ground_truth=, extra_info=, **reward_kwargs)
        got = [verl.compute_score(data_source="humaneval", solution_str=r, ground_truth=None, extra_info=info, **kwargs)
               for r, info in zip(responses, infos)]
        assert got == pytest.approx(want, abs=TOL)
        # verl's BatchRewardManager call: keyword lists
        got = verl.compute_score_batch(data_sources=["humaneval"] * len(responses), solution_strs=responses,
                                       ground_truths=[None] * len(responses), extra_infos=infos, **kwargs)
        assert got == pytest.approx(want, abs=TOL)
    # the reward loop adds its router arguments; the per-call options come from reward_kwargs
    last = verl.compute_score("d", responses[-1], None, {"question": questions[-1]}, url=server, api_key=KEY,
                              policy="last", reward_router_address=None, reward_model_tokenizer=None)
    assert last == pytest.approx(model.score(questions[-1:], responses[-1:], policy="last")[0].reward, abs=TOL)


def test_verl_question_sources_and_errors(model, qwen3_dir, cases):
    questions, responses = cases
    kwargs = dict(model=str(qwen3_dir), dtype="float32")
    want = model.score(questions[:1], responses[:1])[0].reward
    chat = [{"role": "system", "content": "x"}, {"role": "user", "content": questions[0]}]
    rendered = f"<|im_start|>system\nx<|im_end|>\n<|im_start|>user\n{questions[0]}<|im_end|>\n<|im_start|>assistant\n"
    for info in ({"prompt": chat}, {"prompt": questions[0]}, {"question": questions[0], "prompt": "other"},
                 {"prompt": rendered}):  # a rendered prompt's user turn, its final newline kept
        assert verl.compute_score("d", responses[0], None, info, **kwargs) == pytest.approx(want, abs=TOL)
    with pytest.raises(InputError, match=r"no 'question' \(nor 'prompt'\).*keys: \['answer'\]"):
        verl.compute_score("d", responses[0], "42", {"answer": "42"}, **kwargs)
    with pytest.raises(InputError, match="extra_infos\\[1\\]"):
        verl.compute_score_batch(["d"] * 2, responses[:2], [None] * 2, [{"question": "q"}, None], **kwargs)
    with pytest.raises(InputError, match="unknown option 'polcy'"):
        verl.compute_score("d", responses[0], None, {"question": "q"}, polcy="last", **kwargs)


def test_verl_concurrent_per_item_calls_share_model_calls(model, qwen3_dir, cases):
    """verl's reward loop calls compute_score per response from a thread pool: in-process calls that wait
    together run as one model call and still give each caller its own reward."""
    questions, responses = cases
    shared = scorer.shared_scorer(model=str(qwen3_dir), dtype="float32")
    calls = []
    real = shared.model.score_with_stats
    shared.model.score_with_stats = lambda *a, **k: calls.append(len(a[1])) or real(*a, **k)
    try:
        items = list(zip(questions, responses)) * 8
        with cf.ThreadPoolExecutor(16) as pool:
            got = list(pool.map(lambda qr: verl.compute_score("d", qr[1], None, {"question": qr[0]},
                                                              model=str(qwen3_dir), dtype="float32"), items))
    finally:
        del shared.model.score_with_stats
    assert got == pytest.approx([r.reward for r in model.score(*zip(*items))], abs=TOL)
    assert sum(calls) == len(items) and len(calls) < len(items)


def test_verl_managers_call_the_functions(model, qwen3_dir, cases):
    """Through verl itself when it is installed: its config loader, BatchRewardManager and reward-loop manager."""
    pytest.importorskip("verl", reason="verl is not installed (it pulls Ray; not a test dependency)")
    import numpy as np
    import torch
    from omegaconf import OmegaConf
    from verl import DataProto
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager import BatchRewardManager

    from transformers import AutoTokenizer

    questions, responses = cases
    tokenizer = AutoTokenizer.from_pretrained(qwen3_dir)
    ids = [tokenizer(r, add_special_tokens=False)["input_ids"] for r in responses]
    width = max(map(len, ids))
    prompt_len = 3
    batch = {"prompts": torch.ones(len(ids), prompt_len, dtype=torch.long),
             "responses": torch.tensor([x + [tokenizer.pad_token_id] * (width - len(x)) for x in ids]),
             "attention_mask": torch.tensor([[1] * prompt_len + [1] * len(x) + [0] * (width - len(x)) for x in ids])}
    non_tensor = {"data_source": np.array(["humaneval"] * len(ids), dtype=object),
                  "reward_model": np.array([{"ground_truth": None}] * len(ids), dtype=object),
                  "extra_info": np.array([{"question": q} for q in questions], dtype=object)}
    data = DataProto.from_dict(tensors=batch, non_tensors=non_tensor)
    want = [r.reward for r in model.score(questions, [tokenizer.decode(x, skip_special_tokens=True) for x in ids])]
    reward_kwargs = {"model": str(qwen3_dir), "dtype": "float32"}
    for name in ("compute_score_batch", "compute_score"):
        cfg = OmegaConf.create({"reward": {"custom_reward_function": {
            "path": "pkg://codescaler.integrations.verl", "name": name, "reward_kwargs": reward_kwargs}}})
        fn = get_custom_reward_fn(cfg)
        if name == "compute_score_batch":
            out = BatchRewardManager(tokenizer, num_examine=0, compute_score=fn)(data, return_dict=True)
            rows = out["reward_tensor"]
            got = [rows[i, len(x) - 1].item() for i, x in enumerate(ids)]
        else:
            from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager

            manager = NaiveRewardManager(OmegaConf.create({}), tokenizer, compute_score=fn)

            async def each(manager=manager):
                return await asyncio.gather(*(manager.run_single(data[i:i + 1]) for i in range(len(ids))))

            got = [o["reward_score"] for o in manager.loop.run_until_complete(each())]
        assert got == pytest.approx(want, abs=TOL), name


# ---------------------------------------------------------------------------------------------- OpenRLHF

def _openrlhf_module():
    """The file loaded the way OpenRLHF loads ``--reward.remote_url x.py``."""
    spec = importlib.util.spec_from_file_location("reward_func", openrlhf.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_openrlhf_reward_func_in_process_and_by_url(server, model, qwen3_dir, cases, monkeypatch):
    import torch

    questions, responses = cases
    prompts = [f"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
               for q in questions]
    queries = [p + r + "<|im_end|>" + "<|endoftext|>" * 2 for p, r in zip(prompts, responses)]
    labels = [""] * len(queries)
    reward_func = _openrlhf_module().reward_func

    monkeypatch.delenv("CODESCALER_MODEL", raising=False)
    monkeypatch.setenv("CODESCALER_URL", server)
    monkeypatch.setenv("CODESCALER_API_KEY", KEY)
    asked = questions  # the rendered user turn byte for byte: HumanEval prompts keep their final newline
    want = model.score(asked, responses)
    out = reward_func(queries, prompts, labels)
    assert isinstance(out["rewards"], torch.Tensor) and out["rewards"].shape == (len(queries),)
    assert out["rewards"].tolist() == pytest.approx([r.reward for r in want], abs=TOL)
    assert torch.equal(out["scores"], out["rewards"])
    assert out["extra_logs"]["valid_code"].tolist() == [float(r.status == "ok") for r in want]
    # the same answer as the server's own /get_reward, which OpenRLHF can also call directly
    direct = httpx.post(server + "/get_reward", json={"query": queries, "prompts": prompts, "labels": labels},
                        headers={"Authorization": f"Bearer {KEY}"}, timeout=60).json()
    assert torch.equal(out["rewards"], torch.tensor(direct["rewards"], dtype=torch.float32))
    with Client(server, api_key=KEY) as c:  # and /v1/rewards on the dataset's own pairs, bit for bit
        assert direct["rewards"] == [r.reward for r in c.score(questions, responses)]

    monkeypatch.delenv("CODESCALER_URL")
    monkeypatch.setenv("CODESCALER_MODEL", str(qwen3_dir))
    default = RewardModel.from_pretrained(qwen3_dir)  # the env gives no options: the model's default dtype
    with cf.ThreadPoolExecutor(4) as pool:  # OpenRLHF calls it per query from threads
        got = list(pool.map(lambda i: reward_func([queries[i]], [prompts[i]], [""])["rewards"][0].item(),
                            range(len(queries))))
    # bfloat16 (the default on CPUs with native bf16) rounds differently as calls merge differently
    tol = TOL if default.dtype == "float32" else 2e-2
    assert got == pytest.approx([r.reward for r in default.score(asked, responses)], abs=tol)
    with pytest.raises(InputError, match=r"queries\[0\].*does not start with its prompt"):
        reward_func(["<|im_start|>user\nq<|im_end|>\n"], ["something else"], [""])


def test_shared_scorer_needs_exactly_one_source(monkeypatch):
    monkeypatch.delenv("CODESCALER_URL", raising=False)
    monkeypatch.delenv("CODESCALER_MODEL", raising=False)
    with pytest.raises(InputError, match=r"\$CODESCALER_URL and \$CODESCALER_MODEL"):
        scorer.shared_scorer()
    with pytest.raises(InputError, match="both set"):
        scorer.shared_scorer(url="http://x", model="tiny")
    with pytest.raises(InputError, match="http:// or https://"):
        scorer.shared_scorer(url="x:80")


# --------------------------------------------------------------------------- vLLM's /classify and /pooling

AUTH = {"Authorization": f"Bearer {KEY}"}


def _chatml(question: str, response: str) -> str:
    """A conversation as a reward model's ChatML template renders it (verl's DisRM sends this as 'input')."""
    return (f"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
            f"<|im_start|>assistant\n{response}<|im_end|>\n")


def test_classify_and_pooling_take_vllm_bodies_and_equal_v1_rewards_bitwise(server, cases):
    questions, responses = cases
    post = lambda path, body: httpx.post(server + path, json=body, headers=AUTH, timeout=60)  # noqa: E731
    want = post("/v1/rewards", {"items": [{"question": q, "response": r} for q, r in zip(questions, responses)]})
    want = want.json()["results"]
    texts = [_chatml(q, r) for q, r in zip(questions, responses)]

    # input: a list of rendered conversations; vLLM-only fields are accepted (verl's DisRM sends 'activation')
    got = post("/classify", {"model": "codescaler", "input": texts, "activation": False, "priority": 0,
                             "truncate_prompt_tokens": -1}).json()
    assert got["object"] == "list" and got["id"].startswith("classify-") and got["model"] == "codescaler"
    assert isinstance(got["created"], int)
    assert [d["index"] for d in got["data"]] == list(range(len(texts)))
    assert [d["probs"] for d in got["data"]] == [[w["reward"] for w in want][i:i + 1] for i in range(len(want))]
    assert [(d["raw_score"], d["status"], d["truncated"]) for d in got["data"]] == \
        [(w["raw_score"], w["status"], w["truncated"]) for w in want]
    assert {(d["label"], d["num_classes"]) for d in got["data"]} == {("reward", 1)}
    usage = got["usage"]  # tokens the model ran (a reward cache hit runs none)
    assert usage["prompt_tokens"] == usage["total_tokens"] and usage["completion_tokens"] == 0
    fresh = post("/classify", {"input": _chatml(f"q{time.time_ns()}", "```python\nx = 1\n```")}).json()["usage"]
    assert fresh["prompt_tokens"] == fresh["total_tokens"] > 0
    pooled = post("/pooling", {"input": texts}).json()
    assert pooled["id"].startswith("pool-") and [d["object"] for d in pooled["data"]] == ["pooling"] * len(texts)
    assert [d["data"] for d in pooled["data"]] == [[w["reward"]] for w in want]
    assert pooled["usage"] == usage

    # input: one string; messages: one conversation (text parts joined); same bits each time
    for i in (0, 3, 5):
        one = post("/classify", {"input": texts[i]}).json()["data"]
        assert one[0]["probs"] == [want[i]["reward"]] and one[0]["index"] == 0
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": questions[i]},
                    {"role": "assistant", "content": [{"type": "text", "text": responses[i][:7]},
                                                      {"type": "text", "text": responses[i][7:]}]}]
        for path, key in (("/classify", "probs"), ("/pooling", "data")):
            got = post(path, {"model": "m", "messages": messages}).json()["data"]
            assert got[0][key] == [want[i]["reward"]], path
    b64 = post("/pooling", {"input": texts[0], "encoding_format": "base64"}).json()["data"][0]["data"]
    assert base64.b64decode(b64) == struct.pack("=f", want[0]["reward"])

    # the question is passed through as rendered: a HumanEval prompt keeps its final newline
    assert questions[0].endswith("\n")


@pytest.mark.parametrize("path", ["/classify", "/pooling"])
def test_classify_and_pooling_refuse_what_they_cannot_score(server, path):
    def refused(body: bytes | dict) -> str:
        kw = {"content": body} if isinstance(body, bytes) else {"json": body}
        r = httpx.post(server + path, headers={**AUTH, "Content-Type": "application/json"}, timeout=60, **kw)
        assert r.status_code == 422, r.text
        return r.json()["error"]["message"]

    ok = _chatml("q", "```python\nx = 1\n```")
    assert "lone surrogate" in refused(b'{"input": ["' + json.dumps(ok)[1:-1].encode() + b'", "\\ud800"]}')
    assert refused(b'{"messages": [{"role": "user", "content": "\\udfff"}]}').startswith("messages[0].content")
    assert "exactly one of 'input' and 'messages'" in refused({"input": ok, "messages": []})
    assert "token ids are not accepted" in refused({"input": [1, 2, 3]})
    assert refused({"input": [ok, "plain text"]}).startswith("input[1]: the query is neither ChatML nor Llama-3")
    assert "no assistant turn" in refused({"messages": [{"role": "user", "content": "q"}]})
    assert "only text parts" in refused({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})
    assert "truncate_prompt_tokens 16 is below" in refused({"input": ok, "truncate_prompt_tokens": 16})


def test_classify_and_pooling_are_in_the_openapi_schema(server):
    schema = httpx.get(server + "/openapi.json", timeout=30).json()
    for path, response in (("/classify", "ClassificationResponse"), ("/pooling", "PoolingResponse")):
        post = schema["paths"][path]["post"]
        assert post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(response)
        assert {"422", "504"} <= set(post["responses"])
    fields = schema["components"]["schemas"]["PoolingRequest"]["properties"]
    assert {"model", "input", "messages", "truncate_prompt_tokens", "encoding_format"} <= set(fields)


# ------------------------------------------------------------------ async entry points (verl, TRL)

def test_verl_async_entry_point_equals_the_sync_one(server, qwen3_dir, cases):
    questions, responses = cases
    infos = [{"question": q} for q in questions]
    for kwargs in (dict(model=str(qwen3_dir), dtype="float32"), dict(url=server, api_key=KEY)):
        sync = [verl.compute_score("d", r, None, info, **kwargs) for r, info in zip(responses, infos)]

        async def per_sample(kwargs=kwargs):  # verl's reward loop: one awaited call per sample, all at once
            return await asyncio.gather(*(verl.compute_score_async(data_source="d", solution_str=r, ground_truth=None,
                                                                   extra_info=info, reward_router_address=None,
                                                                   reward_model_tokenizer=None, **kwargs)
                                          for r, info in zip(responses, infos)))

        assert asyncio.run(per_sample()) == sync, kwargs
    assert inspect.iscoroutinefunction(verl.compute_score_async)  # what verl checks to await it


def test_trl_async_reward_equals_the_sync_one(server, model, cases, monkeypatch):
    from codescaler.integrations.trl import AsyncCodeScalerReward, CodeScalerReward

    questions, responses = cases
    monkeypatch.setenv("CODESCALER_API_KEY", KEY)
    prompts = [[{"role": "user", "content": q}] for q in questions]
    completions = [[{"role": "assistant", "content": r}] for r in responses]
    for target in (model, server):
        want = CodeScalerReward(target)(prompts, completions)
        reward = AsyncCodeScalerReward(target)
        logged = []
        got = asyncio.run(reward(prompts, completions, log_metric=lambda k, v: logged.append((k, v))))
        assert got == want and reward.__name__ == "codescaler"
        assert ("codescaler/fallback", 0.0) in logged if target == server else len(logged) == 2
    try:
        from trl.trainer.utils import is_async_callable
    except ImportError:
        return
    assert is_async_callable(AsyncCodeScalerReward(model)) and not is_async_callable(CodeScalerReward(model))
    with pytest.raises(InputError, match="codescaler serve"):
        AsyncCodeScalerReward(server, dtype="float32")


def test_trl_awaits_the_async_reward_inside_a_grpo_step(server, model, tiny_policy, tmp_path, monkeypatch):
    pytest.importorskip("trl")
    from trl import GRPOConfig, GRPOTrainer

    from codescaler.integrations.trl import AsyncCodeScalerReward
    from codescaler.training.grpo_example import humaneval_prompts

    monkeypatch.setenv("CODESCALER_API_KEY", KEY)
    reward = AsyncCodeScalerReward(server)
    config = GRPOConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2, num_generations=2,
                        max_completion_length=8, logging_steps=1, save_strategy="no", report_to=[], seed=0,
                        bf16=False, disable_tqdm=True)
    trainer = GRPOTrainer(model=str(tiny_policy), reward_funcs=reward, args=config, train_dataset=humaneval_prompts(2))
    trainer.train()
    assert trainer.state.global_step == 1 and reward.calls >= 1 and reward.last
    assert all(r.status not in ("timeout", "unreachable", "busy") for r in reward.last)
    logged = [e for e in trainer.state.log_history if "rewards/codescaler/mean" in e]
    assert logged and logged[0]["codescaler/fallback"] == 0.0


# --------------------------------------------------------------------------- deadlines and the fallback

class Silent:
    """A server that accepts connections and never answers (a stopped process: the kernel still accepts)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self):
        self.sock.close()


def test_fallback_on_a_deadline_that_cannot_be_met(server, caplog):
    silent = Silent()
    try:
        for url, timeout in ((silent.url, 0.5), (server, 0.001)):  # no answer; an answer later than 1 ms
            with Client(url, api_key=KEY, timeout=timeout, fallback=0.0) as c:
                started = time.monotonic()
                with caplog.at_level("WARNING", logger="codescaler.client"):
                    got = c.score(["q"] * 3, ["```python\nx = 1\n```"] * 3)
                assert time.monotonic() - started < timeout + 2
                assert [(r.reward, r.raw_score, r.status) for r in got] == [(0.0, None, "timeout")] * 3
                assert c.fallbacks == 3 and "3 items get the fallback reward 0.0 (timeout)" in caplog.text
        with Client(silent.url, timeout=0.3) as c, pytest.raises(ServerTimeoutError):  # no fallback: raised
            c.score(["q"], ["a"])

        async def grouped():
            async with AsyncClient(silent.url, timeout=0.3, fallback=None, chunk_items=2) as c:
                return await c.score_groups(["q1", "q2"], [["a", "b"], ["c"]]), c.fallbacks

        groups, count = asyncio.run(grouped())  # two requests, each its own fallbacks, groups kept in shape
        assert [[(r.reward, r.status) for r in g] for g in groups] == [[(None, "timeout")] * 2, [(None, "timeout")]]
        assert count == 3
    finally:
        silent.close()


def test_fallback_on_connection_refused_and_busy_but_not_on_refusals():
    dead = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with Client(dead, timeout=1.0, fallback=-1.0) as c:  # retries stop at the deadline
        assert [(r.reward, r.status) for r in c.score(["q"] * 2, ["a"] * 2)] == [(-1.0, "unreachable")] * 2
    assert time.monotonic() - started < 3 and c.fallbacks == 2
    # verl's and TRL's entry points give a server's client the fallback 0.0 unless told otherwise
    assert verl.compute_score("d", "a", None, {"question": "q"}, url=dead, timeout=0.5) == 0.0
    assert asyncio.run(verl.compute_score_async("d", "a", None, {"question": "q"}, url=dead, timeout=0.5,
                                                fallback=None)) is None
    from codescaler.integrations.trl import AsyncCodeScalerReward

    reward, logged = AsyncCodeScalerReward(dead, timeout=0.5), {}
    assert asyncio.run(reward(["q"] * 2, ["a", "b"], log_metric=logged.__setitem__)) == [0.0, 0.0]
    assert logged["codescaler/fallback"] == 1.0 and reward.model.fallbacks == 2

    stub = Stub([(503, {"Retry-After": "3600"}, BUSY[2])])
    try:  # a wait past the deadline is not waited
        got = Client(stub.url, timeout=1.0, fallback=0.0).score(["q"], ["a"])
        assert [(r.reward, r.status) for r in got] == [(0.0, "busy")] and len(stub.seen) == 1
    finally:
        stub.close()
    stub = Stub([(422, {}, {"error": {"type": "invalid_request", "message": "items[0].question: bad"}})])
    try:  # the request itself is wrong: every step would fail alike, so it is raised
        with pytest.raises(RejectedRequestError, match="items\\[0\\].question"):
            Client(stub.url, fallback=0.0).score(["q"], ["a"])
    finally:
        stub.close()
    with pytest.raises(InputError, match="fallback must be a number, None or 'raise'"):
        Client(dead, fallback="zero")
    with pytest.raises(InputError, match="apply to a server"):
        verl.compute_score("d", "a", None, {"question": "q"}, model="tiny", timeout=1.0)


# ------------------------------------------------------------------------------------- docs snippet

RL_PAGE = Path(__file__).resolve().parents[1] / "docs" / "rl.md"


def _blocks(lang: str) -> list[str]:
    text = RL_PAGE.read_text(encoding="utf-8")
    return [m.group(1) for m in re.finditer(rf"^```{lang}\n(.*?)^```$", text, re.DOTALL | re.MULTILINE)]


def test_readme_snippet_runs(tmp_path, monkeypatch):
    """The docs' RL page (docs/rl.md) as written: its server line, its Python blocks, its verl and OpenRLHF
    settings."""
    (serve,) = [x for x in _blocks("bash")[0].splitlines() if x.startswith("codescaler serve")]
    port = _free_port()
    cmd = shlex.split(serve.replace("--port 8000", f"--port {port}"))
    proc = subprocess.Popen([sys.executable, "-m", "codescaler.cli", *cmd[1:]], stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "serve.log", "wb"))
    try:
        namespace: dict = {"__name__": "snippet"}
        for i, code in enumerate(_blocks("python")):
            code = code.replace("localhost:8000", f"localhost:{port}")
            exec(compile(code, f"docs/rl.md python block {i + 1}", "exec"), namespace)
    finally:
        proc.terminate()
        proc.wait(30)
    tiny = RewardModel.from_pretrained("tiny")
    question, responses = namespace["question"], namespace["responses"]
    assert namespace["reward"](namespace["prompts"], namespace["completions"]) == \
        [r.reward for r in tiny.score([question] * 2, responses)]

    # verl: the YAML loaded as verl loads it (pkg:// module, reward_kwargs merged into every call) ...
    (yaml_block,) = _blocks("yaml")
    fn_cfg = yaml.safe_load(yaml_block)["reward"]["custom_reward_function"]
    fn = getattr(importlib.import_module(fn_cfg["path"].removeprefix("pkg://")), fn_cfg["name"])
    got = fn(data_source="d", solution_str=responses[0], ground_truth=None, extra_info={"question": question},
             **fn_cfg["reward_kwargs"])
    assert got == pytest.approx(tiny.score([question], responses[:1])[0].reward, abs=TOL)
    # ... and the command line sets the same values
    verl_line, openrlhf_lines = _blocks("shell")
    overrides = dict(x.lstrip("+").split("=", 1) for x in shlex.split(verl_line) if "=" in x)
    assert overrides == {"reward.custom_reward_function.path": fn_cfg["path"],
                         "reward.custom_reward_function.name": fn_cfg["name"],
                         "reward.custom_reward_function.reward_kwargs.model": fn_cfg["reward_kwargs"]["model"]}

    # OpenRLHF: the exported variable and the file the command substitution names
    export, launch = openrlhf_lines.strip().splitlines()
    name, value = export.removeprefix("export ").split("=")
    monkeypatch.setenv(name, value)
    monkeypatch.delenv("CODESCALER_URL", raising=False)
    inner = re.search(r"\$\((.*)\)", launch).group(1)
    path = subprocess.run(shlex.split(inner.replace("python ", f"{sys.executable} ", 1)), check=True,
                          capture_output=True, text=True).stdout.strip()
    assert Path(path).resolve() == Path(openrlhf.__file__).resolve()
    prompt = f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    out = _openrlhf_module().reward_func([prompt + r + "<|im_end|>" for r in responses], [prompt] * 2, ["", ""])
    assert out["rewards"].tolist() == pytest.approx([r.reward for r in tiny.score([question] * 2, responses)],
                                                    abs=TOL)


def test_verl_command_line_of_the_snippet_composes(cases):
    """The snippet's override line against verl's own Hydra config, when verl is installed."""
    pytest.importorskip("verl", reason="verl is not installed (it pulls Ray; not a test dependency)")
    import verl as verl_package
    from hydra import compose, initialize_config_dir
    from verl.trainer.ppo.reward import get_custom_reward_fn

    overrides = [x for x in shlex.split(_blocks("shell")[0]) if "=" in x]
    with initialize_config_dir(config_dir=str(Path(verl_package.__file__).parent / "trainer" / "config"),
                               version_base=None):
        cfg = compose("ppo_trainer", overrides=overrides)
    fn = get_custom_reward_fn(cfg)
    questions, responses = cases
    got = fn(data_source="d", solution_str=responses[0], ground_truth=None, extra_info={"question": questions[0]})
    assert got == pytest.approx(RewardModel.from_pretrained("tiny").score(questions[:1], responses[:1])[0].reward,
                                abs=TOL)
