"""Preference pairs for reward-model training: read, validate, deduplicate, split by question, add
unaligned negatives, and tokenize exactly as the scorer does.

Inputs are CodeScalerPair rows (``question_content``, ``code_pos``, ``code_neg``, optional ``margin``) or
TRL's conversational preference rows (``chosen``/``rejected`` message lists, optionally with a separate
``prompt`` list), in JSONL or Parquet. Each side's code goes through the published extraction rules
(a response with fences is extracted with policy ``codescaler``; bare code must parse), so the model is
trained on exactly what it will be asked to score; pairs where either side has no valid code are dropped.
Token ids come from :class:`codescaler.encode.Encoder` over :class:`codescaler.template.ChatTemplate`,
the scorer's own objects, so training and scoring see identical tokens by construction.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from codescaler.errors import InputError
from codescaler.extract import extract
from codescaler.records import objects

if TYPE_CHECKING:
    import datasets

    from codescaler.encode import Encoder

KINDS = ("aligned", "unaligned")


@dataclass(frozen=True)
class Pair:
    """One preference: for ``question``, code ``chosen`` should score above code ``rejected``.

    ``kind`` is ``aligned`` (both written for the question) or ``unaligned`` (``rejected`` is a valid
    program written for a different question).
    """

    question: str
    chosen: str
    rejected: str
    kind: str = "aligned"
    margin: float | None = None


@dataclass
class PairReport:
    """What :func:`prepare_pairs` did, for the log and the training summary."""

    read: int = 0
    invalid: int = 0  # dropped: a side without valid code
    duplicates: int = 0
    eval_overlap: int = 0  # training pairs dropped because their question is in the eval data
    unaligned: dict = field(default_factory=dict)  # split -> unaligned pairs added
    pairs: dict = field(default_factory=dict)  # split -> pairs after everything
    questions: dict = field(default_factory=dict)  # split -> distinct questions

    def lines(self) -> list[str]:
        out = [f"read {self.read} pairs; dropped {self.invalid} without valid code on both sides, "
               f"{self.duplicates} duplicates" + (f", {self.eval_overlap} whose question is in the eval data"
                                                 if self.eval_overlap else "")]
        for split in self.pairs:
            out.append(f"{split}: {self.pairs[split]} pairs over {self.questions[split]} questions "
                       f"({self.unaligned.get(split, 0)} unaligned added)")
        return out


def valid_code(text: str) -> str:
    """The code the scorer would see in ``text``: extracted if it is fenced, else ``text`` itself if it
    parses; "" when there is none."""
    if "```" not in text:
        text = f"```python\n{text}\n```"
    return extract(text, policy="codescaler").code


def _read_rows(path: Path) -> list[dict]:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    with open(path, "rb") as f:
        return [row for _n, row in objects(path, f)]


def _turn(messages: Any, role: str, where: str) -> str:
    if not isinstance(messages, list):
        raise InputError(f"{where}: expected a list of messages")
    for m in messages:
        if isinstance(m, dict) and m.get("role") == role and isinstance(m.get("content"), str):
            return m["content"]
    raise InputError(f"{where}: no {role!r} message with string content")


def _pair(row: dict, where: str) -> Pair:
    margin = row.get("margin")
    if margin is not None and not isinstance(margin, (int, float)):
        raise InputError(f"{where}: field 'margin' must be a number")
    margin = None if margin is None else float(margin)
    if "question_content" in row:
        for name in ("question_content", "code_pos", "code_neg"):
            if not isinstance(row.get(name), str):
                raise InputError(f"{where}: field {name!r} must be a string")
        return Pair(row["question_content"], row["code_pos"], row["code_neg"], margin=margin)
    if "chosen" in row and "rejected" in row:
        prompt = row.get("prompt") or []
        chosen, rejected = prompt + row["chosen"], prompt + row["rejected"]
        question = _turn(chosen, "user", f"{where}: 'chosen'")
        if _turn(rejected, "user", f"{where}: 'rejected'") != question:
            raise InputError(f"{where}: 'chosen' and 'rejected' ask different questions")
        return Pair(question, _turn(chosen, "assistant", f"{where}: 'chosen'"),
                    _turn(rejected, "assistant", f"{where}: 'rejected'"), margin=margin)
    raise InputError(f"{where}: expected CodeScalerPair columns (question_content, code_pos, code_neg) "
                     f"or TRL conversational chosen/rejected; got {sorted(row)}")


def read_pairs(path: str | Path) -> list[Pair]:
    """Every row of a JSONL or Parquet file as a :class:`Pair` (code not yet validated)."""
    path = Path(path)
    return [_pair(row, f"{path}:{i + 1}") for i, row in enumerate(_read_rows(path))]


def _validated(pairs: Sequence[Pair], report: PairReport) -> list[Pair]:
    out, seen = [], set()
    for p in pairs:
        chosen, rejected = valid_code(p.chosen), valid_code(p.rejected)
        if not chosen or not rejected:
            report.invalid += 1
            continue
        key = (p.question, chosen, rejected)
        if key in seen or chosen == rejected:
            report.duplicates += 1
            continue
        seen.add(key)
        out.append(replace(p, chosen=chosen, rejected=rejected))
    return out


def split_by_question(pairs: Sequence[Pair], eval_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(train, eval): whole questions go to one side, never single pairs."""
    questions = sorted({p.question for p in pairs})
    random.Random(seed).shuffle(questions)
    n_eval = round(len(questions) * eval_fraction)
    if eval_fraction > 0 and len(questions) > 1:
        n_eval = min(max(n_eval, 1), len(questions) - 1)
    held = set(questions[:n_eval])
    return [p for p in pairs if p.question not in held], [p for p in pairs if p.question in held]


