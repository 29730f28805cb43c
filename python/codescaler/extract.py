"""Syntax-aware program extraction: pick the program out of an LLM response and decide whether it parses.

The production path is native (``codescaler._native``: fence scanning, block selection and syntax validation
in C++, with the GIL released: tree-sitter for most languages, a C++ reading of CPython's ast.parse rules for
Python). For Python code CPython's own parser has the final word here, as in the published recipe.
``extract_spec`` is the recipe itself in plain Python, kept as the executable specification the native path
is tested against.

Policies: ``codescaler`` (the recipe: exactly one block, upstream's exact pattern), ``last`` (the last block
of the language) and ``best`` (the longest block of the language that parses cleanly, ties to the last).
"""

from __future__ import annotations

import ast
import gc
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from ._native import MAX_CODE_BYTES as _MAX_CODE_BYTES
from ._native import PARSE_BUDGET_STEPS as _PARSE_BUDGET_STEPS
from ._native import extract_batch as _native_extract_batch
from .errors import InputError
from .options import LANGUAGES, POLICIES

# The published pattern, verbatim in meaning: ```, an optional \w+ tag, a newline, then the shortest run
# of anything up to the next ```.
FENCE = re.compile(r"```(\w+)?\n(.*?)```", re.DOTALL)

STATUSES = ("ok", "no_block", "multiple_blocks", "empty_block", "syntax_error", "timeout", "code_too_long")

# Parser steps for all native syntax checks of one response (tree-sitter parse actions; tokens and grammar
# rules for Python); past it the status is "timeout". Steps, not seconds: the same response gets the same
# status on any machine under any load.
PARSE_BUDGET_STEPS = _PARSE_BUDGET_STEPS

# The most UTF-8 bytes of stripped code a selected block may hold (256 KiB); longer code is status
# "code_too_long": neither parsed nor scored, on every path (this module, the server, Ray, the C++ scorer).
# It bounds the validity check per item, CPython's ast.parse included (about 2 s per MB of dense code on
# this project's 2-core CPU), by bytes, so the same block gets the same status on any machine under any
# load; the model reads at most max_length tokens of the code anyway. The native core's kMaxCodeBytes, so
# the C++ scorer and this module apply one limit.
MAX_CODE_BYTES = _MAX_CODE_BYTES

# Above this size the parser allocates millions of AST objects; pausing the cyclic collector for the
# duration cuts its time about 4x (12 MB of code: 27 s -> 7 s) without changing the result.
_GC_PAUSE_BYTES = 1 << 16


@dataclass(frozen=True)
class Extraction:
    """What extraction found in one response.

    ``code`` is the program the reward model will see ("" when there is none); ``status`` is one of
    ``ok``, ``no_block``, ``multiple_blocks``, ``empty_block``, ``syntax_error``, ``timeout`` (the native
    parse budget of ``PARSE_BUDGET_STEPS`` steps ran out) or ``code_too_long`` (the code is over
    ``MAX_CODE_BYTES`` UTF-8 bytes, so it was not parsed); ``error`` carries the deciding parser's message for
    ``syntax_error`` and the size for ``code_too_long``, and ``error_line``/``error_column`` (1-based, code
    points) where it found the first error. ``n_error_nodes``/``n_missing_nodes`` count tree-sitter's ERROR and MISSING nodes when
    tree-sitter validated the code (0 when CPython alone decided).
    """

    code: str
    status: str
    n_blocks: int
    tag: str | None = None
    error: str | None = None
    language: str = "python"
    error_line: int | None = None
    error_column: int | None = None
    n_error_nodes: int = 0
    n_missing_nodes: int = 0

    @property
    def valid(self) -> bool:
        """The code was found and parses: the reward model will score it."""
        return self.status == "ok"


def _python_verdict(code: str) -> tuple[bool, str | None, int | None, int | None]:
    pause = len(code) > _GC_PAUSE_BYTES and gc.isenabled()
    if pause:
        gc.disable()
    try:
        ast.parse(code)
    except Exception as exc:  # the recipe counts any failure to parse as invalid code
        return False, f"{type(exc).__name__}: {exc}", getattr(exc, "lineno", None), getattr(exc, "offset", None)
    finally:
        if pause:
            gc.enable()
    return True, None, None, None


def python_parses(code: str) -> tuple[bool, str | None]:
    """CPython's verdict on ``code`` as the recipe asks it (``ast.parse``; any exception is invalid)."""
    ok, error, _, _ = _python_verdict(code)
    return ok, error


def _utf8_size(code: str) -> int:
    """UTF-8 bytes of ``code``, the unit of ``MAX_CODE_BYTES`` (a lone surrogate counts 3, as the native
    side reads it)."""
    return len(code.encode("utf-8", "surrogatepass"))


