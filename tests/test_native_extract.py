"""The native extractor's own behaviour: policies, per-language validation, offsets, hostile input."""

from __future__ import annotations

import ast
import time

import pytest

import codescaler
from codescaler import InputError, _native, _native_testing, extract, extract_batch
from codescaler.extract import STATUSES, extract_spec

# ast.parse warns about odd escapes in generated code, for the spec and the native path alike.
pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")

PROGRAMS = {
    # language: (valid program, broken program)
    "python": ("def f(x):\n    return [i * x for i in range(3)]\n", "def f(x)\n    return x +\n"),
    "cpp": ("#include <vector>\ntemplate <class T> T sum(const std::vector<T>& v) {\n  T s{};\n"
            "  for (auto x : v) s += x;\n  return s;\n}\n", "int main() {\n  int x = ;\n  return 0\n"),
    "java": ("import java.util.*;\nclass Solution {\n  public int f(List<Integer> xs) {\n"
             "    return xs.stream().mapToInt(i -> i).sum();\n  }\n}\n", "class Solution {\n  int f() { return 1 }\n"),
    "javascript": ("const f = async (xs) => {\n  for (const x of xs) await g(x);\n  return `${xs.length}`;\n};\n",
                   "function f(x {\n  return x;\n}\n"),
    "go": ("package main\n\nimport \"fmt\"\n\nfunc main() {\n\txs := []int{1, 2}\n\tfmt.Println(len(xs))\n}\n",
           "package main\nfunc main() {\n\tx := \n}\n"),
    "rust": ("fn add<T: std::ops::Add<Output = T>>(a: T, b: T) -> T {\n    a + b\n}\n"
             "fn main() { println!(\"{}\", add(1, 2)); }\n", "fn main() {\n    let x = ;\n}\n"),
}
TAGS = {"python": "python3", "cpp": "c++", "java": "java", "javascript": "js", "go": "go", "rust": "rust"}


@pytest.mark.parametrize("language", list(PROGRAMS))
def test_valid_program_of_each_language(language):
    good, _ = PROGRAMS[language]
    for policy in ("last", "best"):
        e = extract(f"Solution:\n~~~{TAGS[language]}\n{good}~~~\nDone.", policy, language)
        assert (e.status, e.code, e.tag, e.language) == ("ok", good.strip(), TAGS[language], language)
        assert (e.n_error_nodes, e.n_missing_nodes) == (0, 0)


@pytest.mark.parametrize("language", list(PROGRAMS))
def test_broken_program_of_each_language(language):
    _, bad = PROGRAMS[language]
    e = extract(f"```{language}\r\n{bad}```\r\n", "last", language)
    assert e.status == "syntax_error" and e.code == "" and e.error
    assert e.error_line is not None and 1 <= e.error_line <= bad.count("\n") + 1
    if language != "python":  # CPython decides Python; tree-sitter counts the rest
        assert e.n_error_nodes + e.n_missing_nodes >= 1


@pytest.mark.parametrize("language", list(PROGRAMS))
def test_best_picks_the_longest_clean_block_of_the_language(language):
    good, bad = PROGRAMS[language]
    other = "python" if language != "python" else "rust"
    response = (f"```{language}\n{bad}{bad}```\n```{other}\n{PROGRAMS[other][0] * 3}```\n"
                f"```{language}\n{good}```\n```\nx\n```\n")
    e = extract(response, "best", language)
    assert (e.status, e.code, e.n_blocks) == ("ok", good.strip(), 4)


def test_best_breaks_ties_to_the_last_and_last_takes_the_last():
    response = "```py\na = 1\n```\n```py\nb = 2\n```\n```go\npackage main\n```\n"
    assert extract(response, "best").code == "b = 2"
    assert extract(response, "last").code == "b = 2"
    assert extract(response, "last", "go").code == "package main"
    assert extract(response, "best", "java").status == "no_block"


