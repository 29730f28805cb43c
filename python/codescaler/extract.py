"""Syntax-aware program extraction, policy ``codescaler``: the executable spec of the published recipe.

A response yields code only if it holds exactly one fenced block and that block, stripped, parses as
Python under CPython's own parser. Everything else yields empty code, which the reward shapes to 0.0.
"""

from __future__ import annotations

import ast
import gc
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from .errors import InputError

# The published pattern, verbatim in meaning: ```, an optional \w+ tag, a newline, then the shortest run
# of anything up to the next ```.
FENCE = re.compile(r"```(\w+)?\n(.*?)```", re.DOTALL)

POLICIES = ("codescaler",)
LANGUAGES = ("python",)

# Above this size the parser allocates millions of AST objects; pausing the cyclic collector for the
# duration cuts its time about 4x (12 MB of code: 27 s -> 7 s) without changing the result.
_GC_PAUSE_BYTES = 1 << 16


@dataclass(frozen=True)
class Extraction:
    """What extraction found in one response.

    ``code`` is the program the reward model will see ("" when there is none); ``status`` is one of
    ``ok``, ``no_block``, ``multiple_blocks``, ``empty_block`` or ``syntax_error``; ``error`` carries the
    parser's message for ``syntax_error``.
    """

    code: str
    status: str
    n_blocks: int
    tag: str | None = None
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.status == "ok"


def python_parses(code: str) -> tuple[bool, str | None]:
    """CPython's verdict on ``code`` as the recipe asks it (``ast.parse``; any exception is invalid)."""
    pause = len(code) > _GC_PAUSE_BYTES and gc.isenabled()
    if pause:
        gc.disable()
    try:
        ast.parse(code)
    except Exception as exc:  # the recipe counts any failure to parse as invalid code
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        if pause:
            gc.enable()
    return True, None


def _check(response: object, policy: str, language: str) -> str:
    if not isinstance(response, str):
        raise TypeError(f"extract(): response must be str, got {type(response).__name__}")
    if policy not in POLICIES:
        raise InputError(f"extract(): unknown policy {policy!r}; known: {', '.join(POLICIES)}")
    if language not in LANGUAGES:
        raise InputError(f"extract(): policy {policy!r} supports language(s) {', '.join(LANGUAGES)}, not {language!r}")
    return response


def extract(response: str, policy: str = "codescaler", language: str = "python") -> Extraction:
    """Extract the one program in ``response`` under ``policy``; see the module docstring."""
    text = _check(response, policy, language)
    blocks = FENCE.findall(text)
    if not blocks:
        return Extraction("", "no_block", 0)
    if len(blocks) > 1:
        return Extraction("", "multiple_blocks", len(blocks))
    tag, body = blocks[0]
    code = body.strip()
    tag = tag or None
    if not code:
        return Extraction("", "empty_block", 1, tag)
    ok, error = python_parses(code)
    if not ok:
        return Extraction("", "syntax_error", 1, tag, error)
    return Extraction(code, "ok", 1, tag)


def extract_batch(
    responses: Sequence[str] | Iterable[str], policy: str = "codescaler", language: str = "python"
) -> list[Extraction]:
    """``extract`` over many responses, results in input order."""
    return [extract(r, policy, language) for r in responses]
