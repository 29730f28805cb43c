"""Python vs the C++ scorer on one aoti engine: Best-of-16 latency (p50/p99) and GRPO-step throughput.

    python -m benchmarks.bench_cpp [--shape tiny|bench|1.7b] [--layers N] [--dtype float32|bfloat16]
                                   [--repeats R] [--threads T]

Exports the model (the embedded tiny one, or the random Qwen3 of ``codescaler bench --shape``; ``1.7b``
defaults to 4 of its 28 layers) as an aoti engine into ``<cache>/cpp-bench/<model>-<dtype>`` (reused
while its source model, config, dtype and machine key still match), writes the workloads of
``benchmarks.workloads`` as two JSON Lines files and times both scorers on them:

* Python, in this process: ``RewardModel.from_pretrained`` (load), ``best_of_n`` on the Best-of-16
  request R times (p50/p99), ``score`` on the GRPO step max(1, R/5) times (best of).
* C++, ``codescaler_score_bench`` (csrc/examples) as a subprocess, run twice: on the 16-line Best-of-16
  file with ``--bon 16`` (its load time and latencies are taken) and on the GRPO file with ``--bon 1``
  (its score_batch time is taken). Same repeats, same percentile rule.

Both sides warm up while loading (one tiny pass), so "load" is open + warm-up, and the first timed call
is not a cold one. Both use the same thread count (``--threads``, default torch's). Responses whose
verdicts differ between CPython (Python) and tree-sitter (C++) are left out of both workloads, so both
run the same forward passes. Parity: ``codescaler_score_example`` scores the GRPO file and its rewards
are compared with Python's, and the Best-of-16 picks are compared; at float32 the run fails (exit 1)
unless max |delta reward| < 1e-4, no verdict differs and the picks agree. Timings are from one run:
run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from codescaler import Reward

    from .workloads import Workload

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "cpp"
TARGETS = ("codescaler_score_bench", "codescaler_score_example")
BUILD_COMMAND = ("cmake -S . -B build/cpp -DCODESCALER_BUILD_TESTS=ON && "
                 f"cmake --build build/cpp -j2 --target {' '.join(TARGETS)}")


def _binaries() -> tuple[Path, Path]:
    """The two C++ programs, built first (in build/cpp) when either is missing."""
    bench, example = (BUILD / t for t in TARGETS)
    if not (bench.exists() and example.exists()):
        print(f"C++ scorer binaries missing; building them (from {ROOT}): {BUILD_COMMAND}", file=sys.stderr)
        if subprocess.run(BUILD_COMMAND, shell=True, cwd=ROOT).returncode or not (bench.exists() and example.exists()):
            sys.exit(f"bench_cpp: could not build {bench} and {example}; build them by hand from {ROOT}:\n"
                     f"  {BUILD_COMMAND}")
    return bench, example


def _reusable(out: Path, model: Path, dtype: str) -> str | None:
    """Why the cached engine ``out`` cannot serve ``model`` at ``dtype``, or None when it can."""
    from codescaler.backends.engine_dir import MANIFEST, EngineDir, config_hash

    try:
        engine = EngineDir.open(out)
        engine.check_machine()  # torch build, CPU flags, blocks code version
    except Exception as exc:
        return str(exc)
    m = engine.manifest
    if engine.kind != "aoti" or m.get("dtype") != dtype:
        return f"{engine.kind} engine at {m.get('dtype')}, want aoti at {dtype}"
    if Path(m.get("source_model", "")).resolve() != model.resolve():
        return f"exported from {m.get('source_model')}"
    if m.get("config_sha256") != config_hash(model):
        return f"{model / 'config.json'} changed since export"
    built = (out / MANIFEST).stat().st_mtime
    if any(f.stat().st_mtime > built for f in model.iterdir() if f.suffix in (".safetensors", ".bin")):
        return f"{model}'s weights are newer than the engine"
    return None


def _engine(shape: str, layers: int | None, dtype: str) -> Path:
    import shutil

    from codescaler.engine.export import export_aoti
    from codescaler.tiny import cache_dir, resolve_model

    from .bench_score import bench_model_dir

    model = resolve_model("tiny") if shape == "tiny" else bench_model_dir(shape, layers or (4 if shape == "1.7b" else None))
    out = cache_dir() / "cpp-bench" / f"{model.name}-{dtype}"
    if out.exists():
        why = _reusable(out, model, dtype)
        if why is None:
            return out
        print(f"re-exporting {out}: {why}", file=sys.stderr)
        shutil.rmtree(out)
    else:
        print(f"exporting {model} -> {out} (aoti, {dtype})", file=sys.stderr)
    t0 = time.perf_counter()
    export_aoti(model, out, dtype=dtype, log=lambda *_: None)
    print(f"exported in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return out


def _same_verdicts(questions: list[str], responses: list[str]) -> tuple[list[str], list[str], int]:
    """The pairs whose code CPython (Python) and tree-sitter (C++) judge alike, so both scorers run the
    same forward passes; and how many were dropped."""
    from codescaler import _native
    from codescaler.extract import extract_batch

    cpython = [e.status == "ok" for e in extract_batch(responses)]
    ts = [row[0] == "ok" for row in _native.extract_batch(list(responses), "codescaler", "python", 0, True, 1_000_000)]
    keep = [i for i in range(len(responses)) if cpython[i] == ts[i]]
    return [questions[i] for i in keep], [responses[i] for i in keep], len(responses) - len(keep)


def _write(path: Path, questions: list[str], responses: list[str]) -> Path:
    path.write_text("".join(json.dumps({"question": q, "response": r}, ensure_ascii=False) + "\n"
                            for q, r in zip(questions, responses)))
    return path


def _percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    at = q * (len(v) - 1)
    lo = int(at)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (at - lo)


def _python(engine: Path, bon: Workload, grpo: Workload, repeats: int) -> dict[str, Any]:
    from codescaler import RewardModel

    t0 = time.perf_counter()
    # The C++ scorer has no question or reward cache, and the repeats score the same pairs.
    model = RewardModel.from_pretrained(engine, prefix_cache_mb=0, reward_cache="off")
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


def _cpp(binary: Path, engine: Path, bon_file: Path, grpo_file: Path, repeats: int, threads: int) -> dict:
    def run(path: Path, n: int) -> dict:
        cmd = [str(binary), str(engine), str(path), "--bon", str(n), "--repeats", str(repeats), "--threads", str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"bench_cpp: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
        return json.loads(proc.stdout)

    bon, grpo = run(bon_file, 16), run(grpo_file, 1)
    return {"open_s": bon["open_s"], "bon_p50_s": bon["bon_p50_s"], "bon_p99_s": bon["bon_p99_s"],
            "bon_best": bon["bon_best"], "grpo_s": grpo["grpo_s"], "describe": bon["engine"]}


def _parity(example: Path, engine: Path, grpo_file: Path, python_rewards: list[Reward], threads: int) -> tuple[float, int, int]:
    """Max |reward difference| over items both score with the same verdict; verdict differences; refusals."""
    cmd = [str(example), str(engine), str(grpo_file), "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"bench_cpp: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    if len(got) != len(python_rewards):
        sys.exit(f"bench_cpp: codescaler_score_example gave {len(got)} lines for {len(python_rewards)} pairs")
    worst, differ, refused = 0.0, 0, 0
    for g, w in zip(got, python_rewards):
        if g["status"] == "unsupported":
            refused += 1
        elif g["status"] != w.status:
            differ += 1
        else:
            worst = max(worst, abs(g["reward"] - w.reward))
    return worst, differ, refused


FLOAT32_TOLERANCE = 1e-4


def main(shape: str = "tiny", layers: int | None = None, dtype: str | None = None, repeats: int = 20,
         threads: int | None = None) -> dict:
    import os
    import tempfile

    import torch
    from rich.console import Console
    from rich.table import Table
    from tokenizers import Tokenizer

    from codescaler.backends.torch_backend import default_dtype

    from .workloads import Workload, best_of_n, grpo_step

    started, load_before = time.perf_counter(), os.getloadavg()[0]
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
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
        cpp = _cpp(bench_bin, engine, bon_file, grpo_file, repeats, threads)
        worst, differ, refused = _parity(example, engine, grpo_file, py["rewards"], threads)

    console = Console(width=None if sys.stdout.isatty() else 160)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    console.print(f"{cpu}, {os.cpu_count()} CPUs | {threads} threads (both scorers) | torch {torch.__version__} | "
                  f"{dtype} | load average {load_before:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    console.print(f"engine {engine}\npython: {py['describe']}\nc++:    {cpp['describe']}")
    table = Table(title=f"Python vs C++ scorer, {shape} shape, {dtype}, repeats {repeats} "
                        f"(GRPO: best of {max(1, repeats // 5)})")
    for col in ("scorer", "load s (open+warm-up)", "BoN-16 p50 ms", "BoN-16 p99 ms",
                f"GRPO step ({len(grpo.responses)}) s", "responses/s"):
        table.add_column(col, justify="right")
    for name, r in (("Python", py), ("C++", cpp)):
        table.add_row(name, f"{r['open_s']:.2f}", f"{r['bon_p50_s'] * 1e3:.1f}", f"{r['bon_p99_s'] * 1e3:.1f}",
                      f"{r['grpo_s']:.2f}", f"{len(grpo.responses) / r['grpo_s']:.1f}")
    table.add_row("C++ / Python", f"{cpp['open_s'] / py['open_s']:.2f}x", f"{cpp['bon_p50_s'] / py['bon_p50_s']:.2f}x",
                  f"{cpp['bon_p99_s'] / py['bon_p99_s']:.2f}x", f"{cpp['grpo_s'] / py['grpo_s']:.2f}x",
                  f"{py['grpo_s'] / cpp['grpo_s']:.2f}x")
    console.print(table)
    same_pick = py["bon_best"] == cpp["bon_best"]
    console.print(f"same work: {dropped} of {len(grpo_all.responses)} GRPO responses whose verdicts differ "
                  f"(tree-sitter vs CPython) left out of both; same rewards (GRPO file): max |delta| {worst:.3g} "
                  f"({differ} verdicts differ, {refused} pairs refused by the splice); "
                  f"Best-of-16 pick: Python {py['bon_best']}, C++ {cpp['bon_best']}")
    ok = True
    if dtype == "float32":
        ok = worst < FLOAT32_TOLERANCE and differ == 0 and same_pick
        console.print(f"float32 parity (max |delta| < {FLOAT32_TOLERANCE:g}, same verdicts, same pick): "
                      + ("PASS" if ok else "FAIL"))
    console.print(f"total {time.perf_counter() - started:.0f} s")
    return {"python": {k: v for k, v in py.items() if k != "rewards"}, "cpp": cpp, "max_delta": worst,
            "verdicts_differ": differ, "refused": refused, "same_pick": same_pick, "parity_ok": ok}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="tiny", choices=("tiny", "bench", "1.7b"))
    p.add_argument("--layers", type=int, default=None, help="decoder layers of the bench/1.7b shape (1.7b: 4)")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16"), help="default: this CPU's")
    p.add_argument("--repeats", type=int, default=20, help="Best-of-16 repeats; the GRPO step runs max(1, R/5)")
    p.add_argument("--threads", type=int, default=None, help="threads for both scorers (default: torch's)")
    a = p.parse_args()
    sys.exit(0 if main(a.shape, a.layers, a.dtype, a.repeats, a.threads)["parity_ok"] else 1)
