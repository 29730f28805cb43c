"""
codescaler native core: fence scanning, block selection and syntax validation (Python as CPython's ast.parse decides it, other languages with tree-sitter).
"""

from collections.abc import Sequence


PARSE_BUDGET_STEPS: int = 32000000

MAX_CODE_BYTES: int = 262144

class Extraction:
    """
    What the C++ core found in one response: the selected block (tag and stripped code, also for syntax_error), its place in the response and the C++ syntax check's verdict. Offsets and columns count code points.
    """

    @property
    def status(self) -> str:
        """
        ok, no_block, multiple_blocks, empty_block, syntax_error, timeout or code_too_long; with validate=False, ok means selected and not checked.
        """

    @property
    def n_blocks(self) -> int:
        """Fenced blocks found, of any tag."""

    @property
    def tag(self) -> str | None:
        """The selected block's tag, None when it has none."""

    @property
    def code(self) -> str:
        """The selected block, stripped ("" when none was selected)."""

    @property
    def code_start(self) -> int:
        """Where code starts in the response."""

    @property
    def code_end(self) -> int:
        """Where code ends in the response."""

    @property
    def n_error_nodes(self) -> int:
        """tree-sitter's ERROR nodes in code."""

    @property
    def n_missing_nodes(self) -> int:
        """tree-sitter's MISSING nodes in code."""

    @property
    def error_line(self) -> int | None:
        """
        1-based line of the first error the C++ check found, None when it found none.
        """

    @property
    def error_column(self) -> int | None:
        """1-based column of that error, or None."""

def extract_batch(responses: Sequence[str], policy: str = 'codescaler', language: str = 'python', threads: int = 1, validate: bool = True, parse_budget_steps: int = PARSE_BUDGET_STEPS) -> list[Extraction]:
    """
    Extracts from each response with the GIL released, over `threads` threads (0: all cores); one Extraction per response, in input order. Validation spends at most `parse_budget_steps` parser steps per response (status timeout past them); selected code over MAX_CODE_BYTES UTF-8 bytes is status code_too_long, validate or not.
    """
