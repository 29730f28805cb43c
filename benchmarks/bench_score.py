"""``codescaler bench``: this engine against the model-card and TRL-style baselines on realistic workloads.

Everything runs in one process on one model, built once into the cache with random weights and Qwen's
real 151k vocabulary: ``--shape bench`` (hidden 512, 8 layers: compute-bound, quick) or ``--shape 1.7b``
(CodeScaler-1.7B's layer dimensions, ``--layers`` of its 28 layers: where the linear layers are >90% of
the FLOPs).

What it claims, it measures in the same run: the header names the CPU and the features that decide its
kernels (AVX-512 BF16, AMX); the GEMM peak is taken on one decoder layer's own GEMM shapes (q, k, v, o,
gate, up, down) before and after the runs, and each row says what share of it the useful work reached;
every system (this engine with and without batch invariance and compiled blocks, the model card at each
batch size, TRL's one padded batch) is timed ``repeats`` times round-robin, so a burst of load falls on
all of them alike, and the table shows the best and the median of each.
"""

from __future__ import annotations

import gc
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

if TYPE_CHECKING:
    import torch

    from codescaler import RewardModel
    from codescaler.plan import Plan

    from .workloads import Workload

T = TypeVar("T")

SHAPES = {
    "bench": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
                  head_dim=64, intermediate_size=1536),
    # CodeScaler-1.7B (Qwen3-1.7B) layer dimensions; it has 28 such layers.
    "1.7b": dict(hidden_size=2048, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                 head_dim=128, intermediate_size=6144),
}


def bench_model_dir(shape: str = "bench", layers: int | None = None) -> Path:
    from codescaler import tiny

    dims = dict(SHAPES[shape])
    if layers:
        dims["num_hidden_layers"] = layers
    name = {"bench": "bench-qwen3-512"}.get(shape) if not layers else None
    out = tiny.cache_dir() / (name or f"bench-qwen3-{shape}-{dims['num_hidden_layers']}l")
    if not (out / "config.json").exists():
        tiny.save_random_reward_model(out, seed=0, **dims)
    return out


def layer_gemms(config: dict) -> list[tuple[str, int, int]]:
    """(name, K, N) of the linear layers of one decoder layer, as ``F.linear`` runs them: x (M, K) @ W^T (K, N)."""
    h, inter = config["hidden_size"], config["intermediate_size"]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    hd = config.get("head_dim") or h // heads
    return [("q", h, heads * hd), ("k", h, kv * hd), ("v", h, kv * hd), ("o", heads * hd, h),
            ("gate", h, inter), ("up", h, inter), ("down", inter, h)]


def gemm_peak(config: dict, dtype: torch.dtype, rows: Sequence[int] = (256, 1024, 4096), reps: int = 5) -> dict[int, float]:
    """GFLOP/s of one decoder layer's own GEMMs (``layer_gemms``) run back to back at ``dtype`` with
    ``rows`` tokens, best of ``reps``, for each row count: the peak the useful work is compared with.
    256 rows is the compiled blocks' default tile (``ROW_TILE``); the larger counts show what the kernels reach
    when the tile does not limit them."""
    import torch
    import torch.nn.functional as F

    gemms = layer_gemms(config)
    weights = [torch.randn(n, k).to(dtype) for _, k, n in gemms]
    out = {}
    with torch.inference_mode():
        for m in rows:
            xs = [torch.randn(m, k).to(dtype) for _, k, _ in gemms]
            flops = sum(2 * m * k * n for _, k, n in gemms)
            for x, w in zip(xs, weights):
                F.linear(x, w)
            best = float("inf")
            for _ in range(reps):
                t = time.perf_counter()
                for x, w in zip(xs, weights):
                    F.linear(x, w)
                best = min(best, time.perf_counter() - t)
            out[m] = flops / best / 1e9
    return out


def cpu_header() -> str:
    """The CPU's model name, the matrix/vector features that decide its kernels, and what torch runs on it."""
    import torch

    from codescaler.device import cpu_flags, cpu_model

    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
    flags = cpu_flags()
    have = [f for f in wanted if f in flags] or ["none of " + ", ".join(wanted)]
    isa = torch.backends.cpu.get_cpu_capability()
    return (f"CPU {cpu_model()} ({os.cpu_count()} logical CPUs) | features {' '.join(have)} | torch {torch.__version__}, "
            f"ATen CPU capability {isa}, {torch.get_num_threads()} threads")


