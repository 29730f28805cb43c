"""Every code example in README.md runs as written: Python blocks are executed, `codescaler` command
lines are run, curl examples are sent to a `codescaler serve` the test starts, and every other shell
line must be one that `.ci/run` runs verbatim. The RL section's ```yaml and ```shell blocks (framework
launch settings that need a GPU cluster) are checked by tests/test_integrations.py, and the "More than one
machine" section's ```shell block (Ray: the extra, `score --ray` locally and on a cluster, `serve run`) is run
as written by tests/test_ray.py."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import wait_healthy

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def blocks(lang: str) -> list[str]:
    """The bodies of the README's fenced ``lang`` blocks, in order."""
    out, body, inside = [], [], None
    for line in README.read_text(encoding="utf-8").splitlines():
        fence = re.match(r"^\s*```(\w*)\s*$", line)
        if fence and inside is None:
            inside, body = fence.group(1), []
        elif fence and inside is not None and not fence.group(1):
            if inside == lang:
                out.append("\n".join(body))
            inside = None
        elif inside is not None:
            body.append(line)
    return out


def shell_lines() -> list[str]:
    lines = []
    for block in blocks("bash"):
        joined = block.replace("\\\n", " ")
        lines += [x.strip() for x in joined.splitlines() if x.strip() and not x.strip().startswith("#")]
    return lines


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, humaneval):
    d = tmp_path_factory.mktemp("readme")
    with open(d / "rollouts.jsonl", "w") as f:
        for p in humaneval[:3]:
            for body in ((p["prompt"] + p["canonical_solution"]).strip(), "x = (", None):
                resp = "No code, sorry." if body is None else f"Here:\n```python\n{body}\n```"
                f.write(json.dumps({"id": p["task_id"], "question": p["prompt"], "response": resp}) + "\n")
    # RM-Bench's format (the Evaluate section's total_dataset.json) and a Best-of-N candidates file
    styles = (lambda c: c, lambda c: f"Solution:\n{c}", lambda c: f"## Solution\n\n```python\n{c}\n```")
    rm = [{"id": i, "prompt": p["prompt"], "domain": ("code", "chat")[i % 2],
           "chosen": [st((p["prompt"] + p["canonical_solution"]).strip()) for st in styles],
           "rejected": [st(p["prompt"].strip() + "\n    return None") for st in styles]}
          for i, p in enumerate(humaneval[:4])]
    (d / "total_dataset.json").write_text(json.dumps(rm))
    with open(d / "candidates.jsonl", "w") as f:
        for p in humaneval[:2]:
            good = f"```python\n{(p['prompt'] + p['canonical_solution']).strip()}\n```"
            bad = f"```python\n{p['prompt'].strip()}\n    return None\n```"
            f.write(json.dumps({"task_id": p["task_id"], "question": p["prompt"],
                                "responses": [good if k % 3 == 0 else bad for k in range(8)]}) + "\n")
    return d


def test_readme_has_examples_of_each_kind():
    assert blocks("python") and any(x.startswith("codescaler score") for x in shell_lines())


def _local(text: str, port: int) -> str:
    return text.replace("localhost:8000", f"localhost:{port}").replace("127.0.0.1:8000", f"127.0.0.1:{port}")


def test_python_examples_run(workdir, server, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    namespace: dict = {"__name__": "readme"}
    for i, code in enumerate(blocks("python")):
        exec(compile(_local(code, server), f"README.md python block {i + 1}", "exec"), namespace)


def test_command_examples_run(workdir):
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ran = 0
    for line in shell_lines():
        cmd = shlex.split(line)
        if cmd[0] == "codescaler" and cmd[1] != "serve":
            proc = subprocess.run(line, shell=True, cwd=workdir, env=_env(), capture_output=True, text=True,
                                  timeout=600)
            assert proc.returncode == 0, f"README command failed: {line}\n{proc.stderr}"
            assert "Traceback" not in proc.stderr
            ran += 1
        elif cmd[0] not in ("codescaler", "curl"):
            assert line in ci, f"README shell line is neither run by this test nor verbatim in .ci/run: {line}"
    assert ran >= 3
    out = [json.loads(x) for x in (workdir / "rewards.jsonl").read_text().splitlines()]
    assert len(out) == 9 and {o["status"] for o in out} == {"ok", "syntax_error", "no_block"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(workdir):
    """The README's `codescaler serve` command, on a free port; yields the port."""
    serve = [x for x in shell_lines() if x.startswith("codescaler serve")]
    assert serve, "README shows no `codescaler serve` command"
    port = _free_port()
    cmd = [x for x in shlex.split(serve[0])]
    if "--port" in cmd:
        del cmd[cmd.index("--port"):cmd.index("--port") + 2]
    log = open(workdir / "serve.log", "w")
    proc = subprocess.Popen([*cmd, "--port", str(port)], cwd=workdir, env=_env(), stdout=log, stderr=log)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, workdir / "serve.log", seconds=300, what="the server")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_curl_examples_answer(workdir, server):
    curls = [x for x in shell_lines() if x.startswith("curl ")]
    if not curls:
        pytest.skip("README has no curl examples yet")
    for line in curls:
        got = subprocess.run(_local(line, server) + " --fail-with-body --silent --show-error", shell=True,
                             cwd=workdir, env=_env(), capture_output=True, text=True, timeout=120)
        assert got.returncode == 0, f"README curl example failed: {line}\n{got.stdout}\n{got.stderr}"
        if "/metrics" not in line:
            json.loads(got.stdout)
