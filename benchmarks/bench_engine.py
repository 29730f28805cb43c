"""Engines on the GRPO-step workload: ONNX Runtime (float32, int8) against torch (float32, bfloat16).

Prints export time and engine size, wall time per backend, and the int8 engine's pairwise ranking
agreement with the float32 engine within each GRPO group.

    python -m codescaler.benchmarks.bench_engine [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path


def ranking_agreement(a: list[float], b: list[float], group: int) -> float:
    """Fraction of within-group pairs (of distinct scores under ``a``) that ``b`` orders the same way."""
    same = total = 0
    for start in range(0, len(a), group):
        for i, j in itertools.combinations(range(start, min(start + group, len(a))), 2):
            if a[i] == a[j]:
                continue
            total += 1
            same += (a[i] > a[j]) == (b[i] > b[j])
    return same / total if total else 1.0


def main(argv: list[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table
    from tokenizers import Tokenizer

    from codescaler import RewardModel, tiny
    from codescaler.engine.export import export_onnx

    from .bench_score import bench_model_dir
    from .workloads import grpo_step

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None, help="where to write the engines (default: a temp dir)")
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="codescaler-engines."))
    console = Console()
    model = bench_model_dir()
    w = grpo_step(Tokenizer.from_file(str(tiny.qwen_tokenizer_json())))
    exports = {}
    for name, kw in (("onnx float32", {}), ("onnx int8", {"quantize": "int8"})):
        t = time.perf_counter()
        engine = export_onnx(model, out / name.replace(" ", "-"), log=lambda *_: None, **kw)
        size = sum(f["size"] for n, f in engine.manifest["files"].items() if n.startswith("model.onnx"))
        exports[name] = (engine.path, time.perf_counter() - t, size)
    systems = [("torch float32", model, {"dtype": "float32"}), ("torch bfloat16", model, {"dtype": "bfloat16"}),
               ("torch bfloat16, eager", model, {"dtype": "bfloat16", "compile": "off"})]
    systems += [(name, path, {}) for name, (path, _, _) in exports.items()]
    table = Table(title=f"{w.name}: {len(w.responses)} responses, backends")
    for col in ("system", "export s", "graph MB", "wall s", "max |Δraw| vs torch fp32", "int8 rank agreement"):
        table.add_column(col, justify="right")
    raws = {}
    for name, path, kw in systems:
        m = RewardModel.from_pretrained(path, **kw)
        m.score(w.questions[:16], w.responses[:16])
        if m.prefix_cache is not None:  # the warm-up's questions would be cached: every backend starts cold
            m.prefix_cache.clear()
        if m.reward_cache is not None:  # and its answers' scores
            m.reward_cache.clear()
        t = time.perf_counter()
        out_rewards = m.score(w.questions, w.responses)
        seconds = time.perf_counter() - t
        raws[name] = [r.raw_score if r.raw_score is not None else 0.0 for r in out_rewards]
        ref = raws["torch float32"]
        diff = max(abs(a - b) for a, b in zip(raws[name], ref))
        agree = ranking_agreement(raws["onnx float32"], raws[name], w.group_size) if name == "onnx int8" else None
        exp = exports.get(name)
        table.add_row(name, f"{exp[1]:.1f}" if exp else "", f"{exp[2] / 1e6:.0f}" if exp else "", f"{seconds:.2f}",
                      f"{diff:.4f}", f"{100 * agree:.1f}%" if agree is not None else "")
    console.print(table)


if __name__ == "__main__":
    main()