class PeakRSS:
    """Peak resident memory of this process during a ``with`` block, sampled every 5 ms (the
    process-wide ru_maxrss cannot be reset between runs)."""

    def __enter__(self) -> PeakRSS:
        import threading

        self.peak = self._now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._now())

    @staticmethod
    def _now() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._now())


def _timed(fn: Callable[[], T], repeats: int) -> tuple[list[float], T, float]:
    """The wall times of ``repeats`` calls, the last call's result, and the peak RSS over all of them."""
    times = []
    with PeakRSS() as rss:
        for _ in range(repeats):
            gc.collect()
            t = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t)
    return times, result, rss.peak


def median(times: list[float]) -> float:
    s = sorted(times)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


@dataclass
class Run:
    system: str
    times: list[float]  # wall seconds of each timed repeat
    computed_tokens: int
    rewards: list[float]
    rss_mb: float

    @property
    def seconds(self) -> float:
        """The median of the repeats: what the tables compare."""
        return median(self.times)

    @property
    def best(self) -> float:
        """The fastest repeat: the least disturbed by whatever else ran on the machine."""
        return min(self.times)

    @property
    def spread(self) -> str:
        """min-max of the repeats, or '-' for a single one."""
        return f"{min(self.times):.2f}-{max(self.times):.2f}" if len(self.times) > 1 else "-"


def useful_work(plan: Plan, config: dict) -> tuple[int, float]:
    """(tokens, FLOPs) of the work that determines the rewards: each shared prefix once, each unique
    sequence's own tokens once; linear layers plus attention over each token's visible context."""
    h = config["hidden_size"]
    heads = config["num_attention_heads"]
    hd = config.get("head_dim") or h // heads
    kv = config["num_key_value_heads"]
    inter = config["intermediate_size"]
    linear_params = config["num_hidden_layers"] * (h * heads * hd + 2 * h * kv * hd + heads * hd * h + 3 * h * inter)
    attn_per_ctx = config["num_hidden_layers"] * 4 * heads * hd  # QK^T and PV per (query, key) pair
    tokens, pairs = 0, 0
    for pack in plan.packs:
        for u in pack:
            p = u.prefix
            tokens += p
            pairs += p * (p + 1) // 2
            for k in u.members:
                a = len(plan.seqs[k]) - p
                tokens += a
                pairs += a * p + a * (a + 1) // 2
    for batch in plan.batches:
        for k in batch:
            n = len(plan.seqs[k])
            tokens += n
            pairs += n * (n + 1) // 2
    return tokens, 2.0 * linear_params * tokens + attn_per_ctx * pairs


@dataclass
class Startup:
    load_s: float
    first_s: float
    warm_s: float


def _fresh(model: RewardModel) -> RewardModel:
    """``model`` with its question and reward caches emptied: every timed call sees its questions and
    answers for the first time (a repeated workload would otherwise find them cached)."""
    if model.prefix_cache is not None:
        model.prefix_cache.clear()
    if model.reward_cache is not None:
        model.reward_cache.clear()
    return model


def load_engine(path: Path, workload: Workload, dtype: str, **kw: Any) -> tuple[RewardModel, Startup]:
    """A ``RewardModel`` as a user loads it, with its load time and its first call against a warm one
    (the first Best-of-N-sized request after load)."""
    from codescaler import RewardModel

    t = time.perf_counter()
    m = RewardModel.from_pretrained(path, dtype=dtype, **kw)
    load = time.perf_counter() - t
    n = workload.group_size
    first = median(_timed(lambda: _fresh(m).score(workload.questions[:n], workload.responses[:n]), 1)[0])
    warm = median(_timed(lambda: _fresh(m).score(workload.questions[:n], workload.responses[:n]), 3)[0])
    return m, Startup(load, first, warm)


@dataclass
class System:
    """One way of scoring a workload: ``call()`` scores it once and returns (rewards, tokens computed)."""

    label: str
    call: Callable[[], tuple[list[float], int]]


def engine_system(model: RewardModel, workload: Workload, label: str, invariant: bool | None = None) -> System:
    """The loaded engine on the whole workload, its caches emptied first; ``invariant`` (torch backend)
    sets its decoder's batch invariance for this call only."""

    def call() -> tuple[list[float], int]:
        decoder = model.backend.decoder if invariant is not None else None
        if decoder is not None:
            decoder.invariant = invariant
        try:
            out, stats = _fresh(model).score_with_stats(workload.questions, workload.responses)
        finally:
            if decoder is not None:
                decoder.invariant = True
        return [r.reward for r in out], stats.computed_tokens

    return System(label, call)


