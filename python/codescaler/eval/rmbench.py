"""RM-Bench: does the reward model prefer the correct response whatever the styles of the two?

Each prompt has three chosen and three rejected responses, styled concise, detailed plain text and
detailed markdown (in that order). Comparing every chosen response with every rejected one gives a 3x3
matrix per prompt, ``M[i][j] = 1`` when ``score(chosen[i]) > score(rejected[j])`` (0.5 on a tie, 0
otherwise), averaged over the prompts of a domain. As in RM-Bench's ``compute_accuracy``: Hard is the
mean of the upper-right triangle (i < j, the chosen response plainer than the rejected one), Normal the
diagonal, Easy the lower-left triangle; a domain's accuracy is the mean of all nine cells. Upstream counts
a tie as 0 (strict ``>``); we count it 0.5, so a constant scorer gets chance (50) rather than 0 — the two
differ only on exactly equal scores.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from codescaler.errors import InputError
from codescaler.model import RewardModel, regroup

from .data import field, provenance, read_records

if TYPE_CHECKING:
    from rich.table import Table

DOMAINS = ("chat", "math", "code", "safety")  # the model card's column order
DOMAIN_OF = {"chat": "chat", "math": "math", "code": "code", "safety": "safety",
             "safety-refuse": "safety", "safety-response": "safety"}
STYLES = 3


@dataclass(frozen=True)
class Prompt:
    where: str  # "line N" or "item N" in the data file
    prompt: str
    chosen: list[str]
    rejected: list[str]
    domain: str  # one of DOMAINS


def load(path: str | os.PathLike, *, domains: tuple[str, ...] | None = None, limit: int | None = None) -> list[Prompt]:
    """The prompts of an RM-Bench file (JSON list or JSON Lines), in file order, checked field by field;
    only ``domains`` (names of :data:`DOMAINS`) when given, at most ``limit`` of them."""
    if domains is not None:
        unknown = [d for d in domains if d not in DOMAINS]
        if unknown:
            raise InputError(f"unknown domain {unknown[0]!r}; choose from {', '.join(DOMAINS)}")
    out = []
    for where, rec in read_records(path):
        prompt = field(path, where, rec, "prompt", str)
        chosen = field(path, where, rec, "chosen", list, count=STYLES)
        rejected = field(path, where, rec, "rejected", list, count=STYLES)
        raw_domain = field(path, where, rec, "domain", str)
        domain = DOMAIN_OF.get(raw_domain)
        if domain is None:
            raise InputError(f"{path}: {where}: unknown domain {raw_domain!r}; RM-Bench's are "
                             f"{', '.join(DOMAIN_OF)}")
        if domains is not None and domain not in domains:
            continue
        out.append(Prompt(where, prompt, chosen, rejected, domain))
        if limit is not None and len(out) >= limit:
            break
    if not out:
        which = f" in domain(s) {', '.join(domains)}" if domains else ""
        raise InputError(f"{path}: no prompts{which}")
    return out


def comparisons(chosen_scores: list[float], rejected_scores: list[float]) -> list[list[float]]:
    """The 3x3 matrix of one prompt: 1 where chosen[i] outscores rejected[j], 0.5 on a tie, else 0."""
    return [[1.0 if c > r else 0.5 if c == r else 0.0 for r in rejected_scores] for c in chosen_scores]


def summarize(matrices: list[list[list[float]]]) -> dict[str, float]:
    """easy / normal / hard / accuracy (fractions) and n for the matrices of one domain's prompts."""
    n = len(matrices)
    mean = [[sum(m[i][j] for m in matrices) / n for j in range(STYLES)] for i in range(STYLES)]
    cells = [(i, j) for i in range(STYLES) for j in range(STYLES)]
    return {
        "easy": sum(mean[i][j] for i, j in cells if i > j) / (STYLES * (STYLES - 1) / 2),
        "normal": sum(mean[i][i] for i in range(STYLES)) / STYLES,
        "hard": sum(mean[i][j] for i, j in cells if i < j) / (STYLES * (STYLES - 1) / 2),
        "accuracy": sum(mean[i][j] for i, j in cells) / len(cells),
        "n": n,
    }


def evaluate(model: RewardModel, prompts: list[Prompt], *, batch: int = 16,
             progress: bool | None = None) -> dict[str, Any]:
    """Score every response as a plain conversation (user: prompt, assistant: response; no extraction,
    ``model.score_code``) and return the per-domain and overall metrics (fractions)."""
    import sys

    from tqdm import tqdm

    per_domain: dict[str, list[list[list[float]]]] = {}
    with tqdm(total=len(prompts), unit="prompt", desc="rmbench", file=sys.stderr,
              disable=None if progress is None else not progress) as bar:
        for start in range(0, len(prompts), batch):
            chunk = prompts[start:start + batch]
            questions = [p.prompt for p in chunk for _ in range(2 * STYLES)]
            responses = [r for p in chunk for r in (*p.chosen, *p.rejected)]
            scores = model.score_code(questions, responses)
            for p, s in zip(chunk, regroup(scores, [2 * STYLES] * len(chunk))):
                per_domain.setdefault(p.domain, []).append(comparisons(s[:STYLES], s[STYLES:]))
            bar.update(len(chunk))
    domains = {d: summarize(per_domain[d]) for d in DOMAINS if d in per_domain}
    present = list(domains)
    result = {"domains": domains, "averaged_over": present}
    for key in ("easy", "normal", "hard"):
        result[key] = sum(domains[d][key] for d in present) / len(present)
    result["avg"] = sum(domains[d]["accuracy"] for d in present) / len(present)
    return result


def run(model: RewardModel, path: str | os.PathLike, *, domains: tuple[str, ...] | None = None,
        limit: int | None = None, batch: int = 16, progress: bool | None = None) -> dict[str, Any]:
    """The full RM-Bench report for ``model`` on ``path``: metrics, provenance and timings."""
    started = time.perf_counter()
    prompts = load(path, domains=domains, limit=limit)
    loaded = time.perf_counter()
    result = evaluate(model, prompts, batch=batch, progress=progress)
    scored = time.perf_counter()
    result.update(provenance(model, path, str(path)))
    result["timings"] = {"read_s": loaded - started, "score_s": scored - loaded,
                         "responses": len(prompts) * 2 * STYLES,
                         "responses_per_s": len(prompts) * 2 * STYLES / max(scored - loaded, 1e-9)}
    return result


def notes(result: dict[str, Any]) -> list[str]:
    """The lines printed under the table: what the averages cover, prompts per domain, the model."""
    counts = ", ".join(f"{d} {v['n']}" for d, v in result["domains"].items())
    return [f"averages over {', '.join(result['averaged_over'])} (prompts: {counts})",
            f"model {result['model']['path']} ({result['model']['backend']}, {result['model']['dtype']}); "
            f"{result['timings']['responses']} responses in {result['timings']['score_s']:.1f} s"]


def table(result: dict[str, Any], title: str = "RM-Bench") -> Table:
    """A rich table shaped like the model card's: Chat/Math/Code/Safety/Easy/Normal/Hard/Avg (percent);
    a domain absent from the data shows '-'."""
    from rich.table import Table

    t = Table(title=title)
    cols = [d.capitalize() for d in DOMAINS] + ["Easy", "Normal", "Hard", "Avg"]
    for c in cols:
        t.add_column(c, justify="right")
    cells = [f"{100 * result['domains'][d]['accuracy']:.1f}%" if d in result["domains"] else "-" for d in DOMAINS]
    cells += [f"{100 * result[k]:.1f}%" for k in ("easy", "normal", "hard", "avg")]
    t.add_row(*cells)
    return t
