"""The command line: scoring a JSONL file keeps every line in order; bad input is one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from codescaler import RewardModel
from codescaler.cli import main
from conftest import fenced, write_jsonl


def test_score_file_keeps_ids_order_and_flags_bad_lines(qwen3_dir, tmp_path, humaneval, capsys):
    good = [{"id": f"g{i}", "question": p["prompt"], "response": fenced((p["prompt"] + p["canonical_solution"]).strip())}
            for i, p in enumerate(humaneval[:5])]
    rows = [good[0], "{not json", good[1], json.dumps([1, 2]), {"id": 7, "question": "q"},
            {"id": "n", "question": 3, "response": "x"}, good[2], {"id": "noblock", "question": "q", "response": "prose"},
            good[3], good[4]]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    assert main(["score", "--model", str(qwen3_dir), "--dtype", "float32", "--input", str(src), "--output", str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in lines] == ["g0", None, "g1", None, 7, "n", "g2", "noblock", "g3", "g4"]
    assert [x["status"] for x in lines] == ["ok", "input_error", "ok", "input_error", "input_error",
                                            "input_error", "ok", "no_block", "ok", "ok"]
    assert "line 2: invalid JSON" in lines[1]["error"]
    assert "expected a JSON object" in lines[3]["error"]
    assert "field 'response' must be a string (missing)" in lines[4]["error"]
    assert "field 'question' must be a string (int)" in lines[5]["error"]
    model = RewardModel.from_pretrained(qwen3_dir, dtype="float32")
    want = model.score([g["question"] for g in good], [g["response"] for g in good])
    got = [x for x in lines if x["status"] == "ok"]
    assert [x["reward"] for x in got] == pytest.approx([w.reward for w in want], abs=1e-6)
    assert "4 input error(s)" in capsys.readouterr().err


def test_chunking_does_not_reorder(qwen3_dir, tmp_path):
    from codescaler.cli.score import score_file

    model = RewardModel.from_pretrained(qwen3_dir, dtype="float32")
    rows = [{"id": i, "question": f"q{i % 3}", "response": fenced(f"x = {i}") if i % 4 else "none"} for i in range(23)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    with open(src, "rb") as f, open(tmp_path / "out.jsonl", "w") as g:
        score_file(model, f, g, chunk=5, progress=False)
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == list(range(23))
    whole = model.score([r["question"] for r in rows], [r["response"] for r in rows])
    assert [x["reward"] for x in lines] == pytest.approx([w.reward for w in whole], abs=1e-6)


# Lines with text that is not valid Unicode, as JSON escapes (the same cases as tests/test_serve.py's ODD):
# each is an input_error naming its field (an id that is not valid Unicode is not echoed either: null, as
# the C++ example answers); the lines around them are scored. Shared with tests/test_ray.py.
ODD_LINES = [
    (b'{"id": "out", "question": "q", "response": "\\ud800 Here:\\n```python\\nx = 1\\n```"}', "response"),
    (b'{"id": "in", "question": "q", "response": "```python\\nx = \'\\udfff\'\\n```"}', "response"),
    (b'{"id": "q", "question": "q\\ud800", "response": "```python\\nx = 1\\n```"}', "question"),
    (b'{"id": {"\\udc00": 1}, "question": "q", "response": "```python\\nx = 1\\n```"}', "id"),
]
GOOD_LINE = b'{"id": "good", "question": "q", "response": "```python\\nx = 1\\n```"}'


def test_odd_text_is_an_input_error_line(qwen3_dir, tmp_path):
    from codescaler.records import parse_line  # score --ray parses its lines with it too

    for n, (raw, field) in enumerate(ODD_LINES, 1):
        rec, err = parse_line(n, raw)
        assert err.startswith(f"line {n}: field {field!r} is not valid Unicode (")
    src = tmp_path / "odd.jsonl"
    src.write_bytes(b"\n".join([GOOD_LINE] + [raw for raw, _ in ODD_LINES] + [GOOD_LINE]) + b"\n")
    out = tmp_path / "odd.out.jsonl"
    assert main(["score", "--model", str(qwen3_dir), "--dtype", "float32", "--input", str(src), "--output", str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["status"] for x in lines] == ["ok"] + ["input_error"] * len(ODD_LINES) + ["ok"]
    assert [x["id"] for x in lines] == ["good", "out", "in", "q", None, "good"]
    for x, (_raw, field) in zip(lines[1:-1], ODD_LINES):
        assert x["reward"] is None and f"field {field!r} is not valid Unicode" in x["error"]
    assert lines[0]["reward"] == lines[-1]["reward"] > 0


def test_json_nested_too_deep_is_refused_in_place():
    """Python's json gives up near its recursion limit: that line is an input_error, not the end of the run;
    an error line whose id holds a lone surrogate gets id null whatever its first fault."""
    from codescaler.records import parse_line

    deep = b'{"id": 1, "question": "q", "response": "r", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert parse_line(7, deep) == (None, "line 7: invalid JSON (nesting too deep)")
    rec, err = parse_line(1, b'{"id": "\\ud800", "question": 5, "response": "r"}')
    assert rec is None and "'question' must be a string" in err


@pytest.mark.parametrize("args,message", [
    (["score", "--model", "/nonexistent/model", "--input", "IN", "--output", "OUT"], "cannot read"),
    (["score", "--model", "/nonexistent/model", "--input", "-", "--output", "-"], "model folder does not exist"),
])
def test_errors_are_one_line_and_exit_2(args, message, tmp_path):
    args = [str(tmp_path / a) if a in ("IN", "OUT") else a for a in args]
    line = json.dumps({"question": "q", "response": fenced("x = 1")}) + "\n"  # a line that needs the model
    proc = subprocess.run([sys.executable, "-m", "codescaler.cli", *args], capture_output=True, text=True,
                          input=line, timeout=300)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_demo_prints_the_table(qwen3_dir, capsys):
    assert main(["demo", "--model", str(qwen3_dir)]) == 0
    out = capsys.readouterr().out
    for text in ("correct (Kadane)", "wrong (sum of positives)", "no code block", "no_block", "best"):
        assert text in out


def test_demo_builds_the_embedded_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CODESCALER_CACHE", str(tmp_path / "cache"))
    assert main(["demo"]) == 0
    assert (tmp_path / "cache" / "tiny-qwen3-rm" / "config.json").exists()
    assert "embedded tiny model" in capsys.readouterr().out


def test_interrupt_leaves_no_partial_output_and_says_what_was_scored(tmp_path):
    """Ctrl-C mid-run: exit status 130, one line on stderr saying how far the run got, and the output
    file as it was before the run (the lines scored so far were in OUTPUT.part, now removed)."""
    import os
    import signal
    import time

    rows = [{"id": i, "question": f"q{i % 50}", "response": fenced(f"def f():\n    return {i}")} for i in range(20000)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    out.write_text("the previous run's output\n")
    proc = subprocess.Popen([sys.executable, "-m", "codescaler.cli", "score", "--model", "tiny", "--dtype", "float32",
                             "--input", str(src), "--output", str(out)], stderr=subprocess.PIPE, text=True)
    part = tmp_path / "out.jsonl.part"
    deadline = time.monotonic() + 300
    while not (part.exists() and part.stat().st_size > 0) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130
    # a fresh cache first says it compiles the decoder blocks; then the one line of the interrupt
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith(("codescaler: compil", "codescaler: waiting"))]
    assert len(lines) == 1 and "Traceback" not in err, err
    done = int(lines[0].split("interrupted after ")[1].split()[0])
    assert 0 < done < len(rows)
    assert lines[0] == f"codescaler: interrupted after {done} line(s) were scored; {out} was not written"
    assert out.read_text() == "the previous run's output\n"
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl", "out.jsonl"]


def test_output_is_renamed_into_place_only_when_whole(tmp_path):
    from codescaler.records import replaced_on_success

    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with replaced_on_success(str(target)) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("failed midway")
    assert target.read_text() == "old" and not (tmp_path / "report.json.part").exists()
    with replaced_on_success(str(target)) as tmp:
        with open(tmp, "w") as f:
            f.write("new")
        assert target.read_text() == "old"  # nothing at the final name until the block ends
    assert target.read_text() == "new" and not (tmp_path / "report.json.part").exists()
    with replaced_on_success("/dev/null") as tmp:  # not a regular file: written directly
        assert tmp == "/dev/null"


def test_score_to_dev_null_and_to_a_folder(qwen3_dir, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "question": "q", "response": fenced("x = 1")}])
    assert main(["score", "--model", str(qwen3_dir), "--dtype", "float32", "--input", str(src), "--output", "/dev/null"]) == 0
    proc = subprocess.run([sys.executable, "-m", "codescaler.cli", "score", "--model", str(qwen3_dir), "--input", str(src),
                           "--output", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip() == f"codescaler: error: {tmp_path}: is a folder; name the file to write"