def test_python_validity_is_cpython_s_for_every_policy():
    """CPython decides Python validity in Python; the C++ check (what a CPython-free scorer uses) agrees on
    Python-2 print, which tree-sitter-python accepted."""
    assert _native_testing.check_syntax('print "hello"', "python").status == "syntax_error"
    for policy in ("codescaler", "last", "best"):
        e = extract('```python\nprint "hello"\n```', policy)
        assert e.status == "syntax_error" and e.error.startswith("SyntaxError")


def test_cpython_error_position_is_reported():
    e = extract("```python\nx = 1\ny = (1,\n```")
    with pytest.raises(SyntaxError) as info:
        ast.parse("x = 1\ny = (1,")
    assert (e.error_line, e.error_column) == (info.value.lineno, info.value.offset)


def test_tree_sitter_error_position_in_code_points():
    code = "fn main() {\n    let é = \"ü\"; let x = ;\n}"
    e = _native_testing.check_syntax(code, "rust")
    assert e.status == "syntax_error" and e.error_line == 2
    # tree-sitter's ERROR node starts at "= ;"; a byte column would land two characters further right
    assert code.splitlines()[1][e.error_column - 1:] == "= ;"


@pytest.mark.parametrize("response", [
    "préambule 🙂 ```py\nnaïve = 'ü'\n```",
    "\ud800 lone surrogate, then ```\nx = 1\n``` and more \udfff",
    "```питон\n\u3000x = '日本'\u2028\n```",
])
def test_offsets_are_code_points(response):
    e, = _native.extract_batch([response], "codescaler", "python", 1, False)
    assert e.status == "ok" and response[e.code_start:e.code_end] == e.code == extract_spec(response).code


def test_batch_keeps_input_order_across_threads():
    responses = [f"```python\nx = {i}\n```" if i % 3 else f"no code {i}" for i in range(5000)]
    for threads in (1, 2, 7):
        out = extract_batch(responses, threads=threads)
        assert [e.code for e in out] == [f"x = {i}" if i % 3 else "" for i in range(5000)]


def test_batch_accepts_any_iterable_and_rejects_non_strings():
    assert [e.code for e in extract_batch(f"```\n{i}\n```" for i in range(3))] == ["0", "1", "2"]
    with pytest.raises(TypeError, match="response 1 must be str"):
        extract_batch(["ok", b"bytes"])
    with pytest.raises(InputError, match="cobol"):
        extract("x", language="cobol")
    with pytest.raises(InputError, match="'first'"):
        extract_batch(["x"], policy="first")


@pytest.mark.parametrize("module", [_native, _native_testing], ids=lambda m: m.__name__)
def test_native_module_matches_its_stub(module, tmp_path):
    from pathlib import Path

    name = module.__name__.rsplit(".", 1)[1]
    stub = (Path(codescaler.__file__).parent / f"{name}.pyi").read_text()
    for attr in (n for n in dir(module) if not n.startswith("_")):
        assert f"def {attr}(" in stub or f"{attr}:" in stub or f"class {attr}:" in stub, attr
    stubgen = pytest.importorskip("nanobind.stubgen")
    out = tmp_path / f"{name}.pyi"
    stubgen.main(["-q", "-m", module.__name__, "-o", str(out)])
    assert out.read_text() == stub, f"regenerate: python -m nanobind.stubgen -m {module.__name__} -o python/codescaler/{name}.pyi"


def test_production_module_holds_what_production_uses():
    """The test helpers live in codescaler._native_testing; an extraction is a read-only object, not a tuple."""
    assert {n for n in dir(_native) if not n.startswith("_")} == {
        "Extraction", "extract_batch", "MAX_CODE_BYTES", "PARSE_BUDGET_STEPS"}
    e, = _native.extract_batch(["```rust\nfn main() {\n    let x = ;\n}\n```"], "last", "rust")
    assert (e.status, e.n_blocks, e.tag, e.error_line) == ("syntax_error", 1, "rust", 2)
    with pytest.raises(AttributeError):
        e.status = "ok"


