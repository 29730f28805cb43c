"""``codescaler bench``: this engine against the model-card and TRL-style baselines on realistic workloads.

Everything runs in one process on one model, built once into the cache with random weights and Qwen's
real 151k vocabulary: ``--shape bench`` (hidden 512, 8 layers: compute-bound, quick) or ``--shape 1.7b``
(CodeScaler-1.7B's layer dimensions, ``--layers`` of its 28 layers: where the linear layers are >90% of
the FLOPs). The bf16 matmul peak is measured before and after the runs, and each row says what share of
it the useful work reached.
"""

from __future__ import annotations

import gc
import resource
import time
from dataclasses import dataclass
from pathlib import Path

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


def matmul_peak(dtype, n: int = 2048, reps: int = 5) -> float:
    """Best measured GFLOP/s of an n^3 matmul at ``dtype`` on this machine."""
    from codescaler.device import matmul_seconds

    return 2 * n**3 / matmul_seconds(dtype, n, reps) / 1e9


class PeakRSS:
    """Peak resident memory of this process during a ``with`` block, sampled every 5 ms (the
    process-wide ru_maxrss cannot be reset between runs)."""

    def __enter__(self):
        import threading

        self.peak = self._now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._now())

    @staticmethod
    def _now() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._now())


def _timed(fn, repeats: int):
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
    def spread(self) -> str:
        """min-max of the repeats, or '-' for a single one."""
        return f"{min(self.times):.2f}-{max(self.times):.2f}" if len(self.times) > 1 else "-"


def useful_work(plan, config: dict) -> tuple[int, float]:
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


def _fresh(model):
    """``model`` with its question and reward caches emptied: every timed call sees its questions and
    answers for the first time (a repeated workload would otherwise find them cached)."""
    if model.prefix_cache is not None:
        model.prefix_cache.clear()
    if model.reward_cache is not None:
        model.reward_cache.clear()
    return model


def run_engine(path, workload, dtype, label: str = "codescaler", repeats: int = 3, **kw) -> tuple[Run, object, Startup]:
    """The engine as a user runs it, timed ``repeats`` times; also its load time and its first call
    against a warm one (the first Best-of-N-sized request after load)."""
    from codescaler import RewardModel

    t = time.perf_counter()
    m = RewardModel.from_pretrained(path, dtype=dtype, **kw)
    load = time.perf_counter() - t
    n = workload.group_size
    first = median(_timed(lambda: _fresh(m).score(workload.questions[:n], workload.responses[:n]), 1)[0])
    warm = median(_timed(lambda: _fresh(m).score(workload.questions[:n], workload.responses[:n]), 3)[0])
    times, out, rss = _timed(lambda: _fresh(m).score(workload.questions, workload.responses), repeats)
    plan = m.last_plan
    return Run(label, times, plan.computed_tokens, [r.reward for r in out], rss), (m, plan), Startup(load, first, warm)


def run_invariance(engine, workload, rounds: int = 3) -> tuple[Run, Run]:
    """The loaded engine with its decoder's batch invariance on (the default) and off, interleaved on the
    same workload, ``rounds`` times each: what invariance costs, measured in one run."""
    decoder = engine.backend.decoder
    times: dict[bool, list[float]] = {True: [], False: []}
    last = {}
    try:
        for _ in range(rounds):
            for invariant in (False, True):
                decoder.invariant = invariant
                took, result, rss = _timed(lambda: _fresh(engine).score(workload.questions, workload.responses), 1)
                times[invariant] += took
                last[invariant] = (engine.last_plan.computed_tokens, [r.reward for r in result],
                                   max(rss, last.get(invariant, (0, 0, 0))[2]))
    finally:
        decoder.invariant = True
    label = {True: "codescaler (default)", False: "codescaler (not batch-invariant)"}
    run = {k: Run(label[k], times[k], *last[k]) for k in (True, False)}
    return run[True], run[False]


