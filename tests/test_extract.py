"""Extraction, policy ``codescaler``: the published rules on their edge cases."""

from __future__ import annotations

import ast
import re
import time

import pytest

import codescaler
from codescaler import extract


def upstream_code(response: str) -> str:
    """The recipe as published: exactly one block, stripped, that ast.parse accepts; else ""."""
    blocks = re.findall(r"```(\w+)?\n(.*?)```", response, re.DOTALL)
    if len(blocks) != 1:
        return ""
    code = blocks[0][1].strip()
    try:
        ast.parse(code)
    except Exception:
        return ""
    return code


CASES = [
    # (name, response, status, code)
    ("plain", "Sure:\n```python\ndef f():\n    return 1\n```\nDone.", "ok", "def f():\n    return 1"),
    ("no tag", "```\nx = 1\n```", "ok", "x = 1"),
    ("no block", "def f(): return 1", "no_block", ""),
    ("two blocks", "```python\nx = 1\n```\nand\n```python\ny = 2\n```", "multiple_blocks", ""),
    ("no newline after tag", "```python x = 1```", "no_block", ""),
    ("unterminated", "```python\nx = 1\n", "no_block", ""),
    ("empty block", "```python\n```", "empty_block", ""),
    ("whitespace block", "```python\n \n\t\n```", "empty_block", ""),
    ("CRLF fence is not a fence", "```python\r\nx = 1\r\n```", "no_block", ""),
    ("CRLF inside body", "```python\nx = 1\r\ny = 2\r\n```", "ok", "x = 1\r\ny = 2"),
    ("NUL byte", "```python\nx = 1\x00\n```", "syntax_error", ""),
    ("1000-deep brackets", "```python\nx = " + "[" * 1000 + "]" * 1000 + "\n```", "syntax_error", ""),
    ("python 2 print", '```python\nprint "hello"\n```', "syntax_error", ""),
    ("tag with plus", "```c++\nint main() {}\n```", "no_block", ""),
    ("four backticks", "````python\nx = 1\n````", "ok", "x = 1"),
    ("unicode tag", "```питон\nx = 1\n```", "ok", "x = 1"),
    ("lone surrogate", "```python\nx = '\ud800'\n```", "syntax_error", ""),
    ("shortest body", "```python\nx = '```'\n```", "syntax_error", ""),
    ("tabs", "```python\n\tif True:\n\t\tx = 1\n```", "ok", "if True:\n\t\tx = 1"),
    ("return outside function parses", "```python\nreturn 1\n```", "ok", "return 1"),
]


@pytest.mark.parametrize("name,response,status,code", CASES, ids=[c[0] for c in CASES])
def test_edge_cases(name, response, status, code):
    got = extract(response)
    assert (got.status, got.code) == (status, code)
    assert got.code == upstream_code(response)
    assert got.valid == (status == "ok")


def test_humaneval_solutions_extract_verbatim(humaneval):
    for p in humaneval:
        program = (p["prompt"] + p["canonical_solution"]).strip()
        got = extract(f"Here you go:\n\n```python\n{program}\n```\n")
        assert got.status == "ok", p["task_id"]
        assert got.code == program


def test_huge_response_ends_as_a_status_not_an_exception():
    response = "```python\n" + "(" * (10 * 1024 * 1024) + "\n```"
    start = time.perf_counter()
    got = extract(response)
    assert got.status == "code_too_long" and got.code == "" and "10,485,760 UTF-8 bytes" in got.error
    assert time.perf_counter() - start < 30  # a generous bound: this must not hang


def test_batch_keeps_order():
    responses = [f"```python\nx = {i}\n```" if i % 3 else "prose" for i in range(50)]
    got = codescaler.extract_batch(responses)
    assert [g.code for g in got] == [upstream_code(r) for r in responses]


@pytest.mark.parametrize("bad", [None, 3, b"```python\nx=1\n```", ["x"]])
def test_non_string_is_a_type_error(bad):
    with pytest.raises(TypeError, match="response must be str"):
        extract(bad)


def test_unknown_policy_names_it():
    with pytest.raises(codescaler.InputError, match="nope"):
        extract("```python\nx=1\n```", policy="nope")
