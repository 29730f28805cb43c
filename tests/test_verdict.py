"""tree-sitter's Python verdict against CPython's, on the corpora the project has.

Policy ``codescaler`` lets CPython decide whether the selected Python block is valid (``ast.parse``, any
exception is invalid). A scorer without CPython in the process can only ask tree-sitter
(``_native.extract_batch(..., validate=True)``). What a user of such a scorer relies on: tree-sitter does
not turn a valid answer into a zero reward, and it rarely gives a reward to code CPython rejects.

The corpora and the comparison live here; ``python -m benchmarks.bench_verdict`` runs them in full and
prints the tables. The tests below run a deterministic subset.

Measured (CPython 3.11.7, tree-sitter-python 0.23.6): the claim "tree-sitter accepts some code CPython
rejects, never the reverse" is false. tree-sitter rejects code CPython accepts in four ways, all in the
targeted corpus below; a one-off scan of real code (31,919 CPython-valid files, 420 MB: this interpreter's
stdlib and the project's site-packages) found the first, second and fourth in 5 files:

- a continuation line inside brackets indented left of its statement, right after a token a closing
  bracket cannot follow (``def f():\n    return (1 +\n2)``; tree-sitter/tree-sitter-python#256; 1 file,
  test_compile.py);
- a starred element of a tuple without parentheses (or of a target list) whose operand is not a name,
  attribute, subscript or call (``return *[None] * 3, x``, ``x = a, *[]``; 3 files in torch);
- a lone carriage return as a line break (tree-sitter does not treat ``\r`` alone as one);
- ``from __future__ import *`` (ast.parse accepts it; compile() rejects it anyway; 1 file, a badsyntax test).

None of them occurs in the HumanEval solutions, prompts, mutants or responses. The other direction
(tree-sitter accepts, CPython rejects) is common on damaged and generated code: tree-sitter-python hardly
checks layout (unexpected indents, missing indented blocks, inconsistent dedents, tabs/spaces, line breaks
outside brackets), parses Python 2 statements, and skips the checks CPython makes beyond the grammar
(invisible characters, escapes, literals, assignment targets, argument order, nesting limits, 3.12 syntax
on 3.11).
"""

from __future__ import annotations

import ast
import io
import random
import re
import sysconfig
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

from codescaler import _native, extract_batch
from test_extract_corpus import awkward_response, humaneval_responses, well_formed_response  # noqa: F401 (fixture)

pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning", "ignore::DeprecationWarning")

PARSE_BUDGET_US = 1_000_000


def _nest(open_: str, close: str, depth: int, inner: str = "1") -> str:
    return "x = " + open_ * depth + inner + close * depth


def _indent_chain(depth: int) -> str:
    return "".join(" " * i + "if x:\n" for i in range(depth)) + " " * depth + "pass"


