"""The C++ Python verdict against CPython's, on the corpora the project has.

Policy ``codescaler`` lets CPython decide whether the selected Python block is valid (``ast.parse``, any
exception is invalid). A scorer without CPython in the process (the C++ scorer, the C ABI) asks the C++
check instead (``_native.extract_batch(..., validate=True)``): CPython 3.11's tokenizer rules, its grammar
without the ``invalid_*`` rules, the checks its parser actions make on literals, and its depth limits,
written in C++ (csrc/extract/python_*.cpp). What a user of such a scorer relies on: a block CPython accepts
keeps its reward, and a block CPython rejects gets none, whatever the kind of error (the reward must not be
a loophole a policy can find).

The corpora and the comparison live here; ``python -m benchmarks.bench_verdict`` runs them in full and
prints the tables. The tests below run a deterministic subset.

Measured (CPython 3.11.7): on the 9,742 blocks of the full corpora the two disagree on 1, an unknown
``\\N{...}`` character name (the C++ check knows the shape of a name, not the Unicode name list); on the
32,399 Python files of this interpreter's stdlib and site-packages (CPython's own invalid test files
included), on none; on 600,000 mutated snippets of stdlib and CPython test code, once, on that kind. The
depth limits depend on the caller: ast.parse refuses an AST deeper than 3 x (the recursion limit - the
Python frames already on the stack), and the C++ check fixes that depth for a caller five frames deep
(2,985). Before this check the C++ verdict was tree-sitter's, which accepted 8.3% of these blocks that
CPython rejects and rejected 0.2% it accepts.
"""

from __future__ import annotations

import concurrent.futures
import random
import re
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

from codescaler import _native, _native_testing
from codescaler.extract import MAX_CODE_BYTES, extract_batch
from codescaler.extract import python_parses
from test_extract_corpus import awkward_response, humaneval_responses, well_formed_response  # noqa: F401 (fixture)

pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning", "ignore::DeprecationWarning")
# The C++ check is CPython 3.11's rules; other versions' ast.parse differs (3.10 lacks except* and a[*b],
# 3.12 reads f-strings as tokens and adds `type`), so comparisons with the running interpreter need 3.11.
needs_cpython_311 = pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the C++ check follows CPython 3.11")

PARSE_BUDGET_STEPS = _native.PARSE_BUDGET_STEPS


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
    native: bool  # _native.extract_batch(validate=True): the C++ check decided
    timed_out: bool  # the C++ check's parse budget ran out (counted as rejected)
    error: str | None  # CPython's message when it rejects
    cp_line: int | None  # CPython's error line
    native_line: int | None  # where the C++ check found the error
    native_column: int | None


def verdicts(responses: list[str], threads: int = 1) -> list[Verdict]:
    """The responses that have a non-empty block, each with CPython's and the C++ check's verdict on it."""
    cpython = extract_batch(responses, threads=threads)
    native = _native.extract_batch(responses, "codescaler", "python", threads, True, PARSE_BUDGET_STEPS)
    out = []
    for r, cp, e in zip(responses, cpython, native):
        checked = e.status in ("ok", "syntax_error", "timeout")
        assert checked == (cp.status in ("ok", "syntax_error")), (r, cp.status, e.status)  # same selection
        if checked:
            assert cp.code in ("", e.code)
            out.append(Verdict(r, e.code, cp.valid, e.status == "ok", e.status == "timeout", cp.error, cp.error_line,
                               e.error_line, e.error_column))
    return out


def unknown_character_name(v: Verdict) -> bool:
    """The one kind of disagreement left: a ``\\N{...}`` escape whose name has the shape of a Unicode
    character name but is not one. The C++ check does not carry the Unicode name list; CPython looks it up."""
    return (not v.cpython and v.native and v.error is not None and "unknown Unicode character name" in v.error
            and re.search(r"\\N\{[A-Za-z0-9 -]+\}", v.code) is not None)


def disagreements(vs: list[Verdict]) -> list[Verdict]:
    return [v for v in vs if v.cpython != v.native]