def hf_systems(path: Path, workload: Workload, dtype: str, batch_sizes: Sequence[int], trl: bool) -> list[System]:
    """The model card's usage at each batch size (and TRL's one padded batch): extract, render, pad a
    batch in input order, run every response (empty answers included, as upstream does), shape. One
    Hugging Face model serves them all."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from codescaler import extract_batch, shape

    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "right"
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
    found = extract_batch(workload.responses)
    texts = [tok.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": e.code}],
                                     tokenize=False) for q, e in zip(workload.questions, found)]

    def go(lo: int, hi: int) -> tuple[list[float], int]:
        enc = tok(texts[lo:hi], return_tensors="pt", padding=True, truncation=True, max_length=4096)
        with torch.inference_mode():
            return model(**enc).logits[:, 0].float().tolist(), enc["input_ids"].numel()

    go(0, min(2, len(found)))  # warm-up

    def batched(size: int) -> Callable[[], tuple[list[float], int]]:
        def call() -> tuple[list[float], int]:
            raws, computed = [], 0
            for lo in range(0, len(found), size):
                r, n = go(lo, lo + size)
                raws += r
                computed += n
            return [shape(r, e.valid) for r, e in zip(raws, found)], computed

        return call

    systems = [System(f"model card, batch {bs}", batched(bs)) for bs in batch_sizes]
    if trl:
        systems.append(System("TRL-style, one padded batch", batched(len(found))))
    return systems


def interleaved(systems: list[System], repeats: int, progress: Callable[[str], None] = lambda _: None) -> list[Run]:
    """Each system timed ``repeats`` times, round-robin (one call of each, then again), so a change in
    what else runs on the machine falls on every system alike rather than on whichever ran then;
    ``progress`` hears of each call as it ends (a run at the real shape takes tens of minutes)."""
    times: dict[str, list[float]] = {s.label: [] for s in systems}
    last: dict[str, tuple[list[float], int]] = {}
    rss: dict[str, float] = {}
    for round_ in range(repeats):
        for s in systems:
            took, (rewards, computed), peak = _timed(s.call, 1)
            progress(f"  round {round_ + 1}/{repeats}: {s.label} {took[0]:.2f} s")
            times[s.label] += took
            last[s.label] = (rewards, computed)
            rss[s.label] = max(rss.get(s.label, 0.0), peak)
    return [Run(s.label, times[s.label], last[s.label][1], last[s.label][0], rss[s.label]) for s in systems]


def main(workloads: Sequence[str] = ("grpo", "bon"), dtype: str = "bfloat16", batch_sizes: Sequence[int] = (4, 8, 16), trl: bool = True,
         model: str | None = None, threads: int | None = None, shape: str = "bench",
         layers: int | None = None, repeats: int = 3) -> list[dict]:
    import json
    import sys

    import torch
    from rich.console import Console
    from rich.table import Table
    from tokenizers import Tokenizer

    from codescaler import tiny

    from .workloads import best_of_n, grpo_step

    if threads:
        torch.set_num_threads(threads)
    console = Console(width=None if sys.stdout.isatty() else 160)

    def note(text: str) -> None:  # a whole line: a pipe gets it unwrapped, a terminal wraps it itself
        console.print(text, soft_wrap=True)

    if model is None and shape == "1.7b" and layers is None:
        layers = 4
    path = Path(model) if model else bench_model_dir(shape, layers)
    config = json.loads((path / "config.json").read_text())
    gemm_dtype = getattr(torch, dtype)

    def peaks_line(when: str, peaks: dict[int, float]) -> str:
        return (f"{dtype} GEMM peak {when}, one layer's own GEMMs ("
                + ", ".join(f"{name} {k}x{n}" for name, k, n in layer_gemms(config)) + "): "
                + ", ".join(f"{m} rows {g:.0f}" for m, g in peaks.items()) + " GFLOP/s")

    note(cpu_header())
    note(f"model {path} (hidden {config['hidden_size']}, intermediate {config['intermediate_size']}, "
         f"{config['num_hidden_layers']} layers) | dtype {dtype} | {repeats} interleaved run(s) per system")
    before = gemm_peak(config, gemm_dtype)
    note(peaks_line("before the runs", before))
    tok = Tokenizer.from_file(str(tiny.qwen_tokenizer_json()))
    made = {"grpo": lambda: grpo_step(tok), "bon": lambda: best_of_n(tok)}
    rows, results = [], []
    for name in workloads:
        w = made[name]()
        engine, start = load_engine(path, w, dtype)
        eager, _ = load_engine(path, w, dtype, compile="off")
        kernels = getattr(engine.backend, "kernels", None)
        if kernels is not None:
            note(f"kernel choice recorded at the package's build: row tile {kernels.row_tile} (measured, one layer's "
                 "blocks: " + ", ".join(f"{t} rows {us:.1f} us/row" for t, us in kernels.us_per_row.items())
                 + f"; rule: {kernels.rule})")
        systems = [engine_system(engine, w, "codescaler (default)")]
        if engine.backend.name == "torch":
            systems.append(engine_system(engine, w, "codescaler (not batch-invariant)", invariant=False))
        systems.append(engine_system(eager, w, "codescaler (compile='off')"))
        systems += hf_systems(path, w, dtype, batch_sizes, trl)
        note(f"{w.name}: timing {len(systems)} systems, {repeats} round(s)")
        runs = interleaved(systems, repeats, note)
        tokens, flops = useful_work(engine.plan_for(w.questions, w.responses), config)
        reference = (hf_systems(path, w, "float32", (8,), False)[0].call()[0] if dtype != "float32"
                     else next(r.rewards for r in runs if r.system.startswith("model card")))
        results.append((w, runs, reference, tokens, flops, engine, start))
        del eager
    after = gemm_peak(config, gemm_dtype)
    note(peaks_line("after the runs", after))
    peak = max(max(before.values()), max(after.values()))
    note(f"peak used below: {peak:.0f} GFLOP/s (the best of both); the compiled blocks' 256-row tile reached "
         f"{max(before[256], after[256]):.0f}")
    for w, runs, reference, tokens, flops, engine, start in results:
        best_card = min(r.best for r in runs if r.system.startswith("model card"))
        table = Table(title=f"{w.name}: {len(w.responses)} responses, {dtype}; wall time of {repeats} interleaved "
                      f"run(s): best, median; speed-up and % of peak from the best")
        for col in ("system", "best s", "median s", "runs s", "speed-up vs best card", "tokens computed",
                    "useful tok/s", "% GEMM peak (useful)", "peak RSS MB", "max |Δreward| vs fp32 HF"):
            table.add_column(col, justify="right")
        for r in runs:
            diff = max(abs(a - b) for a, b in zip(r.rewards, reference))
            pct = 100 * flops / r.best / 1e9 / peak
            table.add_row(r.system, f"{r.best:.2f}", f"{r.seconds:.2f}", " ".join(f"{t:.2f}" for t in r.times),
                          f"{best_card / r.best:.2f}x", f"{r.computed_tokens:,}", f"{tokens / r.best:,.0f}",
                          f"{pct:.1f}%", f"{r.rss_mb:,.0f}", f"{diff:.4f}")
            rows.append({"workload": w.name, "system": r.system, "best": r.best, "seconds": r.seconds,
                         "times": r.times, "tokens": r.computed_tokens, "speedup": best_card / r.best,
                         "pct_peak": pct, "max_reward_diff": diff, "peak_gflops": peak})
        console.print(table)
        ours = runs[0]
        trl_s = [r.best for r in runs if r.system.startswith("TRL")]
        note(f"useful work: {tokens:,} tokens, {flops / 1e12:.2f} TFLOP; codescaler (default: "
             f"{engine.describe()}; blocks {engine.backend.compiled}) is "
             f"{best_card / ours.best:.2f}x the best model-card baseline"
             + (f" and {trl_s[0] / ours.best:.2f}x the TRL-style baseline" if trl_s else ""))
        variant = [r for r in runs if r.system == "codescaler (not batch-invariant)"]
        if variant:
            note(f"batch invariance (default) costs {100 * (ours.best / variant[0].best - 1):+.1f}% (best) "
                 f"{100 * (ours.seconds / variant[0].seconds - 1):+.1f}% (median) against the same engine "
                 f"without it, interleaved")
        note(f"load {start.load_s:.2f} s; first {w.group_size}-answer call after load {start.first_s:.3f} s, "
             f"warm {start.warm_s:.3f} s ({start.first_s / start.warm_s:.2f}x)")
    return rows


if __name__ == "__main__":
    main()