# Hand-made snippets per category, valid and invalid ones mixed; each becomes one fenced response.
TARGETED: dict[str, list[str]] = {
    "python 2 print/exec": [
        'print "hi"', "print x", "print x,", "print >>f, x", "print", "print()", 'print("ok")', "print(x, end='')",
        'exec "x = 1"', "exec code in ns", "exec(code)", 'print "a %s" % x', "print x, y", "print(x) if x else None",
    ],
    "python 2 other": [
        "`x`", "x <> y", 'raise E, "m"', "try:\n    pass\nexcept E, e:\n    pass", "ur'x'", "u'x'", "0777", "0L",
        "def f((a, b)):\n    pass", "lambda (a, b): a", "d.has_key(k)", "import urllib2", "x = 10 / 3",
    ],
    "f-strings": [
        "f'{x!r:>10}'", "f'{x=}'", "f'{x=!r:^20}'", "f'{x:{w}.{p}f}'", "f'{{}}'", "f'{x}' f'{y}' 'z'",
        "f'''{\nx\n}'''", "f'{(lambda: 1)}'", "f'{a[\"b\"]}'", "f'{x:%Y-%m}'", "rf'\\d{x}'", "fR'{x}'", "f'{'", "f'}'",
        "f'{}'", "f'{x!z}'", "f'{lambda: 1}'", "f'{'a'}'", "f'{\"\\n\".join(x)}'", "f'{x!r=}'", "f'{x # c\n}'",
        "f'{x:{y:{z}}}'", "f'{*a}'", "f'{yield}'", "f'{x!}'",
    ],
    "match statements": [
        "match x:\n    case [1, *r]:\n        pass\n    case {'a': b}:\n        pass\n"
        "    case Point(x=0) | None:\n        pass\n"
        "    case _:\n        pass",
        "match(x)", "case = 1", "match[x]", "match = case = 1", "match x, y:\n    case 1, 2:\n        pass",
        "match -x:\n    case -1:\n        pass", "match x:\n    case {**rest}:\n        pass",
        "match x:\n    case 1 | 2 as y if y:\n        pass", "match x:\n    case a.b.c:\n        pass",
        "match x:\n    case 1+2j:\n        pass", "match x:\n    case ():\n        pass", "match x:\n    pass",
        "case 1:\n    pass", "match x:\n    case 1 + :\n        pass", "match x:\n    case a, *b, *c:\n        pass",
        "match x:\n    case {**r, 'a': 1}:\n        pass", "match x:\n    case f(x):\n        pass",
        "match x:\n    case 1 if:\n        pass", "match x:\n    case a | b:\n        pass",
        "match x:\n    case x.y():\n        pass", "match x:\ncase 1:\n    pass",
    ],
    "walrus": [
        "(y := 5)", "x = (y := 1)", "[y := f(x) for x in z]", "a[b := 1]", "{x := 1}", "f(x := 1)",
        "def f(x=(y := 1)):\n    pass", "y := 5", "x = y := 5", "def f(a := 1):\n    pass", "(a.b := 1)",
        "(a[0] := 1)", "[i := 0 for i in x]", "f(x=y := 1)", "while (line := f()):\n    pass",
        "if any((n := x) > 0 for x in y):\n    pass", "lambda: (x := 1)", "(x, y := 1, 2)",
    ],
    "statements outside their scope": [
        "nonlocal x", "def f():\n    nonlocal x", "return 1", "yield 1", "await x", "break", "continue",
        "async for x in y:\n    pass", "async with a:\n    pass", "def f():\n    x = [await y for y in z]",
        "from __future__ import braces", "def f():\n    x = 1\n    global x", "class A:\n    return 1", "x = yield",
        "lambda: (yield)", "def f():\n    yield from g()\n    return 1", "x = *a", "def f(x, x):\n    pass",
        "f(a=1, a=2)", "__debug__ = 1", "async def f():\n    yield from g()", "from __future__ import *",
    ],
    "string escapes": [
        "s = '\\d'", "s = b'\\d'", "s = rb'\\d'", "s = '\\N{BULLET}'", "s = '\\N{foo}'", "s = '\\x1'", "s = '\\u12'",
        "s = '\\U0011ffff'", "s = b'é'", "s = '\\777'", "s = b'\\xff'", "s = 'abc", "s = '''abc", "s = 'a\\\nb'",
        "s = '\\\\'", "s = 'é' # é", "s = b'\\N{DASH}'",
    ],
    "null bytes": [
        "x = 1\x00", "x = 'a\x00b'", "# \x00", "\x00", "x = 1\n\x00\ny = 2", "s = '''\x00'''",
    ],
    "deep nesting": [
        _nest("(", ")", 50), _nest("(", ")", 199), _nest("(", ")", 200), _nest("(", ")", 201), _nest("(", ")", 300),
        _nest("[", "]", 100), _nest("[", "]", 500), _nest("{", "}", 250), "x = " + "-" * 1000 + "1",
        "x = " + "-" * 5000 + "1", "x = " + "not " * 2000 + "y", _indent_chain(50), _indent_chain(99),
        _indent_chain(100), _indent_chain(150), "x = " + "lambda: " * 300 + "1", "x = " + "+".join(["1"] * 20000),
        "x = a" + ".b" * 5000, "x = f" + "()" * 3000, "x = " + "[" * 60 + "]" * 60,
    ],
    "tabs and spaces": [
        "if 1:\n\tx = 1\n        y = 2", "if 1:\n        x = 1\n\ty = 2", "if 1:\n\tx = 1\n\ty = 2",
        "if 1:\n    \tx = 1\n    \ty = 2", "if 1:\n\t    x = 1\n\t    y = 2", "if 1:\n\tif 2:\n\t\tx = 1",
        "if 1:\n  x = 1\n\ty = 2", "if 1:\n\x0c    x = 1", "\x0cx = 1", "if 1:\n    x = 1\n  y = 2",
        "if 1:\n    x = 1\n\n        y = 2", "x = (1,\n\t2)",
    ],
    "unicode identifiers": [
        "é = 1", "变量 = 2", "x·y = 1", "℘ = 1", "ﬁ = 1", "𝔘𝔫𝔦 = 1", "e\u0301 = 1", "ｘ = 1", "x٣ = 1", "٣ = 1", "a€ = 1",
        "x\u200b = 1", "x\u00a0= 1", "🙂 = 1", "ª = 1", "Ⅷ = 1", "x\u2028= 1", "def naïve(ñ):\n    return ñ",
        "class Ĉ:\n    pass",
    ],
    "line endings": [
        "x = 1\r\ny = 2", "x = 1\ry = 2", "def f():\r    return 1", "x = 1\r\ny = 2\rz = 3", "x = (1,\r2)",
        "x = 1 \\\n+ 2", "x = 1 \\", "x = 1 \\\n", "x = '''a\rb'''", "# c\rx = 1", "if x:\r\n    pass\r\n",
    ],
    "numeric literals": [
        "x = 07", "x = 0_7", "x = 00", "x = 1__0", "x = 0b2", "x = 1e", "x = 0x", "x = 1_", "x = 09.5", "x = 09j",
        "x = 0o8", "x = 1_000.0_1e1_0j", "x = 0XFF", "x = 1J", "x = .5", "x = 5.", "x = 0b_1", "x = 1if y else 2",
        "x = [0x1for x in y]",
    ],
    "assignment targets and arguments": [
        "del f()", "f() = 1", "x + 1 = 2", "(a, b) += 1", "a, b += 1", "[x for x in y] = 1", "f(**a, *b)", "f(a=1, b)",
        "f(x for x in y, 1)", "lambda x=1, y: 0", "def f(*):\n    pass", "def f(*, **k):\n    pass",
        "class A(x for x in y):\n    pass", "True = 1", "None = 1", "x = yield = 1", "a, *b, *c = d", "() = x",
        "[] = x", "for a, in c:\n    pass", "del (a), [b]", "def f(a, /, b, *, c):\n    pass",
        "def f(a=1, /, b):\n    pass", "f(*a, *b, **c, **d)", "print(*a, sep='')", "x: int", "(x): int = 1",
        "a.b: int = 1", "(a, b): int", "a = b, = c", "x = [*a, *b]", "x = {**a, 'b': 1}",
        "with (a as b, c as d):\n    pass",
    ],
    "python 3.12+ syntax": [
        "type X = int", "def f[T](x: T) -> T:\n    return x", "class A[T]:\n    pass", "f'{'a'}'",
        "f'{\"\\n\".join(x)}'", "f'{x\n}'", "def f(*args: *Ts):\n    pass", "try:\n    pass\nexcept* E:\n    pass",
        "a[*b]",
    ],
    "keywords as names": [
        "async = 1", "await = 1", "print = 1", "exec = 1", "nonlocal = 1", "type = 1", "_ = 1", "True.real",
        "def match():\n    pass", "class case:\n    pass", "import match", "x.async = 1", "x.print = 1",
        "def f(print):\n    pass", "lambda: await",
    ],
    "line breaks outside brackets": [
        "def foo(x)\n:\n    return x", "x = 1 +\n2", "if x\n:\n    pass", "x =\n1", "for x\nin y:\n    pass",
        "import\nos", "lambda\n: 1", "return\n1", "def f(a,\nb):\n    pass", "x = [1,\n2]",
    ],
    "dedented continuation lines": [  # inside brackets, a line indented less than its statement
        "def f():\n    return (1 +\n2)", "def f():\n    return [i for i in\n x]",
        "def f():\n    return [a if b\n else c]", "def f():\n    x = f(a=\nb)", "def f():\n    x = {a:\nb}",
        "def f():\n    x = (a.\nb)", "if True:\n    l[i+\n1]", "def f():\n    x = f(a,\nb)", "def f():\n    x = [\n1]",
        "def f():\n    return [x\n in y]", "def f():\n    x = (1 +\n     2)",
        "class A:\n    def f(self):\n        return self.g(a +\n    b)",
        "def f():\n    if (a and\n  b):\n        pass",
    ],
    "starred operands in tuples": [  # what follows * in a tuple without parentheses or a target list
        "x = a, *b", "return *a, b", "x = a, *b.c", "x = a, *f()", "x = (a, *[])", "f(a, *[1])", "x = [*[1] * 3]",
        "x = a, *[]", "return 1, *[2]", "return *[None] * 3, 1", "x = a, *'s'", "x = a, *(b)",
        "for x in a, *[1]:\n    pass", "a[1, *[2]]", "x = a, *-b", "[a, *[b]] = c", "host, *rest = endpoint, *[]",
    ],
    "indentation": [
        "  x = 1", "x = 1\n    y = 2", "if x:\npass", "if x:", "if x:\n    # only a comment",
        "class A:\n    pass\n  x = 1", "def f():\n    '''doc'''", "if x:\n    pass\nelse:\npass",
        "for x in y:\n\n    pass", "if x:\n    pass\n        \n", "def f():\nreturn 1", "if x:\n    a\n  b",
        "def f():\n    return 1\n  x = 2", "for i in x:\n# c\n    pass",
    ],
}


