"""The C++ scorer (libcodescaler.so, csrc/scorer) against Python's RewardModel on the same engine directory:
equal rewards on a GRPO workload, no libpython in the process, and bad engines and bad input answered
with a status and a message, never a crash.

The C++ targets are built here with the README's command (into build/cpp, which .ci/run's C++ step
then reuses; $CODESCALER_CPP_BUILD names another build directory), against the torch wheel installed in
this interpreter.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codescaler import RewardModel
from codescaler.engine.export import export_aoti
from codescaler.tiny import resolve_model

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("CODESCALER_CPP_BUILD") or ROOT / "build" / "cpp")
TARGETS = ("codescaler_score_example", "codescaler_capi_test", "codescaler_score_bench", "codescaler_scorer_cycles")


@pytest.fixture(scope="module")
def binaries() -> dict[str, Path]:
    if shutil.which("cmake") is None:
        pytest.fail("cmake is needed to build the C++ scorer (pip install cmake)")
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(BUILD), "-DCODESCALER_BUILD_TESTS=ON",
                    f"-DPython3_EXECUTABLE={sys.executable}"], check=True, capture_output=True, text=True)
    build = subprocess.run(["cmake", "--build", str(BUILD), "-j2", "--target", *TARGETS],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return {t: BUILD / t for t in TARGETS}


@pytest.fixture(scope="module")
def engines(tmp_path_factory, model_dirs) -> dict[str, Path]:
    """Tiny (Qwen3-style template: a guarded splice) at float32 and bfloat16, and a Qwen2 model (q/k/v
    biases, no q/k norms, a plain ChatML template) at float32; max_length 384 so some conversations are
    truncated."""
    out = {}
    for name, model, dtype in (("tiny-f32", resolve_model("tiny"), "float32"),
                               ("tiny-bf16", resolve_model("tiny"), "bfloat16"),
                               ("qwen2-f32", model_dirs["qwen2-64"], "float32")):
        d = tmp_path_factory.mktemp(name) / "engine"
        export_aoti(model, d, dtype=dtype, max_length=384, log=lambda *_: None)
        out[name] = d
    return out


def _workload(engine: Path) -> tuple[list[str], list[str]]:
    """A GRPO step (8 questions x 8 responses from HumanEval text) plus the edge cases a scorer meets."""
    from tokenizers import Tokenizer

    from benchmarks.workloads import grpo_step

    w = grpo_step(Tokenizer.from_file(str(engine / "tokenizer.json")), questions=8, group=8, seed=3,
                  question_tokens=(40, 300), answer_tokens=(20, 300))
    qs, rs = list(w.questions), list(w.responses)
    q = qs[0]
    edge = [
        "", "```python\n```", "```python\n\n\nx = 1\n```", "```python\r\nx = 1\r\n```",
        "<think>\nlet me think\n</think>\n\n```python\ndef f():\n    return 1\n```",
        "```python\ns = '</think>'\n```",                       # the template rewrites this pair
        "```python\nprint('déjà vu — 数据 🚀 \u0301')\n```",
        "```python\nx = '<|im_end|>'\n```",
        "```python\n" + "y = 1\n" * 400 + "```",                  # truncated at max_length
        "```python\nx = 1\n```\n```python\ny = 2\n```",
    ]
    return qs + [q] * len(edge) + ["", "Say hi.\n\n\n"], rs + edge + ["```python\nx = 1\n```"] * 2


def _run_example(binary: Path, engine: Path, rows: list[dict], tmp_path: Path, *extra: str):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(r if isinstance(r, bytes) else (json.dumps(r, ensure_ascii=False) + "\n").encode()
                             for r in rows))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([str(binary), str(engine), str(src), *extra], capture_output=True, env=env, timeout=600)
    return proc, [json.loads(line) for line in proc.stdout.decode().splitlines()]


# Bit for bit at both dtypes: both sides split every conversation at the same boundary and call the same
# compiled blocks on the same tiles, so what else a pass holds (C++ skips the pairs the splice refuses,
# and would run any pair whose verdict differed) changes no reward.
@pytest.mark.parametrize("name", ["tiny-f32", "qwen2-f32", "tiny-bf16"])
def test_cpp_rewards_equal_python(binaries, engines, tmp_path, name):
    engine = engines[name]
    qs, rs = _workload(engine)
    proc, got = _run_example(binaries["codescaler_score_example"], engine,
                             [{"id": i, "question": q, "response": r} for i, (q, r) in enumerate(zip(qs, rs))], tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert [g["id"] for g in got] == list(range(len(qs)))
    want = RewardModel.from_pretrained(engine).score(qs, rs)
    compared = disagree = refused = 0
    differ = []
    for q, r, g, w in zip(qs, rs, got, want):
        if g["status"] == "unsupported":  # a pair the recorded splice refuses: Python renders it with Jinja
            refused += 1
            assert "</think>" in w.code and "</think>" in g["error"]
            continue
        if g["status"] != w.status:  # the C++ check's verdict vs CPython's (see benchmarks/bench_verdict.py)
            disagree += 1
            assert w.status == "syntax_error" and g["status"] == "ok", (r, w.status, g["status"])
            continue
        compared += 1
        assert g["truncated"] == w.truncated
        assert (g["raw_score"] is None) == (w.raw_score is None)
        if w.raw_score is not None:
            if (g["raw_score"], g["reward"]) != (w.raw_score, w.reward):
                differ.append((g["raw_score"], w.raw_score))
        else:
            assert g["reward"] == w.reward == 0.0
    print(f"{name}: {compared} compared, {len(differ)} not bit-identical, {disagree} verdicts differ, {refused} refused")
    assert not differ, differ[:5]
    assert compared + disagree + refused == len(qs) and compared >= 0.85 * len(qs)
    assert disagree == 0  # the C++ check rules as ast.parse on the whole workload (Python 2 print included)
    assert refused == (1 if name.startswith("tiny") else 0)  # the '</think>' string in code, tiny's template only
    assert any(w.truncated for w in want) and any(w.status != "ok" for w in want)


def test_example_runs_without_libpython(binaries, engines, tmp_path):
    for binary in binaries.values():
        linked = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
        assert "libpython" not in linked and "libtorch_python" not in linked, linked
    proc = subprocess.run(["bash", "-c", f'LD_DEBUG=libs "{binaries["codescaler_score_example"]}" '
                                         f'"{engines["tiny-f32"]}" /dev/null'],
                          capture_output=True, text=True, timeout=300)
    # And at run time: no library the process initialises is Python (the compiled blocks are plain .so files).
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = [line for line in proc.stderr.splitlines() if "calling init:" in line]
    assert loaded and not [line for line in loaded if "libpython" in line or "libtorch_python" in line], loaded


def test_capi_from_c(binaries, engines):
    proc = subprocess.run([str(binaries["codescaler_capi_test"]), str(engines["tiny-f32"])], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all checks passed" in proc.stdout


def test_bad_lines_are_answered_in_place(binaries, engines, tmp_path):
    big = "```python\n" + "x = 1\n" * (10 * 1024 * 1024 // 6) + "```"  # a 10 MB response
    large = "```python\n" + "x = 1\n" * (200 * 1024 // 6) + "```"  # 200 KB, under MAX_CODE_BYTES
    rows = [{"id": "a", "question": "q", "response": "```python\nx = 1\n```"},
            b"\xff\xfe not utf-8\n",
            b"\n",
            b'{"question": "q", "response": "\\ud800"}\n',
            b"[1, 2]\n",
            {"id": "b", "question": "q"},
            {"id": "c", "question": "", "response": ""},
            {"id": "d", "question": "q", "response": big},
            {"id": "e", "question": "q", "response": large},
            {"id": "f", "question": "q", "response": "```python\ny = 2\n```"}]
    proc, got = _run_example(binaries["codescaler_score_example"], engines["tiny-f32"], rows, tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert len(got) == len(rows)
    assert [g.get("id") for g in got] == ["a", None, None, None, None, "b", "c", "d", "e", "f"]
    assert [g["status"] for g in got[1:6]] == ["input_error"] * 5
    assert "line 2: not valid UTF-8" in got[1]["error"] and "blank line" in got[2]["error"]
    assert "lone surrogate" in got[3]["error"] and "'response' must be a string (missing)" in got[5]["error"]
    assert got[6] == {"id": "c", "reward": 0, "raw_score": None, "status": "no_block", "truncated": False}
    # Code over MAX_CODE_BYTES (256 KiB) is code_too_long with reward 0, as in Python, and never parsed; 200 KB
    # parses, and the model sees its first max_length tokens.
    assert got[7] == {"id": "d", "reward": 0, "raw_score": None, "status": "code_too_long", "truncated": False}
    assert got[8]["status"] == "ok" and got[8]["truncated"] is True and got[8]["reward"] > 0
    want = RewardModel.from_pretrained(engines["tiny-f32"]).score(["q", "q"], [rows[0]["response"], rows[-1]["response"]])
    assert abs(got[0]["reward"] - want[0].reward) < 1e-4 and abs(got[-1]["reward"] - want[1].reward) < 1e-4


_CODE = '"```python\\nx = 1\\n```"'


def _line(id_text: str, question: str = '"Write f."', response: str = _CODE, extra: str = "") -> bytes:
    """One input line, its JSON written by hand so it can hold what json.dumps never writes."""
    return ('{"id": ' + id_text + ', "question": ' + question + ', "response": ' + response + extra + "}").encode()


# Lines whose id holds a lone surrogate: not valid Unicode, so neither scored nor echoed (input_error,
# "id": null), also when something else is wrong with the line.
_ID_SURROGATES = [_line('"a\\ud800b"'), _line('{"\\udc00": 1}'), _line('"\\ud800\\u0041"'),
                  _line('"a\\ud800"', question="1"), _line('"a\\ud800"', response='"\\ud800"')]


def _messy_lines() -> list[bytes]:
    """JSON Lines as real and hostile pipelines write them: ids a double cannot hold or that Python
    rewrites, repeated keys, lone surrogates, escapes, a BOM, blank lines, CRLF, garbage, non-objects."""
    import random

    lines = [
        b"\xef\xbb\xbf" + _line("9007199254740993"),  # a byte-order mark on line 1; 2^53 + 1
        _line("123456789012345678901234567890", response='"no code here"'),
        _line("-9007199254740993"),
        *(_line(x) for x in ("1.0", "1E5", "1e400", "-1e400", "1e-400", "-0", "-0.0", "NaN", "Infinity",
                             "-Infinity", "0.1", "1.5e300", "1e16", "1e-05", "7" * 4300)),
        _line("7" * 4301),  # longer than Python reads an int
        _line("01"),
        _line('"dup-question"', question='"Say hi.", "question": "Write f."'),
        _line('"dup-response"', response=_CODE + ', "response": "no code"'),
        _line('"first"', extra=', "id": "last"'),
        _line('"surrogate-then-clean"', question='"q\\ud800", "question": "Write g."'),
        *_ID_SURROGATES,
        _line('"q-surrogate"', question='"Write \\ud800 f."'),
        _line('"r-surrogate-prose"', response='"Sure \\ud800.\\n```python\\nx = 1\\n```"'),
        _line('"r-surrogate-code"', response='"```python\\nx = \\"\\ud800\\"\\n```"'),
        _line('"ignored-fields"', extra=', "meta": "\\ud800", "\\udbff": 0'),
        _line('"\\u00e9\\ud83d\\ude00 caf\\u00e9"', question='"\\u0057rite f. \\ud83d\\ude00"'),
        _line('"a\\"b\\\\c\\n\\t\\b\\f\\u0001\\u007f\\u2028/\\/"'),
        _line('{"b": [1, 2.50, {"c": null, "c": 1E2}], "a": true, "b": "last"}'),
        _line("[" * 200 + "]" * 200),
        *(_line(x) for x in ("null", "true", "[]", "{}")),
        b'{"\\u0069d": "escaped-key", "question": "Write f.", "response": "```python\\nx = 1\\n```"}',
        b"", b"   \t", "\u3000\x0c".encode(), b"\r",  # blank to Python's str.strip()
        _line('"crlf"') + b"\r",
        _line('"garbage"') + b" x",
        b'{"id": "unterminated',
        b'{"id": "trailing-comma", "question": "q", "response": "r",}',
        b"[1, 2]", b'"a string"', b"42", b"null",
        b'{"id": 7, "question": "q"}',
        b'{"id": 8, "question": 1, "response": "r"}',
        b'{"id": 9, "question": "q", "response": ["r"]}',
        b'{"id": 10, "question": "q", "response": NaN}',
        b"\xff\xfe not utf-8",
        b'{"id": "\xed\xa0\x80", "question": "q", "response": "r"}',  # a surrogate encoded as UTF-8
        b"\xef\xbb\xbf" + _line('"bom-on-line-n"'),
        _line('"raw-tab\tinside"'),
        _line('"raw-del\x7f"'),
        _line('"bad-escape\\x"'),
        _line('"\\ud800\\uzzzz"'),
        b'{"id": 11, "question": "q", "response": "r", "deep": ' + b"[" * 600 + b"]" * 600 + b"}",
    ]
    rng = random.Random(19)
    for _ in range(200):  # float ids in every layout, on lines the model never sees
        x = rng.uniform(-1, 1) * 10.0 ** rng.randint(-30, 30)
        text = rng.choice([repr(x), f"{x:.{rng.randint(1, 20)}e}", f"{x:.{rng.randint(1, 20)}E}",
                           f"{x:.{rng.randint(1, 12)}f}", str(rng.getrandbits(rng.randint(1, 200)))])
        lines.append(b'{"id": ' + text.encode() + b', "question": "q"}')
    return lines


def _id_text(line: str) -> str:
    """The id exactly as an output line writes it (every line starts with '{"id": ')."""
    assert line.startswith('{"id": '), line
    return line[7:json.JSONDecoder().raw_decode(line, 7)[1]]


def _score_both(binary: Path, engine: Path, lines: list[bytes], tmp_path: Path) -> tuple[list[str], list[str]]:
    """Output lines of `codescaler score` and of the example on the same file (its last line unterminated)."""
    src = tmp_path / "messy.jsonl"
    src.write_bytes(b"\n".join(lines))
    out = tmp_path / "cli.jsonl"
    cli = subprocess.run([sys.executable, "-m", "codescaler.cli", "score", "--model", str(engine), "--input", str(src),
                          "--output", str(out)], capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr[-4000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([str(binary), str(engine), str(src)], capture_output=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()
    py, cc = out.read_text(encoding="utf-8").split("\n"), proc.stdout.decode().split("\n")  # not at U+2028
    assert py[-1] == cc[-1] == "" and len(py) == len(cc) == len(lines) + 1
    return py[:-1], cc[:-1]


def test_example_reads_json_as_the_cli_does(binaries, engines, tmp_path):
    """Line by line the example answers what `codescaler score` answers: the same id text, byte for byte,
    the same status, rewards within 1e-4 at float32; only the wording of JSON syntax errors differs."""
    lines = _messy_lines()
    py, cc = _score_both(binaries["codescaler_score_example"], engines["tiny-f32"], lines, tmp_path)
    compared = 0
    for n, (raw, p_text, c_text) in enumerate(zip(lines, py, cc), 1):
        p, c = json.loads(p_text), json.loads(c_text)
        if raw in _ID_SURROGATES:  # the one rule for odd text; test_cli_refuses_an_id_that_is_not_unicode
            assert c_text.startswith('{"id": null, "reward": null, ') and c["status"] == "input_error", c_text
            continue
        compared += 1
        assert _id_text(c_text) == _id_text(p_text), (n, raw[:120])
        assert c["status"] == p["status"], (n, raw[:120], p_text, c_text)
        if p.get("error", "").startswith(f"line {n}: invalid JSON ("):  # each parser words these its own way
            assert c["error"].startswith(f"line {n}: invalid JSON ("), c_text
        else:
            assert c.get("error") == p.get("error"), (p_text, c_text)
        for key in ("reward", "raw_score"):
            assert (c[key] is None) == (p[key] is None), (n, p_text, c_text)
            if p[key] is not None:
                assert abs(c[key] - p[key]) <= 1e-4, (n, p_text, c_text)
        if "truncated" in p:
            assert c["truncated"] == p["truncated"]
    assert compared == len(lines) - len(_ID_SURROGATES)
    # The cases the issue reported, spelled out.
    assert cc[0].startswith('{"id": 9007199254740993, "reward": ')
    by_id = {json.loads(line)["id"]: json.loads(line) for line in cc if line.startswith('{"id": "')}
    assert by_id["dup-question"]["reward"] == by_id["last"]["reward"] == json.loads(cc[0])["reward"]
    assert by_id["dup-response"]["status"] == "no_block" and by_id["surrogate-then-clean"]["status"] == "ok"
    assert by_id["q-surrogate"]["status"] == by_id["r-surrogate-prose"]["status"] == "input_error"
    assert by_id["r-surrogate-code"]["status"] == "input_error" and by_id["ignored-fields"]["status"] == "ok"
    assert [_id_text(line) for line in cc[3:7]] == ["1.0", "100000.0", "Infinity", "-Infinity"]


def test_cli_refuses_an_id_that_is_not_unicode(binaries, engines, tmp_path):
    py, cc = _score_both(binaries["codescaler_score_example"], engines["tiny-f32"], _ID_SURROGATES, tmp_path)
    assert [json.loads(line)["status"] for line in cc] == ["input_error"] * len(_ID_SURROGATES)
    assert py == cc


def test_example_refuses_nesting_python_cannot_read(binaries, engines, tmp_path):
    """Python's json gives up near its recursion limit (~1000 levels); both the example and `codescaler
    score` answer such a line in place and go on."""
    rows = [b'{"id": 1, "question": "q", "response": "r", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}\n",
            b'{"id": 2, "question": "q", "response": "r", "x": ' + b"[" * 999 + b"]" * 999 + b"}\n",  # 1000 levels
            {"id": 3, "question": "q", "response": "r"}]
    proc, got = _run_example(binaries["codescaler_score_example"], engines["tiny-f32"], rows, tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert got[0]["id"] is None and "nesting too deep" in got[0]["error"]
    assert [g["status"] for g in got[1:]] == ["no_block"] * 2 and [g["id"] for g in got[1:]] == [2, 3]


def _damaged(engine: Path, tmp_path: Path, name: str, change) -> Path:
    d = tmp_path / name
    shutil.copytree(engine, d)
    change(d)
    return d


def _edit_manifest(edit):
    def change(d: Path):
        m = json.loads((d / "manifest.json").read_text())
        edit(m)
        (d / "manifest.json").write_text(json.dumps(m))
    return change


def _truncate(name: str, keep: int | None = None):
    def change(d: Path):
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2 if keep is None else keep])
    return change


def _resize_listed(name: str, data: bytes):
    def change(d: Path):
        (d / name).write_bytes(data)
        m = json.loads((d / "manifest.json").read_text())
        m["files"][name]["size"] = len(data)
        (d / "manifest.json").write_text(json.dumps(m))
    return change


def _unsupported_tokenizer(d: Path):
    t = json.loads((d / "tokenizer.json").read_text())
    t["model"]["type"] = "WordPiece"
    (d / "tokenizer.json").write_text(json.dumps(t))
    m = json.loads((d / "manifest.json").read_text())
    m["files"]["tokenizer.json"]["size"] = (d / "tokenizer.json").stat().st_size
    (d / "manifest.json").write_text(json.dumps(m))


def _link_out(name: str):
    """The file moved out of the engine directory and linked back in: same bytes, same size."""
    def change(d: Path):
        outside = d.parent / (d.name + "-" + name)
        (d / name).rename(outside)
        (d / name).symlink_to(outside)
    return change


DAMAGE = [
    ("missing", lambda d: shutil.rmtree(d), "io_error", "not a directory"),
    ("no-manifest", lambda d: (d / "manifest.json").unlink(), "bad_engine", "not an engine directory"),
    ("manifest-garbage", lambda d: (d / "manifest.json").write_bytes(b"{\"format\": \xff"), "bad_engine",
     "not valid JSON (line 1, column 12 (byte 11): unexpected byte 0xff)"),
    ("weights-truncated", _truncate("weights.safetensors"), "bad_engine", "truncated or replaced"),
    ("weights-header", _resize_listed("weights.safetensors", b"\xff" * 64), "bad_engine", "header length"),
    ("package-garbage", _resize_listed("blocks.pt2", b"not a zip file" * 10), "bad_engine", "cannot load the compiled blocks"),
    ("onnx", _edit_manifest(lambda m: m.update(format="onnx")), "unsupported", "--format aoti"),
    ("no-template", _edit_manifest(lambda m: m.update(template=None, template_reason="it uppercases content")),
     "unsupported", "it uppercases content"),
    ("other-machine", _edit_manifest(lambda m: m["machine"].update(flags=m["machine"]["flags"] + ["avx9000"])),
     "unsupported", "avx9000"),
    ("other-torch", _edit_manifest(lambda m: m["machine"].update(torch="1.0.0")), "unsupported", "torch: engine 1.0.0"),
    ("wrong-arch", _edit_manifest(lambda m: m.update(arch=m["arch"].replace('"hidden": 128', '"hidden": 64'))),
     "bad_engine", "is not (vocabulary, hidden)"),
    ("wrong-probes", _edit_manifest(lambda m: m["tokenizer"]["probes"].update({"x": [1, 2, 3]})), "bad_engine",
     "different exports"),
    ("tokenizer-unsupported", _unsupported_tokenizer, "unsupported", "WordPiece"),
    ("field-type", _edit_manifest(lambda m: m.update(max_length="4096")), "bad_engine", "max_length is a string"),
    ("no-row-tile", _edit_manifest(lambda m: m.pop("row_tile")), "bad_engine", "row_tile is missing"),
    ("other-blocks", _edit_manifest(lambda m: m["machine"].update(blocks=2)), "unsupported",
     "blocks version: engine 2, this scorer 3"),
    ("package-outside", _edit_manifest(lambda m: m.update(package="../blocks.pt2")), "bad_engine",
     'field package is "../blocks.pt2", expected the name of a file the manifest lists'),
    ("weights-absolute", _edit_manifest(lambda m: m.update(weights="/etc/passwd")), "bad_engine",
     'field weights is "/etc/passwd"'),
    ("weights-linked-out", _link_out("weights.safetensors"), "bad_engine", "outside the engine directory"),
]


@pytest.mark.parametrize("name, change, code, words", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damaged_engine_is_refused_with_a_message(binaries, engines, tmp_path, name, change, code, words):
    engine = _damaged(engines["tiny-f32"], tmp_path, name, change)
    proc, got = _run_example(binaries["codescaler_score_example"], engine,
                             [{"question": "q", "response": "```python\nx = 1\n```"}], tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and got == [], err  # a status, not a signal
    assert f"error ({code})" in err and words in err, err


def test_bench_prints_latency_and_throughput(binaries, engines, tmp_path):
    rows = [{"question": "Write f.", "response": f"```python\ndef f():\n    return {i}\n```"} for i in range(16)]
    src = tmp_path / "w.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = subprocess.run([str(binaries["codescaler_score_bench"]), str(engines["tiny-f32"]), str(src),
                           "--repeats", "5"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["bon_n"] == 16 and 0 < out["bon_p50_s"] <= out["bon_p99_s"] and out["grpo_per_s"] > 0
    rewards = RewardModel.from_pretrained(engines["tiny-f32"]).best_of_n("Write f.", [r["response"] for r in rows])
    assert out["bon_best"] == rewards.index and math.isfinite(out["open_s"])


@pytest.mark.parametrize("name", ["tiny-bf16", "tiny-f32"])
def test_a_pair_gets_the_same_bits_alone_and_in_any_step(binaries, engines, tmp_path, name):
    """A reward does not depend on what shares the call: the GRPO step scored in one call, every pair
    alone (one call per line) and the step reversed in calls of 5 (other neighbours, other passes) give
    the same bits."""
    engine = engines[name]
    qs, rs = _workload(engine)
    rows = [{"id": i, "question": q, "response": r} for i, (q, r) in enumerate(zip(qs, rs))]
    runs = {}
    for label, order, chunk in (("step", rows, "256"), ("alone", rows, "1"), ("mixed", rows[::-1], "5")):
        proc, got = _run_example(binaries["codescaler_score_example"], engine, order, tmp_path, "--chunk", chunk)
        assert proc.returncode == 0, proc.stderr.decode()
        runs[label] = {g["id"]: g for g in got}
    step = runs["step"]
    assert len(step) == len(rows) and sum(g["raw_score"] is not None for g in step.values()) >= len(rows) // 2
    assert runs["alone"] == step
    assert runs["mixed"] == step


def _cache_env(tmp_path: Path) -> dict[str, str]:
    """No libpython, an empty $TMPDIR and a fresh cache for the compiled blocks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    (tmp_path / "tmp").mkdir()
    env.update(TMPDIR=str(tmp_path / "tmp"), CODESCALER_CACHE=str(tmp_path / "cache"))
    return env


def test_open_close_cycles_keep_memory_flat(binaries, engines, tmp_path):
    """200 open/score/close cycles through the C ABI: the resident set stays flat (it grew ~0.66 MB a cycle
    when every open unpacked the blocks to a new directory and mapped them again), the blocks are mapped
    once, no stack is executable, and every cycle gives the same reward bits."""
    proc = subprocess.run([str(binaries["codescaler_scorer_cycles"]), str(engines["tiny-f32"]), "200"],
                          capture_output=True, text=True, env=_cache_env(tmp_path), timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    rss = out["rss_kb"]
    assert len(rss) == 200
    # The median of the last 20 cycles against that of cycles 20-39, past libtorch's and malloc's one-time
    # growth; medians, because single cycles jump by tens of MB either way as malloc trims its arenas.
    median = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    growth = median(rss[180:]) - median(rss[20:40])
    print(f"RSS after cycle 1 {rss[0]} kB, 20 {rss[19]} kB, 200 {rss[199]} kB (min {min(rss[20:])}, max "
          f"{max(rss[20:])}); median growth 20-39 -> 180-199 {growth} kB ({growth / 160:.1f} kB/cycle); "
          f"block mappings {out['block_maps']}")
    assert growth < 8 * 1024, growth  # 160 cycles x 0.66 MB = 105 MB before
    assert 0 < out["block_maps"] <= 16  # two libraries' segments, once (480 after 40 cycles before)
    assert out["exec_stack"] is False
    assert out["reward"] == RewardModel.from_pretrained(engines["tiny-f32"]).score(
        ["Write add(a, b)."], ["```python\ndef add(a, b):\n    return a + b\n```"])[0].reward


def _elf_stack_flags(path: Path) -> int:
    """p_flags of the PT_GNU_STACK header of an ELF64 little-endian file."""
    import struct

    data = path.read_bytes()
    phoff, = struct.unpack_from("<Q", data, 0x20)
    entsize, count = struct.unpack_from("<HH", data, 0x36)
    for i in range(count):
        kind, flags = struct.unpack_from("<II", data, phoff + i * entsize)
        if kind == 0x6474E551:
            return flags
    raise AssertionError(f"{path}: no PT_GNU_STACK")


def _aoti_leftovers(package: Path) -> set[str]:
    """Directories libtorch's own loader unpacks a package into (/tmp/aotinductor_*, whatever $TMPDIR says)
    that hold one of this package's libraries."""
    import zipfile

    libs = {Path(n).name for n in zipfile.ZipFile(package).namelist() if n.endswith(".so")}
    return {str(d) for d in Path("/tmp").glob("aotinductor_*") if any(d.rglob("*.so")) and
            {p.name for p in d.rglob("*.so")} & libs}


def test_no_files_left_behind_even_when_killed(binaries, engines, tmp_path):
    """The blocks are unpacked once per package content into $CODESCALER_CACHE/cpp-blocks/<sha1>; a process
    killed without closing leaves nothing in $TMPDIR or /tmp, and a partial unpack a killed process left is
    replaced by the next open."""
    import hashlib
    import signal
    import time

    engine = engines["tiny-f32"]
    env = _cache_env(tmp_path)
    key = hashlib.sha1((engine / "blocks.pt2").read_bytes()).hexdigest()
    blocks = tmp_path / "cache" / "cpp-blocks"
    (blocks / (key + ".partial") / "data").mkdir(parents=True)  # as if a process died while unpacking
    (blocks / (key + ".partial") / "data" / "junk.so").write_bytes(b"half")
    before = _aoti_leftovers(engine / "blocks.pt2")
    proc = subprocess.Popen([str(binaries["codescaler_score_example"]), str(engine)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    line = b""
    deadline = time.monotonic() + 600
    while b"scoring with" not in line and time.monotonic() < deadline and proc.poll() is None:
        line = proc.stderr.readline()  # the example says so once the scorer is open (blocks loaded, warmed up)
    assert b"scoring with" in line, line
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert list((tmp_path / "tmp").iterdir()) == []
    assert _aoti_leftovers(engine / "blocks.pt2") - before == set()
    assert sorted(p.name for p in blocks.iterdir()) == [key, key + ".lock"]
    libs = sorted((blocks / key).rglob("*.so"))
    assert len(libs) == 2 and all(_elf_stack_flags(p) & 1 == 0 for p in libs)  # PF_X cleared
    # Another process, closed normally, reuses the directory as it is.
    stamp = [p.stat().st_mtime_ns for p in libs]
    proc, got = _run_example(binaries["codescaler_score_example"], engine,
                             [{"question": "q", "response": "```python\nx = 1\n```"}], tmp_path)
    assert proc.returncode == 0 and got[0]["status"] == "ok", proc.stderr.decode()
    assert [p.stat().st_mtime_ns for p in libs] == stamp


def _poison_embedding(engine: Path, ids: list[int]):
    """Set the embedding rows of `ids` to NaN in place (same size, so the manifest still matches)."""
    def change(d: Path):
        import struct

        path = d / "weights.safetensors"
        data = bytearray(path.read_bytes())
        n, = struct.unpack_from("<Q", data, 0)
        header = json.loads(data[8:8 + n])
        name = next(k for k in header if k.endswith("embed_tokens.weight"))
        info = header[name]
        assert info["dtype"] == "F32"
        hidden = info["shape"][1]
        for i in ids:
            at = 8 + n + info["data_offsets"][0] + i * hidden * 4
            data[at:at + hidden * 4] = struct.pack("<f", float("nan")) * hidden
        path.write_bytes(bytes(data))
    return change


def test_a_non_finite_score_is_a_model_error(binaries, engines, tmp_path):
    """A pair whose score comes out NaN (here: an embedding row of its code set to NaN) is answered
    model_error with no reward; the other pairs of the same call keep their bits."""
    from tokenizers import Tokenizer

    engine = engines["tiny-f32"]
    tok = Tokenizer.from_file(str(engine / "tokenizer.json"))
    question, clean, poisoned = "Write f.", "```python\nx = 1\n```", "```python\nquokka = 1\n```"
    template = json.loads((engine / "manifest.json").read_text())["template"]
    seen = set(tok.encode(template["head"] + question + template["middle"] + "x = 1\n" + template["tail"]).ids)
    seen |= set(tok.encode("warm-up pass").ids)
    ids = [i for i in tok.encode("quokka = 1").ids if i not in seen]
    assert ids, "the poisoned response needs a token the others lack"
    damaged = _damaged(engine, tmp_path, "nan-rows", _poison_embedding(engine, ids))
    rows = [{"id": i, "question": question, "response": r} for i, r in enumerate([clean, poisoned, clean])]
    want_proc, want = _run_example(binaries["codescaler_score_example"], engine, rows, tmp_path)
    proc, got = _run_example(binaries["codescaler_score_example"], damaged, rows, tmp_path)
    assert proc.returncode == want_proc.returncode == 0, proc.stderr.decode()
    assert got[1]["status"] == "model_error" and got[1]["reward"] is None, got[1]
    assert "NaN" in got[1]["error"]
    assert [got[0], got[2]] == [want[0], want[2]] and want[0]["status"] == "ok"


def test_library_finds_libtorch_after_the_venv_moves(binaries, engines, tmp_path):
    """libcodescaler.so's runpath starts with torch/lib relative to itself and names no directory that does
    not exist; a copy of the build tree and a venv moved together (here: linked at another place) run."""
    dynamic = subprocess.run(["readelf", "-d", str(BUILD / "libcodescaler.so")], capture_output=True, text=True,
                             check=True).stdout
    runpath = next(line for line in dynamic.splitlines() if "RUNPATH" in line).split("[", 1)[1].rstrip("]")
    entries = runpath.split(":")
    assert entries[0].startswith("$ORIGIN/") and all(entries), entries  # an empty entry is the working directory
    assert all(Path(e.replace("$ORIGIN", str(BUILD))).is_dir() for e in entries), entries
    rel = entries[0][len("$ORIGIN/"):]
    ups = rel.split("/").count("..")
    moved = tmp_path.joinpath(*[f"d{i}" for i in range(ups)])
    moved.mkdir(parents=True)
    torch_lib = Path(os.path.normpath(moved / rel))
    assert str(torch_lib).startswith(str(tmp_path)), torch_lib
    torch_lib.parent.mkdir(parents=True, exist_ok=True)
    torch_lib.symlink_to(Path(os.path.normpath(BUILD / rel)))
    soname = next(line for line in dynamic.splitlines() if "(SONAME)" in line).split("[", 1)[1].rstrip("]")
    for name in (soname, "codescaler_capi_test"):  # the test needs the library by its soname
        shutil.copy2(BUILD / name, moved / name)
    env = {**_cache_env(tmp_path), "LD_DEBUG": "libs"}
    proc = subprocess.run([str(moved / "codescaler_capi_test"), str(engines["tiny-f32"])], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0 and "all checks passed" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    inits = [os.path.normpath(line.split("calling init: ")[1]) for line in proc.stderr.splitlines()
             if "calling init:" in line]
    assert str(moved / soname) in inits, inits
    assert any(p.startswith(str(torch_lib)) and p.endswith("libtorch_cpu.so") for p in inits), inits