def test_unicode_tables_match_this_python():
    import unicodedata

    assert _native_testing.unicode_version() == unicodedata.unidata_version


def test_tolerant_scanner_reads_markdown_fences():
    text = ("Intro\r\n~~~c++ {.numberLines}\r\nint main() {}\r\n~~~\r\n"
            "````python3 title=x\n```\ninner\n```\n````\n  ```js\n  let x = 1;\n")
    assert _native_testing.scan_tolerant(text) == [
        ("c++", "int main() {}\r\n", True),
        ("python3", "```\ninner\n```\n", True),
        ("js", "  let x = 1;\n", False),
    ]
    assert extract(text, "last", "cpp").code == "int main() {}"
    assert extract(text, "best", "python").status == "syntax_error"  # "```\ninner\n```": CPython rejects it


# Hostile input: every case must end as a status, within a generous wall-clock budget.
HOSTILE_BUDGET_S = 60.0


def _hostile_cases():
    ten_mb = ("word " * 20 + "\n") * (10 * 1024 * 1024 // 101)
    return {
        "10 MB of prose": ten_mb,
        "10 MB inside one block": "```python\n" + ("x = 1\n" * (10 * 1024 * 1024 // 6)) + "```",
        "10 MB broken block": "```\n" + "(" * (10 * 1024 * 1024) + "\n```",
        "100k fences": "```py\nx\n" * 100_000,
        "100k fences, no newline": "```x" * 100_000,
        "100k unclosed tilde fences": "~~~~\n" * 100_000,
        "NUL bytes": "```python\n" + "\x00" * 100_000 + "\n```",
        "surrogates (invalid UTF-8)": "```python\n" + "\ud800\udfff" * 50_000 + "\n```",
        "deep nesting": "```python\nx = " + "[" * 100_000 + "\n```",
    }


@pytest.mark.parametrize("name", list(_hostile_cases()))
@pytest.mark.parametrize("policy,language", [("codescaler", "python"), ("last", "rust"), ("best", "cpp"),
                                             ("best", "python")])
def test_hostile_input_ends_as_a_status(name, policy, language):
    response = _hostile_cases()[name]
    start = time.perf_counter()
    e = extract_batch([response], policy, language, parse_budget_steps=2_000_000)[0]
    elapsed = time.perf_counter() - start
    assert e.status in STATUSES
    assert elapsed < HOSTILE_BUDGET_S, f"{name}: {elapsed:.1f} s"
    if policy == "codescaler":
        assert e.status == extract_spec(response).status if len(response) < 2_000_000 else True


@pytest.mark.parametrize("language, code", [("rust", "fn main() {\n" + "let x = (((" * 20_000 + "\n}"),
                                            ("python", "x = 1\n" * 40_000)])  # under MAX_CODE_BYTES
def test_parse_budget_turns_into_timeout(language, code):
    response = f"```{language}\n{code}```"
    e = extract_batch([response], "best", language, parse_budget_steps=10_000)[0]
    assert e.status == "timeout" and e.code == "" and "budget of 10000 steps" in e.error


@pytest.mark.parametrize("language, code", [("rust", "fn main() { let v = vec![1, 2]; }\n" * 2_000),
                                            ("python", "x = 1\n" * 20_000), ("python", "def f(:\n" * 2_000)])
def test_parse_budget_is_counted_not_timed(language, code):
    """A block needs a fixed number of steps: one fewer is a timeout, that many give the verdict, on any
    machine under any load."""
    verdict = _native_testing.check_syntax(code, language, 10**12).status
    lo, hi = 1, 10**9  # the fewest steps that do not run out
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _native_testing.check_syntax(code, language, mid).status != "timeout" else (mid + 1, hi)
    assert _native_testing.check_syntax(code, language, lo).status == verdict != "timeout"
    assert _native_testing.check_syntax(code, language, lo - 1).status == "timeout"
