"""Ray: `codescaler score --ray` on a local Ray instance gives the single-process rewards row for row
(JSONL and Parquet, 2 actors, malformed rows kept as error rows), survives a killed actor without losing
or repeating a row, and the Ray Serve app answers like `codescaler serve`. The docs' "More than one
machine" page's commands (docs/ray.md, its ```shell block) run here as written."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from codescaler.cli import main as cli_main  # noqa: E402
from codescaler.errors import InputError  # noqa: E402
from codescaler.integrations import ray_data  # noqa: E402
from conftest import wait_healthy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ROWS = 2000
BAD_LINES = {7: b"", 99: b"{not json", 500: b'{"id": "x", "question": "q"}', 1234: b"\xff\xfe junk", 1999: b"[1, 2]"}


def _env(**extra) -> dict:
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", **extra)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def _readme_ray_lines() -> list[str]:
    """The lines of the first ```shell block of the docs' "More than one machine" page (docs/ray.md)."""
    text = (ROOT / "docs" / "ray.md").read_text(encoding="utf-8")
    block = text[text.index("```shell\n") + 9:]
    return [x.strip() for x in block[:block.index("```")].splitlines() if x.strip()]


@pytest.fixture(scope="module")
def data(tmp_path_factory, humaneval):
    """2,000 JSONL lines (GRPO-like groups of 13, five malformed lines) and the same rows as Parquet."""
    d = tmp_path_factory.mktemp("ray")
    lines, records = [], []
    for p in humaneval:
        for k in range(13):
            sol = (p["prompt"] + p["canonical_solution"]).strip()
            body = (sol, p["prompt"].strip() + "\n    return None", "x = (")[k % 3]
            rec = {"id": f"{p['task_id']}/{k}", "question": p["prompt"], "extra": {"k": k},
                   "response": f"Here:\n```python\n{body}\n```" if k % 4 else "No code."}
            records.append(rec)
            lines.append(json.dumps(rec).encode())
    lines = lines[:ROWS]
    for n, raw in BAD_LINES.items():
        lines[n - 1] = raw
    (d / "rollouts.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    table = pa.Table.from_pylist([{k: v for k, v in r.items() if k != "extra"} for r in records[:ROWS]])
    responses = table.column("response").to_pylist()
    for n in BAD_LINES:  # the same rows are malformed in Parquet: a null response
        responses[n - 1] = None
    table = table.set_column(table.column_names.index("response"), "response", pa.array(responses, pa.string()))
    pq.write_table(table, d / "rollouts.parquet", row_group_size=700)
    shards = d / "shards"  # the JSONL cut in two files, for a folder input
    shards.mkdir()
    (shards / "a.jsonl").write_bytes(b"\n".join(lines[:1100]) + b"\n")
    (shards / "b.jsonl").write_bytes(b"\n".join(lines[1100:]))  # no final newline
    return d


@pytest.fixture(scope="module")
def reference(data):
    """Single-process `codescaler score` at float32, the rows every Ray run must reproduce."""
    out = data / "reference.jsonl"
    assert cli_main(["score", "--model", "tiny", "--dtype", "float32", "--input", str(data / "rollouts.jsonl"),
                     "--output", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == ROWS and sum(r["status"] == "input_error" for r in rows) == len(BAD_LINES)
    return rows


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance in this process (2 CPUs); yields its address for other processes."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False)
    print(f"\nray.init: {time.perf_counter() - started:.1f} s")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _same_rewards(got: list[dict], reference: list[dict]) -> None:
    assert len(got) == len(reference)
    for n, (g, r) in enumerate(zip(got, reference), 1):
        assert g["status"] == r["status"], f"row {n}"
        if r["status"] == "input_error":
            assert g["reward"] is None and g["error"]
            continue
        assert g["id"] == r["id"] and g["truncated"] == r["truncated"], f"row {n}"
        # Same input, same bits: Ray's chunks and actors change nothing.
        assert (g["reward"], g["raw_score"]) == (r["reward"], r["raw_score"]), f"row {n}: {g} vs {r}"


def test_jsonl_on_two_actors_equals_single_process(data, reference, cluster):
    out = data / "ray.jsonl"
    started = time.perf_counter()
    summary, info = ray_data.score_with_ray("tiny", str(data / "rollouts.jsonl"), str(out), actors=2,
                                            options={"dtype": "float32"})
    print(f"\n2 actors, JSONL: {ROWS / (time.perf_counter() - started):.0f} rows/s")
    assert info["actors"] == 2 and summary.lines == ROWS and summary.errors == len(BAD_LINES)
    got = [json.loads(x) for x in out.read_text().splitlines()]
    _same_rewards(got, reference)
    assert got[0]["extra"] == {"k": 0} and got[0]["question"].startswith("from typing")  # input fields kept
    assert [g["error"] for g in got if "error" in g] == [reference[n - 1]["error"] for n in sorted(BAD_LINES)]
    assert got[99 - 1]["error"].startswith("line 99: invalid JSON")
    assert not (data / "ray.jsonl.part").exists()


def test_parquet_on_two_actors_equals_single_process(data, reference, cluster):
    out = data / "ray.parquet"
    summary, _ = ray_data.score_with_ray("tiny", str(data / "rollouts.parquet"), str(out), actors=2,
                                         options={"dtype": "float32"})
    table = pq.read_table(out)
    assert table.column_names == ["id", "question", "response", "reward", "raw_score", "status", "truncated",
                                  "error"]
    got = table.to_pylist()
    _same_rewards(got, reference)
    assert got[7 - 1]["error"] == "row 7: field 'response' must be a string (null)"
    assert summary.errors == len(BAD_LINES)


def _mixed_rows() -> list[dict]:
    """300 JSON rows whose fields disagree between rows: ids that are strings or integers, a field that
    first appears on row 261 (after the first batch of 256) with objects of two shapes, integers and floats
    in one field, and values Parquet cannot hold as themselves."""
    rows = []
    for i in range(300):
        row = {"id": f"g{i}" if i % 2 else i, "question": f"q{i % 7}", "response": f"```python\nx = {i}\n```"}
        if i >= 260:
            row["late"] = {"k": i} if i % 3 else {"j": "s"}
        if i % 5 == 0:
            row["num"] = i if i % 10 else i + 0.5
        row.update({280: {"huge": 2 ** 70}, 281: {"note": "a\ud800"}, 282: {"empty": {}}}.get(i, {}))
        rows.append(row)
    return rows


def _score_in_process(model, src: Path, out: Path):
    """``write_scored`` fed by the actors' code run in this process: what ``score --ray`` writes, without Ray."""
    inputs = ray_data.resolve_inputs(str(src))
    scorer = ray_data.Scorer.__new__(ray_data.Scorer)
    scorer.model, scorer.per_call, scorer.fmt = model, {}, inputs.format
    scorer.paths = inputs.paths if len(inputs.paths) > 1 else None

    def tables():
        for i, first, start, stop, _rows in inputs.chunks:
            chunk = pa.table({"format": [inputs.format], "path": [inputs.paths[i]], "file": [i], "first": [first],
                              "start": [start], "stop": [stop]})
            yield scorer(ray_data._read_chunks(chunk))

    return ray_data.write_scored(tables(), inputs, str(out))


def test_parquet_output_of_mixed_rows_keeps_every_field(qwen3_dir, tmp_path):
    from codescaler.model import RewardModel

    rows = _mixed_rows()
    src = tmp_path / "mixed.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = RewardModel.from_pretrained(qwen3_dir, dtype="float32")
    summary = _score_in_process(model, src, tmp_path / "out.parquet")
    assert summary.lines == 300 and summary.ok == 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mixed.jsonl", "out.parquet"]  # no .part, no spool
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column_names == ["id", "question", "response", "num", "late", "huge", "note", "empty", "reward",
                                  "raw_score", "status", "truncated", "error"]
    types = {f.name: f.type for f in table.schema}
    assert types["id"] == pa.string() and types["num"] == pa.float64() and types["huge"] == pa.string()
    assert types["late"] == pa.struct([("k", pa.int64()), ("j", pa.string())])
    got = table.to_pylist()
    assert [g["id"] for g in got[:3]] == ["0", "g1", "2"]  # strings as they are, integers as JSON text
    assert got[259]["late"] is None and got[261]["late"] == {"k": None, "j": "s"} and got[262]["late"] == {"k": 262, "j": None}
    assert got[10]["num"] == 10.5 and got[5]["num"] == 5.0 and got[1]["num"] is None
    assert (got[280]["huge"], got[281]["note"], got[282]["empty"]) == (str(2 ** 70), '"a\\ud800"', "{}")
    want = model.score([r["question"] for r in rows], [r["response"] for r in rows])
    assert [g["reward"] for g in got] == [w.reward for w in want]  # same bits as the API
    # the same run as JSONL keeps every value as it was
    _score_in_process(model, src, tmp_path / "out.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines[:2]] == [0, "g1"] and [x["reward"] for x in lines] == [g["reward"] for g in got]


def test_parquet_inputs_whose_schemas_differ_keep_every_column(qwen3_dir, tmp_path):
    from codescaler.model import RewardModel

    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pa.table({"id": pa.array([1, 2], pa.int32()), "question": ["q", "q"],
                             "response": ["```python\nx = 1\n```", "none"], "tag": [1, 2]}), folder / "a.parquet")
    pq.write_table(pa.table({"id": pa.array([3], pa.int64()), "question": ["q"], "response": ["```python\ny = 2\n```"],
                             "tag": ["three"], "late": [True]}), folder / "b.parquet")
    model = RewardModel.from_pretrained(qwen3_dir, dtype="float32")
    summary = _score_in_process(model, folder, tmp_path / "out.parquet")
    table = pq.read_table(tmp_path / "out.parquet")
    assert summary.lines == 3 and table.column_names[:5] == ["id", "question", "response", "tag", "late"]
    assert table.schema.field("id").type == pa.int64() and table.schema.field("tag").type == pa.string()
    assert table.column("id").to_pylist() == [1, 2, 3] and table.column("tag").to_pylist() == ["1", "2", "three"]
    assert table.column("late").to_pylist() == [None, None, True]
    assert table.column("status").to_pylist() == ["ok", "no_block", "ok"]


def test_mixed_rows_on_ray_give_the_same_parquet(qwen3_dir, cluster, tmp_path):
    """String and integer ids and a late field, JSONL in, Parquet out, on Ray: what the writer gets in
    this process, bit for bit."""
    from codescaler.model import RewardModel

    src = tmp_path / "mixed.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _mixed_rows()))
    summary, _ = ray_data.score_with_ray(str(qwen3_dir), str(src), str(tmp_path / "ray.parquet"), actors=1,
                                         options={"dtype": "float32"})
    _score_in_process(RewardModel.from_pretrained(qwen3_dir, dtype="float32"), src, tmp_path / "here.parquet")
    assert summary.lines == 300
    assert pq.read_table(tmp_path / "ray.parquet").equals(pq.read_table(tmp_path / "here.parquet"))


def test_killed_actor_loses_no_row(data, reference, cluster):
    """A scoring actor is SIGKILLed mid-run: Ray restarts it and retries its batch; the output, read from
    a folder of two files, still has every row once, in order."""
    def scorers() -> set[int]:
        """Pids of this test's scoring actors (descendants of this process, named by Ray)."""
        parents, names = {}, {}
        for d in Path("/proc").iterdir():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                names[int(d.name)] = (d / "cmdline").read_bytes().decode(errors="replace")
            except (ValueError, OSError, IndexError):
                continue
        mine = set()
        for pid, name in names.items():
            at = pid
            while at in parents and at != os.getpid():
                at = parents[at]
            if at == os.getpid() and "MapBatches(Scorer)" in name:
                mine.add(pid)
        return mine

    out = data / "killed.jsonl"
    first_rows = threading.Event()
    result: dict = {}

    def run():
        try:
            result["summary"] = ray_data.score_with_ray("tiny", str(data / "shards"), str(out), actors=2,
                                                        options={"dtype": "float32"},
                                                        on_rows=lambda n: first_rows.set())[0]
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["error"] = exc
        first_rows.set()

    worker = threading.Thread(target=run)
    worker.start()
    assert first_rows.wait(600)
    assert "error" not in result and "summary" not in result, "the run ended before an actor could be killed"
    before = scorers()
    assert len(before) == 2
    victim = sorted(before)[0]
    os.kill(victim, signal.SIGKILL)
    seen: set[int] = set()
    while worker.is_alive():
        seen |= set(scorers())
        worker.join(0.5)
    assert "error" not in result, result.get("error")
    assert seen - set(before), "no actor was started in place of the killed one"
    got = [json.loads(x) for x in out.read_text().splitlines()]
    _same_rewards(got, reference)
    assert got[1234 - 1]["error"].startswith(str(data / "shards" / "b.jsonl") + ": line 134: not valid UTF-8")
    assert result["summary"].lines == ROWS


def test_what_only_ray_can_do_is_refused_without_it(data, capsys):
    for argv, says in ((["--actors", "2"], "--actors needs --ray"),
                       (["--input", str(data / "rollouts.parquet")], "needs --ray"),
                       (["--input", str(data / "shards")], "needs --ray"),
                       (["--output", str(data / "x.parquet")], "Parquet output needs --ray")):
        args = {"--input": str(data / "rollouts.jsonl"), "--output": str(data / "x.jsonl")}
        extra = []
        for i in range(0, len(argv), 2):
            if argv[i] in args:
                args[argv[i]] = argv[i + 1]
            else:
                extra += argv[i:i + 2]
        code = cli_main(["score", "--model", "tiny", *[x for kv in args.items() for x in kv], *extra])
        assert code == 2 and says in capsys.readouterr().err


def test_inputs_are_resolved_and_cut_exactly(data, tmp_path):
    shards = ray_data.resolve_inputs(str(data / "shards"), rows_per_chunk=256)
    assert [Path(p).name for p in shards.paths] == ["a.jsonl", "b.jsonl"] and shards.rows == ROWS
    assert [(c[0], c[1], c[4]) for c in shards.chunks][:5] == [(0, 1, 256), (0, 257, 256), (0, 513, 256),
                                                               (0, 769, 256), (0, 1025, 76)]
    glob_in = ray_data.resolve_inputs(str(data / "shards" / "*.jsonl"))
    assert glob_in.paths == shards.paths
    assert ray_data.resolve_inputs(str(data / "rollouts.parquet"), 256).rows == ROWS
    assert max(c[4] for c in ray_data.resolve_inputs(str(data / "rollouts.parquet"), 256).chunks) <= 256
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "a.jsonl").write_text("{}\n")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "mixed" / "b.parquet")
    for path, says in ((tmp_path / "mixed", "both JSONL and Parquet"), (tmp_path / "none*.jsonl", "no file matches"),
                       (tmp_path / "absent.jsonl", "no such file")):
        with pytest.raises(InputError, match=says):
            ray_data.resolve_inputs(str(path))


def test_serve_app_arguments_are_checked():
    from codescaler.integrations import ray_serve

    with pytest.raises(InputError, match="model=PATH is required"):
        ray_serve.app({})
    with pytest.raises(InputError, match="unknown argument 'batch_size'"):
        ray_serve.app({"model": "tiny", "batch_size": "8"})
    with pytest.raises(InputError, match="max_batch_items='many': expected int"):
        ray_serve.app({"model": "tiny", "max_batch_items": "many"})
    with pytest.raises(InputError, match="dtype 'float64' is not available"):
        ray_serve.app({"model": "tiny", "dtype": "float64"})
    built = ray_serve.app({"model": "tiny", "min_replicas": "1", "max_replicas": "3", "threads": "2"})
    servers = built._bound_deployment.init_args[0]  # the model replicas, behind the ingress
    config = servers._bound_deployment._deployment_config
    assert config.autoscaling_config.max_replicas == 3 and config.max_ongoing_requests == 64
    assert config.graceful_shutdown_timeout_s == 25.0  # the drain a stopped replica gives its requests
    assert servers._bound_deployment.init_args[3] == 4096  # @serve.batch's limit: max_items, not less
    with pytest.raises(InputError, match=r"max_batch_items \(1024\) must be at least max_items \(4096\)"):
        ray_serve.app({"model": "tiny", "max_batch_items": "1024"})
    built = ray_serve.app({"model": "tiny", "max_items": "512", "max_batch_items": "1024", "drain_timeout": "5"})
    servers = built._bound_deployment.init_args[0]
    assert servers._bound_deployment.init_args[3] == 1024
    assert servers._bound_deployment._deployment_config.graceful_shutdown_timeout_s == 5.0


def test_readme_score_commands_run(data, cluster, tmp_path):
    """The docs' `codescaler score --ray` lines as written: the local one starts its own Ray instance;
    `--address auto` joins this test's cluster (through $RAY_ADDRESS, as on a node of a cluster)."""
    lines = _readme_ray_lines()
    assert lines[0] == 'pip install ".[ray]"'
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(x.startswith("ray[") for x in extras["ray"]) and "ray" in extras["test"][0]
    (tmp_path / "rollouts").mkdir()
    src = (data / "rollouts.jsonl").read_bytes().splitlines(keepends=True)[:40]
    (tmp_path / "rollouts.jsonl").write_bytes(b"".join(src))
    (tmp_path / "rollouts" / "part-0.jsonl").write_bytes(b"".join(src[:20]))
    (tmp_path / "rollouts" / "part-1.jsonl").write_bytes(b"".join(src[20:]))
    commands = [x for x in lines if x.startswith("codescaler score --ray")]
    assert len(commands) == 2 and "--address auto" in commands[1]
    for line in commands:
        env = _env()
        env.pop("RAY_ADDRESS", None)
        if "--address" in line:
            env["RAY_ADDRESS"] = cluster
        started = time.perf_counter()
        proc = subprocess.run(line, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        print(f"\n{line}: {time.perf_counter() - started:.1f} s; {proc.stderr.strip().splitlines()[-1]}")
        assert proc.returncode == 0, f"docs command failed: {line}\n{proc.stderr[-3000:]}"
        assert "Running Dataset" in proc.stderr or "Dataset" in proc.stderr  # Ray's progress shows
    table = pq.read_table(tmp_path / "rewards.parquet")
    assert table.num_rows == 40 and table.column("status").null_count == 0
    got = [json.loads(x) for x in (tmp_path / "rewards.jsonl").read_text().splitlines()]
    assert [g["id"] for g in got] == table.column("id").to_pylist()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def test_serve_app_answers_like_codescaler_serve(cluster, humaneval, tmp_path):
    """The docs' `serve run` line, deployed on this test's cluster (Serve started on a free port),
    against the app `codescaler serve` runs, with the same model in this process."""
    from fastapi.testclient import TestClient
    from ray import serve

    from codescaler.model import RewardModel
    from codescaler.serve.app import create_app

    line = next(x for x in _readme_ray_lines() if x.startswith("serve run "))
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    log = open(tmp_path / "serve.log", "w")
    started = time.perf_counter()
    proc = subprocess.Popen(shlex.split(line), cwd=tmp_path, env=_env(RAY_ADDRESS=cluster), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, tmp_path / "serve.log", seconds=300,
                     what="the Ray Serve app", poll=1)
        print(f"\nserve run -> /health 200: {time.perf_counter() - started:.1f} s")
        p = humaneval[0]
        good = f"```python\n{(p['prompt'] + p['canonical_solution']).strip()}\n```"
        bodies = [("/v1/rewards", {"items": [{"question": p["prompt"], "response": good},
                                             {"question": p["prompt"], "response": "no code"}]}),
                  ("/v1/rewards", {"groups": [{"question": p["prompt"], "responses": [good, "x", good + " "]}]}),
                  ("/v1/rerank", {"query": p["prompt"], "documents": ["nothing", good, {"text": good}], "top_n": 2})]
        with TestClient(create_app(RewardModel.from_pretrained("tiny"))) as local:
            scheduler = local.app.state.scheduler
            assert scheduler.loaded.wait(300) and scheduler.error is None, scheduler.error
            for path, body in bodies:
                want = local.post(path, json=body).json()
                got = _post(port, path, body)
                if path == "/v1/rerank":
                    assert [r["index"] for r in got["results"]] == [r["index"] for r in want["results"]]
                    assert got["usage"] == want["usage"]
                    pairs = zip(got["results"], want["results"])
                    assert all(abs(g["relevance_score"] - w["relevance_score"]) <= 1e-4 for g, w in pairs)
                    continue
                flat = lambda rs: [x for r in rs for x in (r if isinstance(r, list) else [r])]  # noqa: E731
                assert got["model"] == want["model"]
                for g, w in zip(flat(got["results"]), flat(want["results"]), strict=True):
                    assert g["status"] == w["status"] and abs(g["reward"] - w["reward"]) <= 1e-4
            bad = {"items": [{"question": 1}]}
            with pytest.raises(urllib.error.HTTPError) as err:
                _post(port, "/v1/rewards", bad)
            assert err.value.code == 422 and json.load(err.value) == local.post("/v1/rewards", json=bad).json()
        # concurrent requests are merged by @serve.batch: fewer model calls than requests
        import concurrent.futures as cf

        with cf.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: _post(port, "/v1/rewards", {"items": [{"question": p["prompt"],
                                                                            "response": good + f"\n# {i}"}]}),
                          range(24)))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            metrics = r.read().decode()
        calls = next(float(x.split()[-1]) for x in metrics.splitlines() if x.startswith("codescaler_model_call_seconds_count"))
        assert calls < 24 + len(bodies) + 1
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # serve run deletes its application on Ctrl-C
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        serve.shutdown()


def test_odd_text_is_an_input_error_row_on_ray(cluster, tmp_path):
    """The lines tests/test_cli.py scores with `codescaler score`: the same outcome on Ray, row for row."""
    from test_cli import GOOD_LINE, ODD_LINES

    src = tmp_path / "odd.jsonl"
    src.write_bytes(b"\n".join([GOOD_LINE] + [raw for raw, _ in ODD_LINES]) + b"\n")
    single, ray_out = tmp_path / "single.jsonl", tmp_path / "ray.jsonl"
    assert cli_main(["score", "--model", "tiny", "--dtype", "float32", "--input", str(src), "--output", str(single)]) == 0
    summary, _ = ray_data.score_with_ray("tiny", str(src), str(ray_out), actors=1, options={"dtype": "float32"})
    want = [json.loads(x) for x in single.read_text().splitlines()]
    got = [json.loads(x) for x in ray_out.read_text().splitlines()]
    assert summary.errors == len(ODD_LINES) and [g["status"] for g in got] == ["ok"] + ["input_error"] * len(ODD_LINES)
    assert [(g["id"], g["reward"], g.get("error")) for g in got] == [(w["id"], w["reward"], w.get("error")) for w in want]
