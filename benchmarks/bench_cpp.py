"""Python vs the C++ scorer on one aoti engine: Best-of-16 latency (p50/p99) and GRPO-step throughput.

    python -m benchmarks.bench_cpp [--shape tiny|bench|1.7b] [--layers N] [--dtype bfloat16] [--repeats R]

Exports the model (the embedded tiny one, or the random Qwen3 of ``codescaler bench --shape``) as an aoti
engine into the cache, writes the workloads of ``benchmarks.workloads`` as JSON Lines, times
``RewardModel.best_of_n`` / ``score`` in this process and ``codescaler_score_bench`` (csrc/examples) as a
subprocess on the same files, and checks both give the same rewards (``codescaler_score_example``).
Both sides use every core the process may use. Run it on a quiet machine: it prints ratios measured in
one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "ctest"
BUILD_COMMAND = "cmake -S . -B build/ctest -DCODESCALER_BUILD_TESTS=ON && cmake --build build/ctest -j2"


def _binaries() -> tuple[Path, Path]:
    bench, example = BUILD / "codescaler_score_bench", BUILD / "codescaler_score_example"
    if not (bench.exists() and example.exists()):
        print(f"building the C++ scorer: {BUILD_COMMAND}", file=sys.stderr)
        subprocess.run(BUILD_COMMAND, shell=True, cwd=ROOT, check=True)
    return bench, example


def _engine(shape: str, layers: int | None, dtype: str) -> Path:
    from codescaler.engine.export import export_aoti
    from codescaler.engine.format import EngineDir
    from codescaler.tiny import _cache_dir, resolve_model

    from .bench_score import bench_model_dir

    model = resolve_model("tiny") if shape == "tiny" else bench_model_dir(shape, layers or (4 if shape == "1.7b" else None))
    out = _cache_dir() / "cpp-bench" / f"{model.name}-{dtype}"
    if EngineDir.is_engine(out):
        try:
            EngineDir.open(out).check_machine()
            return out
        except Exception:
            pass
    export_aoti(model, out, dtype=dtype, log=lambda *_: None)
    return out


def _same_verdicts(questions, responses):
    """The pairs whose code CPython (Python) and tree-sitter (C++) judge alike, so both scorers run the
    same forward passes; and how many were dropped."""
    from codescaler import _native
    from codescaler.extract import extract_batch

    cpython = [e.status == "ok" for e in extract_batch(responses)]
    ts = [row[0] == "ok" for row in _native.extract_batch(list(responses), "codescaler", "python", 0, True, 1_000_000)]
    keep = [i for i in range(len(responses)) if cpython[i] == ts[i]]
    return [questions[i] for i in keep], [responses[i] for i in keep], len(responses) - len(keep)


def _write(path: Path, questions, responses) -> Path:
    path.write_text("".join(json.dumps({"question": q, "response": r}, ensure_ascii=False) + "\n"
                            for q, r in zip(questions, responses)))
    return path


def _percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    at = q * (len(v) - 1)
    lo = int(at)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (at - lo)


def _python(engine: Path, bon, grpo, repeats: int) -> dict:
    from codescaler import RewardModel

    t0 = time.perf_counter()
    model = RewardModel.from_pretrained(engine)
    open_s = time.perf_counter() - t0
    lat = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        best = model.best_of_n(bon.questions[0], bon.responses)
        lat.append(time.perf_counter() - t0)
    grpo_s = []
    for _ in range(max(1, repeats // 5)):
        t0 = time.perf_counter()
        rewards = model.score(grpo.questions, grpo.responses)
        grpo_s.append(time.perf_counter() - t0)
    return {"open_s": open_s, "bon_p50_s": _percentile(lat, 0.5), "bon_p99_s": _percentile(lat, 0.99),
            "bon_best": best.index, "grpo_s": min(grpo_s), "rewards": rewards, "describe": model.describe()}


def _cpp(binary: Path, engine: Path, bon_file: Path, grpo_file: Path, repeats: int) -> dict:
    def run(path: Path, n: int) -> dict:
        proc = subprocess.run([str(binary), str(engine), str(path), "--bon", str(n), "--repeats", str(repeats)],
                              capture_output=True, text=True, check=True)
        return json.loads(proc.stdout)

    bon, grpo = run(bon_file, 16), run(grpo_file, 1)
    return {"open_s": bon["open_s"], "bon_p50_s": bon["bon_p50_s"], "bon_p99_s": bon["bon_p99_s"],
            "bon_best": bon["bon_best"], "grpo_s": grpo["grpo_s"], "describe": bon["engine"]}


def _parity(example: Path, engine: Path, grpo_file: Path, python_rewards) -> tuple[float, int, int]:
    """Max |reward difference| over items both score with the same verdict; verdict differences; refusals."""
    proc = subprocess.run([str(example), str(engine), str(grpo_file)], capture_output=True, text=True, check=True)
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    worst, differ, refused = 0.0, 0, 0
    for g, w in zip(got, python_rewards):
        if g["status"] == "unsupported":
            refused += 1
        elif g["status"] != w.status:
            differ += 1
        else:
            worst = max(worst, abs(g["reward"] - w.reward))
    return worst, differ, refused


def main(shape: str = "tiny", layers: int | None = None, dtype: str | None = None, repeats: int = 20) -> dict:
    import tempfile

    import torch
    from rich.console import Console
    from rich.table import Table
    from tokenizers import Tokenizer

    from codescaler.backends.torch_backend import default_dtype

    from .workloads import Workload, best_of_n, grpo_step

    dtype = dtype or default_dtype("cpu")[0]
    bench_bin, example = _binaries()
    engine = _engine(shape, layers, dtype)
    tok = Tokenizer.from_file(str(engine / "tokenizer.json"))
    # Both sides run the same pairs: responses whose verdicts differ (tree-sitter accepts some code CPython
    # rejects, e.g. Python 2 print) would run in C++ only and time more work there.
    bon_all, grpo_all = best_of_n(tok, n=24), grpo_step(tok)
    bq, br, _ = _same_verdicts(bon_all.questions, bon_all.responses)
    bon = Workload("best-of-16", bq[:16], br[:16], 16)
    gq, gr, dropped = _same_verdicts(grpo_all.questions, grpo_all.responses)
    grpo = Workload("grpo", gq, gr, grpo_all.group_size)
    with tempfile.TemporaryDirectory() as tmp:
        bon_file = _write(Path(tmp) / "bon.jsonl", bon.questions, bon.responses)
        grpo_file = _write(Path(tmp) / "grpo.jsonl", grpo.questions, grpo.responses)
        py = _python(engine, bon, grpo, repeats)
        cpp = _cpp(bench_bin, engine, bon_file, grpo_file, repeats)
        worst, differ, refused = _parity(example, engine, grpo_file, py["rewards"])

    console = Console(width=None if sys.stdout.isatty() else 160)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    console.print(f"{cpu} | torch {torch.__version__}, {torch.get_num_threads()} threads | engine {engine} ({dtype})")
    console.print(f"python: {py['describe']}\nc++:    {cpp['describe']}")
    table = Table(title=f"Python vs C++ scorer, {shape} shape, repeats {repeats}")
    for col in ("scorer", "load s", "BoN-16 p50 ms", "BoN-16 p99 ms", f"GRPO {len(grpo.responses)} s", "responses/s"):
        table.add_column(col, justify="right")
    for name, r in (("Python", py), ("C++", cpp)):
        table.add_row(name, f"{r['open_s']:.2f}", f"{r['bon_p50_s'] * 1e3:.1f}", f"{r['bon_p99_s'] * 1e3:.1f}",
                      f"{r['grpo_s']:.2f}", f"{len(grpo.responses) / r['grpo_s']:.1f}")
    table.add_row("C++ / Python", f"{cpp['open_s'] / py['open_s']:.2f}x", f"{cpp['bon_p50_s'] / py['bon_p50_s']:.2f}x",
                  f"{cpp['bon_p99_s'] / py['bon_p99_s']:.2f}x", f"{cpp['grpo_s'] / py['grpo_s']:.2f}x",
                  f"{py['grpo_s'] / cpp['grpo_s']:.2f}x")
    console.print(table)
    console.print(f"same work: {dropped} of {len(grpo_all.responses)} GRPO responses whose verdicts differ "
                  f"(tree-sitter vs CPython) left out of both; same rewards: max |delta| {worst:.3g} "
                  f"({differ} verdicts differ, {refused} pairs refused by the splice); "
                  f"Best-of-16 pick: Python {py['bon_best']}, C++ {cpp['bon_best']}")
    return {"python": {k: v for k, v in py.items() if k != "rewards"}, "cpp": cpp, "max_delta": worst}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="tiny", choices=("tiny", "bench", "1.7b"))
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16"))
    p.add_argument("--repeats", type=int, default=20)
    a = p.parse_args()
    main(a.shape, a.layers, a.dtype, a.repeats)
