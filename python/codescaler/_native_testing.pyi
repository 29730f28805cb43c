"""
Test helpers over the C++ core (scanners, the syntax check alone, tokenizer, planner); production code uses codescaler._native.
"""

from collections.abc import Sequence
from typing import Final

import codescaler._native


class Tokenizer:
    """
    A Hugging Face tokenizer.json (byte-level BPE) read and run by the C++ core.
    """

    @staticmethod
    def open(path: str) -> Tokenizer:
        """
        Reads `path`; raises ValueError naming what is unsupported or malformed.
        """

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """
        Token ids of `text`, as tokenizers.Tokenizer.encode(text, add_special_tokens).ids.
        """

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = True, threads: int = 1) -> list[list[int]]:
        """
        encode over many texts with the GIL released, on `threads` threads (0: all cores).
        """

    def token_to_id(self, token: str) -> int | None:
        """
        The id of a token as tokenizer.json spells it (added tokens included), or None.
        """

    @property
    def vocab_size(self) -> int:
        """One past the largest id."""

    unicode_version: Final[str] = ...
    """
    The Unicode version of the tokenizer's character tables (the building Python's unicodedata).
    """

def unicode_version() -> str:
    """
    The Unicode version of the \\w and whitespace tables built in (the building Python's unicodedata).
    """

def plan(items: Sequence[Sequence[int] | None], bounds: Sequence[int], pad_id: int | None, share: bool, max_batch_tokens: int, max_batch_size: int) -> tuple[list[list[int]], list[int], list[int], list[list[tuple[int, list[int]]]]]:
    """
    codescaler.plan.plan(items, bounds, pad_id, packed=True, ...) planned by the C++ planner the C++ scorer uses, with the GIL released. Returns (seqs, pools, slot, packs), packs as lists of (prefix, members) tuples.
    """

def findall_codescaler(text: str) -> list[tuple[str, str]]:
    """
    The (tag, body) pairs re.findall(FENCE, text) returns, found by the C++ scanner.
    """

def scan_tolerant(text: str) -> list[tuple[str, str, bool]]:
    """The (tag, body, closed) blocks a Markdown-tolerant reader finds."""

def strip(text: str) -> str:
    """str.strip() as the C++ core computes it."""

def check_syntax(code: str, language: str, parse_budget_steps: int = codescaler._native.PARSE_BUDGET_STEPS) -> codescaler._native.Extraction:
    """
    The C++ verdict on `code` alone (Python: the ast.parse check; other languages: tree-sitter), as an extract_batch result whose block is the whole of `code`.
    """