def targeted_responses() -> list[tuple[str, str]]:
    """(category, response) for every targeted snippet, fenced as a model would answer."""
    return [(cat, f"Here is the code:\n\n```python\n{code}\n```\n")
            for cat, codes in TARGETED.items() for code in codes]


def fence(code: str) -> str:
    return f"Here is a solution.\n\n```python\n{code}```\n"


def humaneval_programs(problems: list[dict]) -> list[str]:
    return [p["prompt"] + p["canonical_solution"] for p in problems]


def damaged(programs: list[str], per_program: int, seed: int) -> list[str]:
    """Programs broken the ways generated code breaks: cut short, a character dropped or inserted, a line
    re-indented."""
    rng = random.Random(seed)
    out = []
    for s in programs:
        for _ in range(per_program):
            kind = rng.randrange(4)
            if kind == 0:
                out.append(s[: rng.randint(len(s) // 3, len(s) - 1)])
            elif kind == 1:
                i = rng.randrange(len(s))
                out.append(s[:i] + s[i + 1:])
            elif kind == 2:
                i = rng.randrange(len(s))
                out.append(s[:i] + rng.choice("()[]{}:,.'\"=+\n\t #\\") + s[i:])
            else:
                lines = s.splitlines(keepends=True)
                j = rng.randrange(len(lines))
                lines[j] = rng.choice(["", "  ", "\t", "    "]) + lines[j].lstrip(" ")
                out.append("".join(lines))
    return out


def deindented(programs: list[str]) -> list[str]:
    """Programs whose indentation was lost (every line's leading whitespace removed), as when a chat
    front end collapses whitespace."""
    return ["\n".join(line.lstrip() for line in s.splitlines()) for s in programs]


def humaneval_mutants(problems: list[dict]) -> list[str]:
    """Every parseable single-edit mutant training/humaneval_pairs.py draws its negatives from (no sandbox)."""
    from codescaler.training.humaneval_pairs import mutants

    return [m for p in problems for _, m in mutants(p["prompt"], p["canonical_solution"])]


STDLIB = Path(sysconfig.get_paths()["stdlib"])
# Grammar-heavy files of CPython's own test suite, always part of the stdlib corpus when present.
GRAMMAR_FILES = ["test/test_grammar.py", "test/test_patma.py", "test/test_fstring.py",
                 "test/test_unicode_identifiers.py", "test/test_coroutines.py", "test/test_named_expressions.py",
                 "test/test_positional_only_arg.py"]


def _skipped(p: Path) -> bool:
    """Site packages and the files CPython's own tests keep invalid on purpose (lib2to3's Python 2 data,
    badsyntax_*)."""
    rel = p.relative_to(STDLIB).as_posix()
    return "site-packages" in p.parts or "lib2to3/tests/data" in rel or p.name.startswith("badsyntax")


def stdlib_sources(n: int, seed: int = 0, max_bytes: int = 40_000) -> list[str]:
    """The grammar-heavy test files plus ``n`` seeded stdlib modules under ``max_bytes``: valid Python the
    running interpreter ships (files whose text contains a fence are left out)."""
    if not STDLIB.is_dir():
        return []
    files = sorted(p for p in STDLIB.rglob("*.py") if p.stat().st_size <= max_bytes and not _skipped(p))
    chosen = [STDLIB / f for f in GRAMMAR_FILES if (STDLIB / f).exists()]
    chosen += random.Random(seed).sample(files, min(n, len(files)))
    out = []
    for p in chosen:
        try:
            text = p.read_text(encoding="utf-8-sig")  # a BOM is not part of the source
        except (UnicodeDecodeError, OSError):
            continue
        if "```" not in text:
            out.append(text)
    return out


@dataclass(frozen=True)
class Verdict:
    """Both verdicts on the block policy ``codescaler`` selects from one response."""

    response: str
    code: str
    cpython: bool  # codescaler.extract_batch: CPython decided
    tree_sitter: bool  # _native.extract_batch(validate=True)
    timed_out: bool  # tree-sitter's parse budget ran out (counted as rejected)
    error: str | None  # CPython's message when it rejects
    cp_line: int | None  # CPython's error line
    ts_line: int | None  # tree-sitter's first error
    ts_column: int | None


def verdicts(responses: list[str], threads: int = 1) -> list[Verdict]:
    """The responses that have a non-empty block, each with CPython's and tree-sitter's verdict on it."""
    cpython = extract_batch(responses, threads=threads)
    native = _native.extract_batch(responses, "codescaler", "python", threads, True, PARSE_BUDGET_US)
    out = []
    for r, cp, (status, _, _, code, _, _, _, _, line, column) in zip(responses, cpython, native):
        checked = status in ("ok", "syntax_error", "timeout")
        assert checked == (cp.status in ("ok", "syntax_error")), (r, cp.status, status)  # same selection
        if checked:
            assert cp.code in ("", code)
            out.append(Verdict(r, code, cp.valid, status == "ok", status == "timeout", cp.error, cp.error_line,
                               line, column))
    return out


def has_bare_cr(code: str) -> bool:
    """A carriage return not followed by a line feed: CPython's tokenizer reads it as a line break,
    tree-sitter does not (tree-sitter/tree-sitter-c-sharp#170: a lone CR is no line separator for
    tree-sitter, by design)."""
    return "\r" in code.replace("\r\n", "")


def dedented_continuations(code: str) -> dict[int, int]:
    """{row (1-based): spaces missing} for lines inside brackets that start left of their statement's
    first column. CPython ignores indentation inside brackets; tree-sitter-python's scanner only does so
    where a closing bracket could come next, elsewhere (after an operator, ``=``, ``:``, ``for``, ``in``,
    ``if``, ``else``, ``.``) it emits a dedent and fails (tree-sitter/tree-sitter-python#256)."""
    out: dict[int, int] = {}
    try:
        depth, indent, start, last_row = 0, 0, True, 0
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type in (tokenize.INDENT, tokenize.DEDENT, tokenize.NL, tokenize.COMMENT, tokenize.ENDMARKER):
                continue
            if tok.type == tokenize.NEWLINE:
                start = True
                continue
            row, col = tok.start
            if start:
                indent, start = col, False
            elif depth > 0 and row > last_row and col < indent:
                out[row] = indent - col
            last_row = tok.end[0]
            if tok.type == tokenize.OP:
                depth += tok.string in "([{"
                depth -= tok.string in ")]}"
    except (tokenize.TokenError, SyntaxError):
        pass
    return out


def reindented(code: str, rows: dict[int, int]) -> str:
    lines = code.split("\n")
    return "\n".join(" " * rows.get(i + 1, 0) + line for i, line in enumerate(lines))


def starred_non_names(code: str) -> list[str]:
    """Starred elements of tuples written without parentheses (``return a, *[b]``, ``x[1, *[2]]``) or of
    target lists whose operand does not start with a name: CPython takes any expression there,
    tree-sitter-python 0.23.6 only a name, attribute, subscript or call."""
    try:
        tree = ast.parse(code)
    except Exception:
        return []
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Tuple, ast.List)):
            continue
        bare = isinstance(node, ast.Tuple) and not (ast.get_source_segment(code, node) or "").startswith("(")
        if not (bare or isinstance(node.ctx, ast.Store)):
            continue
        for e in node.elts:
            if isinstance(e, ast.Starred):
                text = (ast.get_source_segment(code, e) or "*")[1:].lstrip()
                if not text[:1].isidentifier() or isinstance(e.value, ast.Await):
                    out.append(ast.get_source_segment(code, e))
    return out


def future_star(code: str) -> bool:
    """``from __future__ import *``: ast.parse accepts it (compile() does not), tree-sitter does not."""
    return re.search(r"^\s*from\s+__future__\s+import\s+\*", code, re.M) is not None


def strict_kind(code: str) -> str | None:
    """Which known kind of tree-sitter strictness explains a rejection of code CPython accepts, if any."""
    if has_bare_cr(code):
        return "lone carriage return"
    if dedented_continuations(code):
        return "continuation line left of its statement"
    if starred_non_names(code):
        return "starred non-name in a bare tuple"
    if future_star(code):
        return "from __future__ import *"
    return None


# --- tests: a deterministic subset (6,639 responses, 4,184 blocks checked, about 2 s) ---------------------------------


@pytest.fixture(scope="module")
def subset(humaneval, humaneval_responses) -> dict[str, list[Verdict]]:
    rng = random.Random(20260521)
    programs = humaneval_programs(humaneval)
    corpora = {
        "generated": [awkward_response(rng) for _ in range(2000)] + [well_formed_response(rng) for _ in range(1000)],
        "humaneval responses": humaneval_responses,
        "humaneval solutions": [fence(p) for p in programs] + [fence(p["prompt"]) for p in humaneval],
        "humaneval mutants": [fence(m) for m in humaneval_mutants(humaneval)[::2]],
        "humaneval damaged": [fence(d) for d in damaged(programs, 5, seed=1)],
        "targeted": [r for _, r in targeted_responses()],
        "stdlib": [fence(s) for s in stdlib_sources(40)],
    }
    return {name: verdicts(rs, threads=2) for name, rs in corpora.items()}


def test_subset_is_large_and_mixed(subset):
    checked = [v for vs in subset.values() for v in vs]
    assert len(checked) > 4000
    assert sum(v.cpython for v in checked) > 2500 and sum(not v.cpython for v in checked) > 1000
    assert len(subset["humaneval solutions"]) == 2 * 164 and len(subset["humaneval mutants"]) > 1000
    assert len(subset["stdlib"]) >= 40


def test_tree_sitter_accepts_what_cpython_accepts_on_real_code(subset):
    """What a CPython-free scorer needs: a block CPython accepts keeps its reward. Holds on the HumanEval
    solutions, prompts, mutants and responses and on the standard-library sample."""
    for name in ("humaneval responses", "humaneval solutions", "humaneval mutants", "stdlib"):
        rejected = [v.code for v in subset[name] if v.cpython and not v.tree_sitter]
        assert rejected == [], name


def test_tree_sitter_rejects_cpython_valid_code_only_in_known_ways(subset):
    """It does not hold everywhere: tree-sitter rejects some code CPython accepts, in four known ways
    (``strict_kind``). Any other kind of such rejection fails here; each known kind is shown to be the
    cause: the code without it passes tree-sitter."""
    strict = [v for vs in subset.values() for v in vs if v.cpython and not v.tree_sitter]
    assert [(v.code, v.ts_line, v.ts_column) for v in strict if strict_kind(v.code) is None] == []
    kinds = {strict_kind(v.code) for v in strict}
    assert kinds == {"lone carriage return", "continuation line left of its statement",
                     "starred non-name in a bare tuple", "from __future__ import *"}  # the targeted cases
    for v in strict:
        kind = strict_kind(v.code)
        if kind == "lone carriage return":
            fixed = v.code.replace("\r\n", "\n").replace("\r", "\n")
        elif kind == "continuation line left of its statement":
            fixed = reindented(v.code, dedented_continuations(v.code))
        elif kind == "starred non-name in a bare tuple":
            fixed = v.code
            for starred in starred_non_names(v.code):
                fixed = fixed.replace(starred, "*_")  # a name in its place
        else:
            fixed = v.code.replace("import *", "import annotations")
        assert _native.check_syntax(fixed, "python")[0] == "ok", (kind, v.code, fixed)


# Upper bounds on tree-sitter-only acceptances (CPython rejects; a tree-sitter scorer would give a reward
# the recipe does not), as a share of checked blocks, from the measurement on this subset (in brackets)
# with room for seed-independent noise but not for a new kind of leniency:
# generated responses (11.4% of 1,037: invisible characters, lone surrogates, indentation errors, Python 2
# print, a lone backslash), HumanEval responses (1 of 492, a tab-indented variant: TabError), damaged
# HumanEval programs (10.2% of 820: mostly re-indented lines), targeted (26.7% of 329, hand-picked to
# disagree). Real code (solutions, prompts, mutants, stdlib): none. The subset is fixed, so these rates are
# exact for this tree-sitter build; the ~1/3 headroom lets a few snippets be added to the corpora, while
# a grammar or scanner change that makes tree-sitter markedly more lenient (or lenient on real code) fails.
LENIENCY_BOUND = {"generated": 0.15, "humaneval responses": 0.005, "humaneval solutions": 0.0,
                  "humaneval mutants": 0.0, "humaneval damaged": 0.14, "targeted": 0.35, "stdlib": 0.0}


def test_tree_sitter_leniency_stays_bounded(subset):
    rates = {name: sum(v.tree_sitter and not v.cpython for v in vs) / len(vs) for name, vs in subset.items()}
    over = {name: rate for name, rate in rates.items() if rate > LENIENCY_BOUND[name]}
    assert over == {}, rates


def test_lost_indentation_is_the_largest_leniency(humaneval):
    """tree-sitter-python hardly checks layout: with every line's indentation removed, most HumanEval
    solutions still parse for tree-sitter (142 of 164 measured), none for CPython."""
    vs = verdicts([fence(d) for d in deindented(humaneval_programs(humaneval))])
    assert len(vs) == 164 and not any(v.cpython for v in vs)
    assert sum(v.tree_sitter for v in vs) > 120