def add_unaligned(pairs: Sequence[Pair], ratio: float, seed: int) -> list[Pair]:
    """``pairs`` plus about ``ratio * len(pairs)`` unaligned pairs drawn from them: the positive of one
    question against a positive (a valid program) written for another question of the same set."""
    by_question: dict[str, list[str]] = {}
    for p in pairs:
        if p.kind == "aligned":
            by_question.setdefault(p.question, []).append(p.chosen)
    questions = sorted(by_question)
    want = round(ratio * len(pairs))
    if want == 0 or len(questions) < 2:
        return list(pairs)
    rng = random.Random(seed)
    seen = {(p.question, p.chosen, p.rejected) for p in pairs}
    extra: list[Pair] = []
    for _ in range(20 * want):
        if len(extra) == want:
            break
        q, other = rng.sample(questions, 2)
        chosen, rejected = rng.choice(by_question[q]), rng.choice(by_question[other])
        if (q, chosen, rejected) in seen or chosen == rejected:
            continue
        seen.add((q, chosen, rejected))
        extra.append(Pair(q, chosen, rejected, kind="unaligned", margin=None))
    return list(pairs) + extra


def prepare_pairs(pairs: Sequence[Pair], *, eval_pairs: Sequence[Pair] | None = None, unaligned_ratio: float = 0.3,
                  eval_fraction: float = 0.1, seed: int = 0) -> tuple[list[Pair], list[Pair], PairReport]:
    """Validate, deduplicate, split by question (unless ``eval_pairs`` are given) and add unaligned pairs
    within each split, so no question is seen on both sides."""
    report = PairReport(read=len(pairs) + len(eval_pairs or ()))
    good = _validated(pairs, report)
    if eval_pairs is None:
        train, held = split_by_question(good, eval_fraction, seed)
    else:
        held = _validated(eval_pairs, report)
        held_q = {p.question for p in held}
        train = [p for p in good if p.question not in held_q]
        report.eval_overlap = len(good) - len(train)
    splits = {"train": add_unaligned(train, unaligned_ratio, seed),
              "eval": add_unaligned(held, unaligned_ratio, seed + 1)}
    for name, ps in splits.items():
        report.unaligned[name] = sum(p.kind == "unaligned" for p in ps)
        report.pairs[name] = len(ps)
        report.questions[name] = len({p.question for p in ps})
    return splits["train"], splits["eval"], report


def tokenize_pairs(pairs: Sequence[Pair], encoder: Encoder) -> datasets.Dataset:
    """A dataset with ``chosen_ids``/``rejected_ids`` (TRL's pre-tokenized preference format), ``kind``
    and, when any pair carries one, ``margin`` (0.0 where a pair has none)."""
    from datasets import Dataset

    questions = [p.question for p in pairs]
    columns = {
        "chosen_ids": encoder.encode(questions, [p.chosen for p in pairs]),
        "rejected_ids": encoder.encode(questions, [p.rejected for p in pairs]),
        "kind": [p.kind for p in pairs],
    }
    if any(p.margin is not None for p in pairs):
        columns["margin"] = [p.margin or 0.0 for p in pairs]
    return Dataset.from_dict(columns)
