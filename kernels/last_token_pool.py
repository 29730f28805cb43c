"""Last-token pooling of a reward model: gather the pooled rows, apply the final RMSNorm and the one-label
score head, in one Triton kernel beside its torch reference.

Hugging Face's ``Qwen3ForSequenceClassification`` normalises and projects every token, then reads one logit
per sequence; only the pooled rows matter, so this reads K rows of the pre-norm hidden states instead.

Rows are flat: ``hidden`` is ``(..., H)`` with its leading dimensions read as one row axis (``(N, H)``,
padded ``(B, T, H)`` or packed ``(1, total_T, H)``), and ``index`` holds K flat row numbers. For a padded
batch with one position per sequence, ``flat_rows(positions, T)`` gives them.

Rounding. The reference reproduces Hugging Face's rounding points: RMSNorm in float32, a cast back to the
hidden dtype, the norm weight multiplied in that dtype, then the linear in that dtype (float32 accumulation,
output rounded to the dtype). The kernel keeps float32 from the load to the score, and uses
``score = rsqrt(mean(x^2) + eps) * sum(x * norm_w * score_w)``, so the rstd factor is applied after the dot
product rather than per element. For float32 inputs the two agree to float32 rounding; for bfloat16/float16
the kernel skips three roundings to the 8-/11-bit mantissa (the normalised row, the weighted row, the
score) and is closer to the exact (float64) value than Hugging Face is, by about one ulp of the dtype.

Bad arguments raise ``InputError`` (a ``ValueError``) or ``TypeError`` naming the argument.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import torch

from codescaler.errors import InputError

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# Rows up to this width are one block; wider rows loop over chunks of it (registers stay bounded).
MAX_BLOCK_H = 8192


@functools.cache
def _triton() -> ModuleType | None:
    """Triton, imported on first use (None where it is not installed): only the kernel needs it, and
    importing it costs 0.2-0.6 s of every CPU process's load, where the torch reference runs."""
    try:
        import triton
    except ImportError:  # the torch reference serves machines without Triton
        return None
    return triton


