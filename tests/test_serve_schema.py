"""The OpenAPI schema tells the truth: schemathesis, with every check (responses against the schema, and
the server accepting the bodies the schema allows and refusing the ones it does not), sends generated
requests to a real `codescaler serve` (tiny model, API key, loopback Host allow-list)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import httpx
import pytest

from test_serve import KEY, Server

pytest.importorskip("schemathesis")

# Bodies of these routes carry rules JSON Schema cannot state (a chat text must parse, a query must start
# with its prompt, truncate_prompt_tokens against the model's max_length); their operations' descriptions
# say so, and a schema-valid body that breaks one gets 422. Every other route accepts every body its
# schema allows.
CONFIG = """
[[operations]]
include-path-regex = "^/(get_reward|classify|pooling)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "422"]
"""


@pytest.fixture(scope="module")
def keyed(qwen3_dir, tmp_path_factory):
    s = Server(qwen3_dir, tmp_path_factory.mktemp("serve") / "schema.log", "--batch-window-ms", "0",
               "--reward-cache", "off", env={"CODESCALER_API_KEY": KEY})
    yield s
    s.stop()


def test_schemathesis_finds_no_failure(keyed, tmp_path):
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{keyed.url}/openapi.json",
         "--checks", "all", "--mode", "all", "--phases", "examples,coverage,fuzzing", "--max-examples", "6",
         "--seed", "7", "--workers", "2", "--header", f"Authorization: Bearer {KEY}", "--request-timeout", "30",
         "--max-failures", "5"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    summary = run.stdout[run.stdout.rfind("SUMMARY"):]
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert "Tested: 9" in summary and generated and generated[1] == generated[2], summary


def test_schema_declares_the_key_only_when_there_is_one(keyed):
    from fastapi.testclient import TestClient

    from codescaler.serve import create_app
    from codescaler.serve.settings import ServeSettings

    schema = httpx.get(keyed.url + "/openapi.json").json()
    assert schema["components"]["securitySchemes"] == {"bearer": {
        "type": "http", "scheme": "bearer", "description": "the server's --api-key (or $CODESCALER_API_KEY)"}}
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            assert "400" in operation["responses"], path  # the loopback Host allow-list
            assert ("401" in operation["responses"]) == (path != "/health"), path
            assert ("security" in operation) == (path != "/health"), path
    assert set(schema["paths"]["/metrics"]["get"]["responses"]) == {"200", "400", "401"}
    assert {"408", "413", "415", "422", "503", "504"} <= set(schema["paths"]["/v1/rewards"]["post"]["responses"])

    open_schema = TestClient(create_app(lambda: None, ServeSettings())).get("/openapi.json").json()
    assert "securitySchemes" not in open_schema["components"]
    for operations in open_schema["paths"].values():
        for operation in operations.values():
            assert "401" not in operation["responses"] and "400" not in operation["responses"]
            assert "security" not in operation


FIELDS = ["items", "groups", "question", "response", "responses", "candidates", "query", "documents", "top_n",
          "return_documents", "model", "prompts", "labels", "input", "messages", "role", "content", "type", "text",
          "truncate_prompt_tokens", "encoding_format", "embed_dtype", "endianness", "policy", "language",
          "truncation", "score_empty"]
ROUTES = ["/v1/rewards", "/v1/best_of_n", "/v1/rerank", "/get_reward", "/classify", "/pooling"]
CHAT = "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n```python\nx = 1\n```<|im_end|>"


def test_no_request_body_gets_a_500(qwen3_dir):
    """Generated bodies (any JSON built from the API's field names and values, lone surrogates included,
    and arbitrary bytes) get a documented status and the JSON error, never a 500."""
    from fastapi.testclient import TestClient
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from codescaler import RewardModel
    from codescaler.serve import create_app

    text = st.text(st.characters(codec=None), max_size=12) | st.sampled_from(["", "q", CHAT, "```python\nx = 1\n```",
                                                                             "assistant", "text", "float", "\ud800"])
    scalars = st.none() | st.booleans() | st.integers(-3, 5000) | st.floats() | text
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=4), max_leaves=12)
    bodies = (st.dictionaries(st.sampled_from(FIELDS), values, max_size=5).map(lambda b: json.dumps(b).encode())
              | values.map(lambda b: json.dumps(b).encode()) | st.binary(max_size=64))
    texts = st.lists(text, max_size=3)
    shaped = {  # each route's own shape with generated values, so bodies also reach the model
        "/v1/rewards": st.fixed_dictionaries({"items": st.lists(st.fixed_dictionaries({"question": text, "response": text}),
                                                                max_size=3)})
        | st.fixed_dictionaries({"groups": st.lists(st.fixed_dictionaries({"question": text, "responses": texts}),
                                                    max_size=2)}),
        "/v1/best_of_n": st.fixed_dictionaries({"question": text, "candidates": texts}),
        "/v1/rerank": st.fixed_dictionaries({"query": text, "documents": st.lists(text | st.fixed_dictionaries(
            {"text": text}), max_size=3)}, optional={"top_n": scalars, "model": text, "return_documents": scalars}),
        "/get_reward": st.fixed_dictionaries({"query": texts}, optional={"prompts": texts, "labels": values}),
        "/classify": st.fixed_dictionaries({"input": text | texts}, optional={"truncate_prompt_tokens": scalars}),
        "/pooling": st.fixed_dictionaries({"messages": st.lists(st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "assistant", "system"]), "content": text}), max_size=3)},
            optional={"encoding_format": st.sampled_from(["float", "base64"]), "endianness": text}),
    }
    requests = st.tuples(st.sampled_from(ROUTES), bodies) | st.one_of(
        *[st.tuples(st.just(route), shape.map(lambda b: json.dumps(b).encode())) for route, shape in shaped.items()])

    model = RewardModel.from_pretrained(qwen3_dir, dtype="float32")
    with TestClient(create_app(model), raise_server_exceptions=False) as client:
        client.app.state.scheduler.loaded.wait(60)

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(request=requests)
        def check(request):
            route, body = request
            r = client.post(route, content=body, headers={"Content-Type": "application/json"})
            assert r.status_code in (200, 413, 422), (route, body, r.status_code, r.text)
            if r.status_code != 200:
                error = r.json()["error"]
                assert set(error) == {"type", "message"} and error["message"], (route, body, r.text)

        check()