# The verdict classes the C++ check must get right, each asserted against ast.parse snippet by snippet: the
# kinds of invalid Python tree-sitter used to accept, then the kinds of valid Python it used to reject.
VERDICT_CLASSES: dict[str, list[str]] = {
    "lone else, elif, except, finally": [
        "else", "else:\n    pass", "elif x:\n    pass", "except:\n    pass", "except ValueError as e:\n    pass",
        "finally:\n    pass", "if x:\n    pass\nelse", "try:\n    pass\nelse:\n    pass", "x = 1\nelse:\n    y = 2",
        "for x in y:\n    pass\nelse:\n    pass", "while x:\n    pass\nelif y:\n    pass",
    ],
    "stray backslash": [
        "\\", "x = 1 \\", "x = 1\n\\\n", "x = 1 \\ y", "\\\nx = 1", "\\\n\nx = 1", "    \\\nx = 1",
        "if 1:\n    \\\n  pass", "x = (1 \\\n + 2)", "x = 1 + \\\n\ny", "def f():\n    return 1 \\",
    ],
    "backticks and stray characters": ["`x`", "x = `1`", "x = $y", "x = a ? b : c", "x = !y", "x = 1 <> 2", "x = 1\x0b",
                                       "x = '`$?!'  # `x`", "x = 1 != 2"],
    "statement-level walrus": [
        "x := 1", "x = y := 1", "(x := 1)", "f(x := 1)", "if (n := 1):\n    pass", "y = [x := 1, 2]", "x[y := 1]",
        "def f(a=(b := 1)):\n    pass", "f(x=y := 1)", "(a.b := 1)", "{x := 1}", "x := 1, 2",
    ],
    "byte-order mark": ["\ufeffx = 1", "x = 1\n\ufeff", "x = '\ufeff'", "# \ufeff", "x = 1  # \ufeff\n\ufeffy = 2"],
    "python 2 print and exec": [
        'print "x"', "print x", "print >>sys.stderr, x", "print x,", "print(x)", "print", "print >>f, x",
        'exec "x = 1"', "exec(code)", "print x, y", "print(x) if x else None",
    ],
    "indentation": [
        "  x = 1", "if x:\npass", "if x:\n    a\n  b", "if 1:\n\tx = 1\n        y = 2", "if 1:\n        x = 1\n\ty = 2",
        "if 1:\n  x = 1\n\ty = 2", "class A:\n    pass\n  x = 1", "def f():\n\treturn 1\n", "if x:\n    # only a comment",
        "if x:\n    pass\n        \n", "for i in x:\n# c\n    pass", "if 1:\n    \tx = 1\n    \ty = 2", "if 1:\n\x0c    x = 1",
        "def f():\n    x = 1\n     y = 2", "def f():\n  if x:\n      pass\n    return", _indent_chain(99), _indent_chain(100),
    ],
    "invisible characters": [
        "x\u200b = 1", "x = 1\u200b", "x\u00a0= 1", "x = 1\u2028", "x\u200d = 1", "x = '\u200b'", "# \u200b",
        "x = 1  # \u00a0", "\u3000x = 1", "x = 1\x00", "x = '\x00'", "x = 1\x01",
    ],
    "lone surrogates": ["x = '\ud800'", "# \udfff", "\ud800", "s = '''\ud83d'''", "x = 1  # \udc00", "x = 1"],
    "keywords as names": [
        "async = 1", "await = 1", "x.async = 1", "def await():\n    pass", "class = 1", "else = 1", "None = 1",
        "True = 1", "def f(lambda):\n    pass", "import await", "print = 1", "match = 1", "case = 1", "_ = 1",
        "type = 1", "f(if=1)", "x.match.case = 1", "nonlocal = 1",
    ],
    "identifiers (PEP 3131)": ["é = 1", "x·y = 1", "٣ = 1", "a€ = 1", "🙂 = 1", "ｉｆ = 1", "e\u0301 = 1", "℘ = 1"],
    "literals": [
        "x = 07", "x = 0_7", "x = 1__0", "x = 0b2", "x = 1e", "x = 1if y else 2", "x = [0x1for x in y]", "x = 1.__class__",
        "x = 1" + "0" * 4300, "x = 1" + "0" * 4299, "s = '\\x4'", "s = b'\\x4'", "s = b'\\u12'", "s = b'\\xe9'",
        "s = b'é'", "s = 'a' b'b'", "f'{x!z}'", "f'{}'", "f'{x:{y:{z}}}'", "f'{*a}'", "f'{*a, b}'", "f'{x=}'",
        "f'{a[\"b\"]}'", "f'{\"\\n\".join(x)}'", "f'{x # c\n}'", "f'{x}}'", "f'{{}}'", "s = '\\N{BULLET}'",
    ],
    "lone carriage return as a line break": ["x = 1\ry = 2", "def f():\r    return 1", "x = (1,\r2)", "# c\rx = 1", "x = 1\r\r)"],
    "continuation lines left of their statement": [
        "def f():\n    return (1 +\n2)", "def f():\n    return [i for i in\n x]", "def f():\n    x = f(a=\nb)",
        "class A:\n    def f(self):\n        return self.g(a +\n    b)", "def f():\n    return (1 +\n2",
    ],
    "starred expressions": [
        "x = a, *b", "return *[None] * 3, x", "x = a, *[]", "[a, *[b]] = c", "*a = 1", "(*a) = 1", "x = *a",
        "f(*a, *b)", "f(**a, *b)", "a, *b, *c = d", "host, *rest = endpoint, *[]", "a[*b]",
    ],
    "from __future__": ["from __future__ import *", "from __future__ import braces", "from __future__ import (a,)",
                        "from __future__ import a,"],
    "depth limits": [
        _nest("(", ")", 200), _nest("(", ")", 201), _nest("[", "]", 200), "x = " + "-" * 2000 + "1",
        "x = " + "-" * 5000 + "1", "x = " + "lambda: " * 2000 + "1", "x = " + "lambda: " * 3000 + "1",
        "x = " + "+".join(["1"] * 20000), "x = a" + ".b" * 5000, "x = " + "(" * 150 + "-" * 1900 + "1" + ")" * 150,
    ],
}


