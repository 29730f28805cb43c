"""``codescaler bench``: this engine against the model-card and TRL-style baselines on realistic workloads.

Everything runs in one process on one model: a random Qwen3 reward model large enough to be
compute-bound (hidden 512, 8 layers, Qwen's real 151k vocabulary), built once into the cache.
"""

from __future__ import annotations

import gc
import resource
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_SHAPE = dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
                   head_dim=64, intermediate_size=1536, seed=0)


def bench_model_dir() -> Path:
    from codescaler import tiny

    out = tiny._cache_dir() / "bench-qwen3-512"
    if not (out / "config.json").exists():
        tiny.save_random_reward_model(out, **BENCH_SHAPE)
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
    """Median wall time of ``repeats`` calls, the last call's result, and the peak RSS over all of them."""
    times = []
    with PeakRSS() as rss:
        for _ in range(repeats):
            gc.collect()
            t = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2], result, rss.peak


@dataclass
class Run:
    system: str
    seconds: float
    computed_tokens: int
    rewards: list[float]
    rss_mb: float


def repeats(workload) -> int:
    """Small workloads are timed as the median of 5 runs, large ones once."""
    return 5 if len(workload.responses) <= 32 else 1


def useful_work(plan, config) -> tuple[int, float]:
    """(tokens, FLOPs) of the work that determines the rewards: each shared prefix once, each unique
    sequence's own tokens once; linear layers plus attention over each token's visible context."""
    h = config.hidden_size
    heads = config.num_attention_heads
    hd = getattr(config, "head_dim", None) or h // heads
    kv = config.num_key_value_heads
    inter = config.intermediate_size
    linear_params = config.num_hidden_layers * (h * heads * hd + 2 * h * kv * hd + heads * hd * h + 3 * h * inter)
    attn_per_ctx = config.num_hidden_layers * 4 * heads * hd  # QK^T and PV per (query, key) pair
    tokens, pairs = 0, 0
    for g in plan.shared:
        p = len(g.prefix)
        tokens += p
        pairs += p * (p + 1) // 2
        for k in g.members:
            a = len(plan.seqs[k]) - p
            tokens += a
            pairs += a * p + a * (a + 1) // 2
    for batch in plan.batches:
        for k in batch:
            n = len(plan.seqs[k])
            tokens += n
            pairs += n * (n + 1) // 2
    return tokens, 2.0 * linear_params * tokens + attn_per_ctx * pairs


def run_engine(path, workload, dtype, label: str = "codescaler", **kw) -> tuple[Run, object]:
    from codescaler import RewardModel

    m = RewardModel.from_pretrained(path, dtype=dtype, **kw)
    warm = workload.group_size * 2  # warm-up (and, with compile=True, the one-off compile)
    m.score(workload.questions[:warm], workload.responses[:warm])
    seconds, out, rss = _timed(lambda: m.score(workload.questions, workload.responses), repeats(workload))
    plan = m.last_plan
    return Run(label, seconds, plan.computed_tokens, [r.reward for r in out], rss), (m, plan)


def run_hf(path, workload, dtype, batch_size: int, label: str) -> Run:
    """The model card's usage: extract, render, pad a batch in input order, run every response (empty
    answers included, as upstream does), shape."""
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

    seconds, (raws, computed), rss = _timed(step, repeats(workload))
    rewards = [shape(r, e.valid) for r, e in zip(raws, found)]
    return Run(label, seconds, computed, rewards, rss)


def main(workloads=("grpo", "bon"), dtype: str = "bfloat16", batch_sizes=(4, 8, 16), trl: bool = True,
         model: str | None = None, threads: int | None = None) -> list[dict]:
    import torch
    from rich.console import Console
    from rich.table import Table
    from tokenizers import Tokenizer

    from codescaler import tiny

    from .workloads import best_of_n, grpo_step

    if threads:
        torch.set_num_threads(threads)
    console = Console()
    path = Path(model) if model else bench_model_dir()
    peak = matmul_peak(getattr(torch, dtype))
    peak_bf16 = peak if dtype == "bfloat16" else matmul_peak(torch.bfloat16)
    console.print(f"model {path} | dtype {dtype} | torch threads {torch.get_num_threads()} | "
                  f"measured 2048^3 matmul: {peak:.0f} GFLOP/s at {dtype}, {peak_bf16:.0f} at bfloat16")
    tok = Tokenizer.from_file(str(tiny.qwen_tokenizer_json()))
    made = {"grpo": lambda: grpo_step(tok), "bon": lambda: best_of_n(tok)}
    rows = []
    for name in workloads:
        w = made[name]()
        eager, (engine, plan) = run_engine(path, w, dtype, "codescaler (eager)")
        tokens, flops = useful_work(plan, engine.backend.config)
        ours, _ = run_engine(path, w, dtype, "codescaler (compile=True)", compile=True)
        runs = [eager, ours]
        for bs in batch_sizes:
            runs.append(run_hf(path, w, dtype, bs, f"model card, batch {bs}"))
        if trl:
            runs.append(run_hf(path, w, dtype, len(w.responses), "TRL-style, one padded batch"))
        reference = (run_hf(path, w, "float32", 8, "hf float32 reference").rewards if dtype != "float32"
                     else next(r.rewards for r in runs if r.system.startswith("model card")))
        best_card = min(r.seconds for r in runs if r.system.startswith("model card"))
        table = Table(title=f"{w.name}: {len(w.responses)} responses, {dtype}")
        for col in ("system", "wall s", "speed-up vs best card", "tokens computed", "useful tok/s",
                    "% bf16 peak (useful)", "peak RSS MB (run)", "max |Δreward| vs fp32 HF"):
            table.add_column(col, justify="right")
        for r in runs:
            diff = max(abs(a - b) for a, b in zip(r.rewards, reference))
            table.add_row(r.system, f"{r.seconds:.2f}", f"{best_card / r.seconds:.2f}x", f"{r.computed_tokens:,}",
                          f"{tokens / r.seconds:,.0f}", f"{100 * flops / r.seconds / 1e9 / peak_bf16:.1f}",
                          f"{r.rss_mb:,.0f}", f"{diff:.4f}")
            rows.append({"workload": w.name, "system": r.system, "seconds": r.seconds, "tokens": r.computed_tokens,
                         "max_reward_diff": diff})
        console.print(table)
        trl_s = [r.seconds for r in runs if r.system.startswith("TRL")]
        console.print(f"useful work: {tokens:,} tokens, {flops / 1e12:.2f} TFLOP; codescaler (compiled) is "
                      f"{best_card / ours.seconds:.2f}x the best model-card baseline"
                      + (f" and {trl_s[0] / ours.seconds:.2f}x the TRL-style baseline" if trl_s else ""))
    return rows


if __name__ == "__main__":
    main()