def run_hf(path, workload, dtype, batch_size: int, label: str, repeats: int = 3) -> Run:
    """The model card's usage: extract, render, pad a batch in input order, run every response (empty
    answers included, as upstream does), shape; timed ``repeats`` times."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from codescaler import extract_batch, shape

    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "right"
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
    found = extract_batch(workload.responses)

    def text(q, code):
        return tok.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": code}],
                                       tokenize=False)

    def go(lo, hi):
        enc = tok([text(q, e.code) for q, e in zip(workload.questions[lo:hi], found[lo:hi])], return_tensors="pt",
                  padding=True, truncation=True, max_length=4096)
        with torch.inference_mode():
            return model(**enc).logits[:, 0].float().tolist(), enc["input_ids"].numel()

    go(0, min(2, len(found)))  # warm-up

    def step():
        raws, computed = [], 0
        for lo in range(0, len(found), batch_size):
            r, n = go(lo, lo + batch_size)
            raws += r
            computed += n
        return raws, computed

    times, (raws, computed), rss = _timed(step, repeats)
    rewards = [shape(r, e.valid) for r, e in zip(raws, found)]
    return Run(label, times, computed, rewards, rss)


def main(workloads=("grpo", "bon"), dtype: str = "bfloat16", batch_sizes=(4, 8, 16), trl: bool = True,
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
    peaks = [matmul_peak(torch.bfloat16)]
    note(f"model {path} (hidden {config['hidden_size']}, {config['num_hidden_layers']} layers) | "
                  f"dtype {dtype} | torch threads {torch.get_num_threads()} | measured 2048^3 bf16 matmul: "
                  f"{peaks[0]:.0f} GFLOP/s")
    tok = Tokenizer.from_file(str(tiny.qwen_tokenizer_json()))
    made = {"grpo": lambda: grpo_step(tok), "bon": lambda: best_of_n(tok)}
    rows, results = [], []
    for name in workloads:
        w = made[name]()
        ours, (engine, plan), start = run_engine(path, w, dtype, "codescaler (default)", repeats)
        tokens, flops = useful_work(plan, config)
        runs = [ours]
        if hasattr(engine.backend, "decoder"):
            ours, variant = run_invariance(engine, w, repeats)
            runs = [ours, variant]
        eager, _, _ = run_engine(path, w, dtype, "codescaler (compile='off')", repeats, compile="off")
        runs.append(eager)
        for bs in batch_sizes:
            runs.append(run_hf(path, w, dtype, bs, f"model card, batch {bs}", repeats))
        if trl:
            runs.append(run_hf(path, w, dtype, len(w.responses), "TRL-style, one padded batch", repeats))
        reference = (run_hf(path, w, "float32", 8, "hf float32 reference", 1).rewards if dtype != "float32"
                     else next(r.rewards for r in runs if r.system.startswith("model card")))
        results.append((w, runs, reference, tokens, flops, ours, engine, start))
    peaks.append(matmul_peak(torch.bfloat16))
    peak = max(peaks)
    note(f"bf16 matmul peak, best of before/after the runs: {peak:.0f} GFLOP/s "
                  f"({', '.join(f'{p:.0f}' for p in peaks)})")
    for w, runs, reference, tokens, flops, ours, engine, start in results:
        best_card = min(r.seconds for r in runs if r.system.startswith("model card"))
        table = Table(title=f"{w.name}: {len(w.responses)} responses, {dtype}; wall time: median of {repeats} "
                      f"run(s), min-max beside it")
        for col in ("system", "wall s", "min-max s", "speed-up vs best card", "tokens computed", "useful tok/s",
                    "% bf16 peak (useful)", "peak RSS MB (run)", "max |Δreward| vs fp32 HF"):
            table.add_column(col, justify="right")
        for r in runs:
            diff = max(abs(a - b) for a, b in zip(r.rewards, reference))
            pct = 100 * flops / r.seconds / 1e9 / peak
            table.add_row(r.system, f"{r.seconds:.2f}", r.spread, f"{best_card / r.seconds:.2f}x", f"{r.computed_tokens:,}",
                          f"{tokens / r.seconds:,.0f}", f"{pct:.1f}", f"{r.rss_mb:,.0f}", f"{diff:.4f}")
            rows.append({"workload": w.name, "system": r.system, "seconds": r.seconds, "times": r.times,
                         "tokens": r.computed_tokens,
                         "speedup": best_card / r.seconds, "pct_peak": pct, "max_reward_diff": diff})
        console.print(table)
        trl_s = [r.seconds for r in runs if r.system.startswith("TRL")]
        note(f"useful work: {tokens:,} tokens, {flops / 1e12:.2f} TFLOP; codescaler (default: "
                      f"{engine.describe()}; blocks {engine.backend.compiled}) is "
                      f"{best_card / ours.seconds:.2f}x the best model-card baseline"
                      + (f" and {trl_s[0] / ours.seconds:.2f}x the TRL-style baseline" if trl_s else ""))
        variant = [r for r in runs if r.system == "codescaler (not batch-invariant)"]
        if variant:
            note(f"batch invariance (default) costs {100 * (ours.seconds / variant[0].seconds - 1):+.1f}% "
                          f"against the same engine without it (interleaved, median of {repeats} each)")
        note(f"load {start.load_s:.2f} s; first {w.group_size}-answer call after load {start.first_s:.3f} s, "
                      f"warm {start.warm_s:.3f} s ({start.first_s / start.warm_s:.2f}x)")
    return rows


if __name__ == "__main__":
    main()
