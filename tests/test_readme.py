"""Every code example in README.md and in the docs site's pages (docs/*.md, in mkdocs.yml's nav order)
runs as written: Python blocks are executed, `codescaler` command lines are run, curl examples are sent to
a `codescaler serve` the test starts, and every other shell line must be one that `.ci/run` runs
verbatim. The RL page's ```yaml and ```shell blocks (framework launch settings that need a GPU cluster)
are checked by tests/test_integrations.py, and the "More than one machine" page's ```shell block (Ray:
the extra, `score --ray` locally and on a cluster, `serve run`) is run as written by tests/test_ray.py.
README.md's links to the docs must point to files that exist."""

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
import yaml

from conftest import wait_healthy

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def _nav_files(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    items = node.values() if isinstance(node, dict) else node
    return [name for item in items for name in _nav_files(item)]


class _MkDocsLoader(yaml.SafeLoader):
    """Reads mkdocs.yml, whose `!relative` tag (paths relative to the file) plain YAML does not know."""


_MkDocsLoader.add_constructor("!relative", lambda loader, node: loader.construct_scalar(node))


def nav_pages() -> list[str]:
    """The docs pages in the site's order (mkdocs.yml's nav)."""
    return _nav_files(yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_MkDocsLoader)["nav"])


def pages() -> list[Path]:
    """README.md, then the docs pages in nav order: the order a reader meets the examples, which is the
    order they run in (a Python block may use names an earlier one defined)."""
    return [README, *(DOCS / name for name in nav_pages())]


def blocks(lang: str) -> list[tuple[str, str]]:
    """The fenced ``lang`` blocks of README.md and the docs pages, in order, as (where, body); where names
    the file and the block's number among its ``lang`` blocks."""
    out = []
    for page in pages():
        body, inside, n = [], None, 0
        for line in page.read_text(encoding="utf-8").splitlines():
            fence = re.match(r"^\s*```(\w*)\s*$", line)
            if fence and inside is None:
                inside, body = fence.group(1), []
            elif fence and inside is not None and not fence.group(1):
                if inside == lang:
                    n += 1
                    out.append((f"{page.relative_to(ROOT)} {lang} block {n}", "\n".join(body)))
                inside = None
            elif inside is not None:
                body.append(line)
    return out


def shell_lines() -> list[str]:
    lines = []
    for _, block in blocks("bash"):
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
    readme = [where for where, _ in blocks("python") + blocks("bash") if where.startswith("README.md")]
    assert any(" python " in x for x in readme) and any(" bash " in x for x in readme)
    assert blocks("python") and any(x.startswith("codescaler score") for x in shell_lines())


def test_every_docs_page_is_in_the_site():
    """A page left out of mkdocs.yml's nav would be neither on the site nor run here."""
    nav = nav_pages()
    assert len(nav) == len(set(nav))
    assert set(nav) == {p.name for p in DOCS.glob("*.md")}


def test_readme_links_point_to_existing_files():
    """README.md's relative links (its map of the docs) name files in the repository, so they work on
    GitHub, and the map names every page of the site."""
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text(encoding="utf-8"))
    relative = [x.split("#")[0] for x in links if not re.match(r"^([a-z][a-z0-9+.-]*:|#)", x)]
    assert relative, "README.md links to no docs page"
    missing = [x for x in relative if not (ROOT / x).is_file()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
    assert {f"docs/{name}" for name in nav_pages()} <= set(relative)


def _local(text: str, port: int) -> str:
    return text.replace("localhost:8000", f"localhost:{port}").replace("127.0.0.1:8000", f"127.0.0.1:{port}")


def test_python_examples_run(workdir, server, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    namespace: dict = {"__name__": "readme"}
    for where, code in blocks("python"):
        exec(compile(_local(code, server), where, "exec"), namespace)


def test_command_examples_run(workdir):
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ran = 0
    for line in shell_lines():
        cmd = shlex.split(line)
        if cmd[0] == "codescaler" and cmd[1] != "serve":
            proc = subprocess.run(line, shell=True, cwd=workdir, env=_env(), capture_output=True, text=True,
                                  timeout=600)
            assert proc.returncode == 0, f"docs command failed: {line}\n{proc.stderr}"
            assert "Traceback" not in proc.stderr
            ran += 1
        elif cmd[0] not in ("codescaler", "curl"):
            assert line in ci, f"docs shell line is neither run by this test nor verbatim in .ci/run: {line}"
    assert ran >= 3
    out = [json.loads(x) for x in (workdir / "rewards.jsonl").read_text().splitlines()]
    assert len(out) == 9 and {o["status"] for o in out} == {"ok", "syntax_error", "no_block"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(workdir):
    """The docs' first `codescaler serve` command, on a free port; yields the port."""
    serve = [x for x in shell_lines() if x.startswith("codescaler serve")]
    assert serve, "the docs show no `codescaler serve` command"
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
        pytest.skip("the docs have no curl examples yet")
    for line in curls:
        got = subprocess.run(_local(line, server) + " --fail-with-body --silent --show-error", shell=True,
                             cwd=workdir, env=_env(), capture_output=True, text=True, timeout=120)
        assert got.returncode == 0, f"docs curl example failed: {line}\n{got.stdout}\n{got.stderr}"
        if "/metrics" not in line:
            json.loads(got.stdout)