@functools.cache
def _kernel() -> Any:
    """The Triton kernel, built on first use. Under ``TRITON_INTERPRET=1`` (set before Triton is first
    imported) Triton builds it for its CPU interpreter."""
    import triton
    import triton.language as tl

    # No Python annotations on the kernel's arguments: Triton reads them as argument types (``H: int`` would
    # compile H, and the strides, as int32 whatever their value).
    @triton.jit
    def _last_token_pool_kernel(
        hidden_ptr, index_ptr, norm_w_ptr, score_w_ptr, out_ptr,
        stride_row, stride_col, H, eps,
        BLOCK_H: tl.constexpr,
    ):
        pid = tl.program_id(0)
        row = tl.load(index_ptr + pid).to(tl.int64)
        base = hidden_ptr + row * stride_row
        sq = tl.zeros([BLOCK_H], dtype=tl.float32)
        dot = tl.zeros([BLOCK_H], dtype=tl.float32)
        for start in range(0, H, BLOCK_H):
            cols = start + tl.arange(0, BLOCK_H)
            mask = cols < H
            # Cast right after loading: all arithmetic is float32 (the interpreter's bfloat16 math is wrong).
            x = tl.load(base + cols * stride_col, mask=mask, other=0.0).to(tl.float32)
            wn = tl.load(norm_w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
            ws = tl.load(score_w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
            sq += x * x
            dot += x * wn * ws
        rstd = 1.0 / tl.sqrt(tl.sum(sq, axis=0) / H + eps)
        tl.store(out_ptr + pid, tl.sum(dot, axis=0) * rstd)

    return _last_token_pool_kernel


def _interpreted() -> bool:
    """True when the kernel is built by Triton's CPU interpreter (``TRITON_INTERPRET=1`` when Triton was
    first imported)."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_kernel(), InterpretedFunction)


def _check(hidden: torch.Tensor, index: torch.Tensor, norm_weight: torch.Tensor, score_weight: torch.Tensor,
           eps: float) -> int:
    """Validates the arguments of both implementations; returns the hidden size H."""
    if not isinstance(hidden, torch.Tensor) or hidden.dim() < 2:
        raise InputError(f"hidden must be a tensor of shape (..., H) with at least 2 dims, got "
                         f"{getattr(hidden, 'shape', type(hidden).__name__)}")
    if hidden.dtype not in FLOAT_DTYPES:
        raise TypeError(f"hidden has dtype {hidden.dtype}; expected float32, bfloat16 or float16")
    H = hidden.shape[-1]
    if H == 0:
        raise InputError("hidden has hidden size 0")
    rows = hidden.numel() // H
    if not isinstance(index, torch.Tensor) or index.dim() != 1:
        raise InputError(f"index must be a 1-D tensor of flat row numbers, got "
                         f"{getattr(index, 'shape', type(index).__name__)}")
    if index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"index has dtype {index.dtype}; expected int64 or int32")
    if norm_weight.shape != (H,):
        raise InputError(f"norm_weight has shape {tuple(norm_weight.shape)}; expected ({H},) to match hidden")
    if score_weight.shape not in ((H,), (1, H)):
        raise InputError(f"score_weight has shape {tuple(score_weight.shape)}; expected ({H},) or (1, {H}): "
                         "one label, matching hidden")
    for name, w in (("norm_weight", norm_weight), ("score_weight", score_weight)):
        if w.dtype != hidden.dtype:
            raise TypeError(f"{name} has dtype {w.dtype}; expected {hidden.dtype}, the dtype of hidden")
    for name, t in (("index", index), ("norm_weight", norm_weight), ("score_weight", score_weight)):
        if t.device != hidden.device:
            raise InputError(f"{name} is on {t.device} but hidden is on {hidden.device}")
    if not eps > 0:
        raise InputError(f"eps must be positive, got {eps}")
    if index.numel():
        lo, hi = torch.stack(torch.aminmax(index)).tolist()  # one host sync; the forward pass dwarfs it
        if lo < 0 or hi >= rows:
            bad = lo if lo < 0 else hi
            raise InputError(f"index holds row {bad}, outside hidden's {rows} rows (0..{rows - 1})")
    return H


def last_token_pool(hidden: torch.Tensor, index: torch.Tensor, norm_weight: torch.Tensor, score_weight: torch.Tensor,
                    eps: float) -> torch.Tensor:
    """Scores of rows ``index`` of ``hidden`` (..., H) through RMSNorm and a one-label head: float32 (K,).

    Runs the Triton kernel: on CUDA, or on CPU when ``TRITON_INTERPRET=1`` was set before Triton was first
    imported.
    """
    triton = _triton()
    if triton is None:
        raise RuntimeError("last_token_pool needs triton, which is not installed; use "
                           "last_token_pool_reference or pool()")
    H = _check(hidden, index, norm_weight, score_weight, eps)
    if not hidden.is_cuda and not _interpreted():
        raise InputError(f"hidden is on {hidden.device}; the Triton kernel needs CUDA, or TRITON_INTERPRET=1 "
                         "set before Triton is first imported")
    rows = hidden.reshape(-1, H)
    out = torch.empty(index.shape[0], dtype=torch.float32, device=hidden.device)
    if index.shape[0] == 0:
        return out
    block = min(triton.next_power_of_2(H), MAX_BLOCK_H)
    _kernel()[(index.shape[0],)](
        rows, index.contiguous(), norm_weight.contiguous(), score_weight.reshape(H).contiguous(), out,
        rows.stride(0), rows.stride(1), H, float(eps),
        BLOCK_H=block, num_warps=min(16, max(1, block // 512)),
    )
    return out


def last_token_pool_reference(hidden: torch.Tensor, index: torch.Tensor, norm_weight: torch.Tensor,
                              score_weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Torch version of :func:`last_token_pool` with Hugging Face's rounding points: float32 (K,)."""
    H = _check(hidden, index, norm_weight, score_weight, eps)
    x = hidden.reshape(-1, H).index_select(0, index.to(torch.int64))
    dtype = x.dtype
    xf = x.to(torch.float32)
    variance = xf.pow(2).mean(-1, keepdim=True)
    normed = norm_weight * (xf * torch.rsqrt(variance + eps)).to(dtype)
    return torch.nn.functional.linear(normed, score_weight.reshape(1, H)).reshape(-1).to(torch.float32)


def pool(hidden: torch.Tensor, index: torch.Tensor, norm_weight: torch.Tensor, score_weight: torch.Tensor, eps: float,
         *, kernel: bool | None = None) -> torch.Tensor:
    """Last-token scores, float32 (K,): the Triton kernel on CUDA, the torch reference elsewhere.

    ``kernel=None`` picks by device; ``kernel=True`` forces the kernel (CPU only under ``TRITON_INTERPRET=1``),
    ``kernel=False`` forces the reference.
    """
    if kernel is None:
        kernel = hidden.is_cuda and _triton() is not None and not _interpreted()
    run = last_token_pool if kernel else last_token_pool_reference
    return run(hidden, index, norm_weight, score_weight, eps)


def flat_rows(positions: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Flat row numbers of one position per sequence in a padded ``(B, seq_len, H)`` batch: int64 (B,)."""
    if positions.dim() != 1:
        raise InputError(f"positions must be 1-D (one per sequence), got shape {tuple(positions.shape)}")
    if positions.numel():
        lo, hi = int(positions.min()), int(positions.max())
        if lo < 0 or hi >= seq_len:
            raise InputError(f"positions holds {lo if lo < 0 else hi}, outside 0..{seq_len - 1}")
    starts = torch.arange(positions.shape[0], device=positions.device, dtype=torch.int64) * seq_len
    return starts + positions.to(torch.int64)
