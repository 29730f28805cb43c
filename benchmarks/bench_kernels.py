"""Times last-token pooling: the fused Triton kernel (CUDA only), its torch reference (gather the pooled rows,
then norm and score them) and Hugging Face's way (norm and score every token, then gather).

    python benchmarks/bench_kernels.py [--batch 16] [--seq 2048] [--hidden 4096] [--dtype bfloat16 float32]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from typing import Callable

import torch

from codescaler.kernels.last_token_pool import flat_rows, last_token_pool, last_token_pool_reference


def hf_project_then_gather(hidden: torch.Tensor, index: torch.Tensor, norm_weight: torch.Tensor,
                           score_weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen3ForSequenceClassification after the last layer: RMSNorm and the score head over all B*T rows."""
    x = hidden.reshape(-1, hidden.shape[-1])
    dtype = x.dtype
    xf = x.to(torch.float32)
    normed = norm_weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(dtype)
    return torch.nn.functional.linear(normed, score_weight)[index, 0].to(torch.float32)


def time_ms(fn: Callable[[], object], device: torch.device, reps: int) -> float:
    if device.type == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=25, rep=200)
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--dtype", nargs="+", default=["bfloat16"], choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions on CPU (median reported)")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    B, T, H = args.batch, args.seq, args.hidden
    eps = 1e-6
    methods = {"torch reference (gather, norm, score)": last_token_pool_reference,
               "HF (norm + score all tokens, gather)": hf_project_then_gather}
    if device.type == "cuda" and importlib.util.find_spec("triton") is not None:
        methods = {"triton fused kernel": last_token_pool, **methods}

    print(f"last-token pooling, hidden ({B}, {T}, {H}), {B} pooled rows, device {device}"
          f"{' (' + torch.cuda.get_device_name() + ')' if device.type == 'cuda' else ''}")
    print(f"{'dtype':<10} {'method':<40} {'ms':>10} {'vs HF':>8}")
    for name in args.dtype:
        dtype = getattr(torch, name)
        g = torch.Generator(device=device).manual_seed(0)
        hidden = torch.randn(B, T, H, generator=g, device=device).to(dtype)
        norm_weight = (1.0 + 0.3 * torch.randn(H, generator=g, device=device)).to(dtype)
        score_weight = (torch.randn(1, H, generator=g, device=device) / H**0.5).to(dtype)
        positions = torch.randint(0, T, (B,), generator=g, device=device)
        index = flat_rows(positions, T)
        pooled_args = (hidden, index, norm_weight, score_weight, eps)
        results = {label: time_ms(lambda f=fn: f(*pooled_args), device, args.reps) for label, fn in methods.items()}
        hf = results["HF (norm + score all tokens, gather)"]
        for label, ms in results.items():
            print(f"{name:<10} {label:<40} {ms:>10.3f} {hf / ms:>7.1f}x")
        del hidden
    if device.type != "cuda":
        print("triton fused kernel: needs a CUDA GPU (none here); on CPU the backend uses the torch reference.")


if __name__ == "__main__":
    main()