@pytest.fixture(scope="module", autouse=True)
def _default_recursion_limit():
    """ast.parse refuses an AST deeper than 3 x (the recursion limit - the frames on the stack), and other
    tests' libraries raise the process-wide limit (torch's compiler does), so CPython's verdict on the depth
    cases is taken at Python's default limit, the one the C++ check is calibrated to."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    yield
    sys.setrecursionlimit(old)


def native_verdict(code: str) -> bool:
    return _native_testing.check_syntax(code, "python").status == "ok"


def cpython_verdict(code: str) -> bool:
    return python_parses(code)[0]


# --- tests: a deterministic subset (6,639 responses, 4,184 blocks checked) and the verdict classes -----------


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


@needs_cpython_311
@pytest.mark.parametrize("kind", list(VERDICT_CLASSES))
def test_verdict_class_agrees_with_ast_parse(kind):
    """Each snippet alone, and fenced in a response through the extraction path a CPython-free scorer uses.
    Every class holds both valid and invalid snippets."""
    codes = VERDICT_CLASSES[kind]
    expected = [cpython_verdict(code) for code in codes]
    assert {True, False} <= set(expected), kind
    assert [(code, want) for code, want in zip(codes, expected) if native_verdict(code) != want] == []
    responses = [f"Here is the code:\n\n```python\n{code}\n```\n" for code in codes]
    for code, want, e in zip(codes, expected, _native.extract_batch(responses, "codescaler", "python", 1, True)):
        if e.code:  # a block that strips to nothing is empty_block on both paths
            assert e.status == ("ok" if cpython_verdict(e.code) else "syntax_error"), (kind, code)


def test_the_reported_loophole_is_closed():
    """{"question": "Write f.", "response": "```python\nelse\n```"} was scored 0.416 by the C++ example."""
    e, = _native.extract_batch(["```python\nelse\n```"], "codescaler", "python", 1, True)
    assert (e.status, e.n_blocks, e.code) == ("syntax_error", 1, "else")


@needs_cpython_311
def test_real_code_verdicts_agree(subset):
    """HumanEval responses, solutions, prompts and mutants and the standard-library sample: not one
    disagreement in either direction."""
    for name in ("humaneval responses", "humaneval solutions", "humaneval mutants", "stdlib"):
        assert [(v.code, v.cpython) for v in disagreements(subset[name])] == [], name


# Disagreements allowed over the subset, as a share of checked blocks: the issue's bound. Measured: 1 of
# 4,184 (the targeted unknown \N{...} name).
DISAGREEMENT_BOUND = 0.005


@needs_cpython_311
def test_disagreements_are_bounded_and_of_known_kinds(subset):
    checked = [v for vs in subset.values() for v in vs]
    wrong = disagreements(checked)
    assert len(wrong) <= DISAGREEMENT_BOUND * len(checked), len(wrong)
    assert [(v.code, v.cpython, v.error) for v in wrong if not unknown_character_name(v)] == []
    assert not any(v.timed_out for v in checked)


def test_lost_indentation_is_rejected(humaneval):
    """With every line's indentation removed, no HumanEval solution parses, for CPython or the C++ check
    (tree-sitter accepted 142 of 164)."""
    vs = verdicts([fence(d) for d in deindented(humaneval_programs(humaneval))])
    assert len(vs) == 164 and not any(v.cpython or v.native for v in vs)


def _cpp_block(size: int) -> str:
    line = "int f{i}(int a) {{ std::vector<int> v{{a, 2}}; return v[0] + static_cast<int>(v.size()); }}\n"
    out, i, n = [], 0, 0
    while n < size:
        out.append(line.format(i=i))
        n += len(out[-1])
        i += 1
    return "".join(out)


def _fewest_steps(code: str, language: str) -> int:
    """The smallest budget under which `code` does not run out."""
    lo, hi = 1, 10**9
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _native_testing.check_syntax(code, language, mid).status != "timeout" else (mid + 1, hi)
    return lo


def test_parse_budget_is_the_same_under_load():
    """The budget counts parser steps, not time: large blocks (just under MAX_CODE_BYTES) get the same status
    alone and while four other processes load the CPU and four threads parse at once, and a block given
    exactly the steps it needs passes under load while one step fewer is a timeout. (With the old wall-clock
    budget a 3 MB C++ block was ok in one process and timeout in four parallel ones.) No timing is asserted."""
    size = MAX_CODE_BYTES - 1024
    lines = "x = 1\n" * (size // 6)
    blocks = [("python", lines, 32_000_000),  # about 2 steps per byte: ok
              ("python", lines, 100_000),     # the same block on a small budget: timeout
              ("cpp", _cpp_block(size), 32_000_000)]

    def statuses() -> list[str]:  # the native path alone, as the C++ scorer runs it
        return [_native.extract_batch([f"```{lang}\n{code}```"], "best", lang, 1, True, budget)[0].status
                for lang, code, budget in blocks]

    alone = statuses()
    assert alone == ["ok", "timeout", "ok"]
    over = _native.extract_batch(["```python\n" + "x = 1\n" * (MAX_CODE_BYTES // 6 + 1) + "```"], "best", "python", 1, True)
    assert over[0].status == "code_too_long"  # over the byte limit: never parsed, whatever the budget
    small = {"python": "def f(x):\n    return [i * x for i in range(3)]\n" * 2_000, "cpp": _cpp_block(60_000)}
    need = {lang: _fewest_steps(code, lang) for lang, code in small.items()}
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(4)]
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            loaded = [pool.submit(statuses) for _ in range(2)]
            edges = [pool.submit(_native_testing.check_syntax, small[lang], lang, need[lang] - k)
                     for lang in small for k in (0, 1)]
            assert [f.result() for f in loaded] == [alone, alone]
            assert [f.result().status for f in edges] == ["ok", "timeout", "ok", "timeout"]
    finally:
        for p in burners:
            p.kill()
            p.wait()