def _too_long(size: int) -> str:
    return f"the code is {size:,} UTF-8 bytes, over the limit of {MAX_CODE_BYTES:,} (MAX_CODE_BYTES): not parsed"


def _check(policy: str, language: str) -> None:
    if policy not in POLICIES:
        raise InputError(f"extract(): unknown policy {policy!r}; known: {', '.join(POLICIES)}")
    if language not in LANGUAGES:
        raise InputError(f"extract(): unknown language {language!r}; known: {', '.join(LANGUAGES)}")


def extract_spec(response: str, policy: str = "codescaler", language: str = "python") -> Extraction:
    """The published recipe in plain Python (policy ``codescaler``, Python only), with this engine's
    ``MAX_CODE_BYTES`` limit: the reference for tests."""
    if not isinstance(response, str):
        raise TypeError(f"extract(): response must be str, got {type(response).__name__}")
    if policy != "codescaler" or language != "python":
        raise InputError(f"extract_spec(): only policy 'codescaler' for 'python', not {policy!r}/{language!r}")
    blocks = FENCE.findall(response)
    if not blocks:
        return Extraction("", "no_block", 0)
    if len(blocks) > 1:
        return Extraction("", "multiple_blocks", len(blocks))
    tag, body = blocks[0]
    code = body.strip()
    tag = tag or None
    if not code:
        return Extraction("", "empty_block", 1, tag)
    size = _utf8_size(code)
    if size > MAX_CODE_BYTES:
        return Extraction("", "code_too_long", 1, tag, _too_long(size))
    ok, error = python_parses(code)
    if not ok:
        return Extraction("", "syntax_error", 1, tag, error)
    return Extraction(code, "ok", 1, tag)


def extract(response: str, policy: str = "codescaler", language: str = "python") -> Extraction:
    """Extract the program in ``response`` under ``policy``; see the module docstring."""
    if not isinstance(response, str):
        raise TypeError(f"extract(): response must be str, got {type(response).__name__}")
    return extract_batch((response,), policy, language, threads=1)[0]


def extract_batch(
    responses: Sequence[str] | Iterable[str],
    policy: str = "codescaler",
    language: str = "python",
    threads: int | None = None,
    parse_budget_steps: int = PARSE_BUDGET_STEPS,
) -> list[Extraction]:
    """``extract`` over many responses, results in input order.

    Scanning, selection and native validation run in C++ with the GIL released over ``threads`` threads
    (None: all cores), spending at most ``parse_budget_steps`` parser steps per response. For Python,
    CPython's parser then decides validity of each selected program, once per distinct program.
    """
    _check(policy, language)
    if not isinstance(responses, (list, tuple)):
        responses = list(responses)
    if threads is not None and threads < 1:
        raise InputError(f"extract_batch(): threads must be >= 1 or None, got {threads}")
    if isinstance(parse_budget_steps, bool) or not isinstance(parse_budget_steps, int) or parse_budget_steps < 0:
        raise InputError(f"extract_batch(): parse_budget_steps must be an int >= 0, got {parse_budget_steps!r}")
    cpython = language == "python"
    # For policy best the native check must rank the candidates even when CPython gives the final verdict.
    validate = not cpython or policy == "best"
    budget = min(parse_budget_steps, 2**64 - 1)
    found = _native_extract_batch(responses, policy, language, threads or 0, validate, budget)
    verdicts: dict[str, tuple[bool, str | None, int | None, int | None]] = {}
    out: list[Extraction] = []
    pause = cpython and gc.isenabled()
    if pause:  # ast.parse allocates many acyclic objects; collecting during the loop only costs time
        gc.disable()
    try:
        for e in found:
            status, code, line, column, error = e.status, e.code, e.error_line, e.error_column, None
            if cpython and status in ("ok", "syntax_error"):
                verdict = verdicts.get(code)
                if verdict is None:
                    verdict = verdicts[code] = _python_verdict(code)
                ok, error, line, column = verdict
                status = "ok" if ok else "syntax_error"
            elif status == "syntax_error":
                error = (f"tree-sitter: {e.n_error_nodes} ERROR and {e.n_missing_nodes} MISSING node(s), "
                         f"first at line {line}, column {column}")
            elif status == "timeout":
                error = f"parse budget of {parse_budget_steps} steps exhausted"
            elif status == "code_too_long":
                error = _too_long(_utf8_size(code))
            out.append(
                Extraction(
                    code if status == "ok" else "", status, e.n_blocks, e.tag, error, language, line, column,
                    e.n_error_nodes, e.n_missing_nodes,
                )
            )
    finally:
        if pause:
            gc.enable()
    return out
