"""Opt-in int8 linear layers for CPUs with VNNI or AMX: weights quantized once per output channel,
activations quantized per token at each call, products accumulated in int32 by oneDNN.

``Int8Linear`` replaces an ``nn.Linear`` at inference; ``quantize_model_`` swaps every linear layer of a
Hugging Face Qwen3 reward model's decoder for one (the score head and the embeddings stay as they are).
"""

from __future__ import annotations

import torch

from codescaler import device
from codescaler.errors import EngineBuildError

# Instruction sets that multiply int8 by int8 into int32 in one instruction; without one, oneDNN falls
# back to kernels slower than bfloat16 or float32 and int8 buys nothing.
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")

_QMAX = 127.0  # symmetric: -127..127 on both sides
_ZERO_POINT = 128
_TINY = torch.finfo(torch.float32).tiny  # an all-zero row gets a finite scale (and quantizes to zeros)


def int8_supported() -> tuple[bool, str]:
    """(supported, why): whether this CPU declares an int8 dot-product instruction set (read from
    /proc/cpuinfo, never timed) and this torch has oneDNN's int8 linear."""
    flags = device._cpu_flags()
    found = [f for f in INT8_FLAGS if f in flags]
    if not found:
        return False, f"this CPU declares none of {', '.join(INT8_FLAGS)} in /proc/cpuinfo"
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_pointwise")):
        return False, f"torch {torch.__version__} was built without oneDNN's int8 linear (onednn::qlinear_pointwise)"
    return True, f"int8 dot products from {', '.join(found)}"


def _require_int8() -> None:
    ok, why = int8_supported()
    if not ok:
        raise EngineBuildError(f"int8 is not available on this machine: {why}; use dtype bfloat16 or float32")


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 weight ``[out, in]``, float32 scale ``[out]``): each output row scaled by its own max |w|."""
    w = weight.detach().to(torch.float32)
    scale = w.abs().amax(dim=1).clamp_min(_TINY) / _QMAX
    q = torch.round(w / scale[:, None]).clamp_(-_QMAX, _QMAX).to(torch.int8)
    return q, scale


def quantize_per_token(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 ``q`` ``[m, k]``, float32 scale ``[m, 1]``) for a 2-D float32 or bfloat16 ``x``, with
    ``x ~= (q - 128) * scale``: symmetric per token (each row scaled by its own max |x|), stored with a zero
    point of 128 because oneDNN's fast int8 kernels take unsigned activations (signed ones fall to a
    reference kernel ~1000x slower on AVX512-VNNI). The arithmetic is float32 whatever x's dtype."""
    amax = torch.maximum(x.amax(dim=1, keepdim=True), x.amin(dim=1, keepdim=True).neg())
    # The floor keeps 1/scale finite, so an all-zero token quantizes to zeros rather than 0 * inf = NaN.
    scale = amax.to(torch.float32).div_(_QMAX).clamp_min_(_TINY)
    # |x / scale| <= 127 up to one rounding of the product, which round() absorbs: no clamp needed.
    q = torch.mul(x, scale.reciprocal()).round_().add_(_ZERO_POINT).to(torch.uint8)
    return q, scale


_quantizer = None


def _quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`quantize_per_token`, compiled on first use: Inductor fuses its five passes over ``x`` into
    two, ~10x faster than eager at the model's shapes (eager costs about as much as the int8 matmul)."""
    global _quantizer
    if _quantizer is None:
        _quantizer = torch.compile(quantize_per_token, dynamic=True)
    with torch.no_grad():  # one grad mode, so a call under no_grad and one without share a compiled graph
        return _quantizer(x)


class Int8Linear(torch.nn.Module):
    """``y = x @ weight.T + bias`` with int8 weights (per output channel) and int8 activations (per token).

    ``x`` is ``[..., in_features]``, float32 or bfloat16, any strides; the result is ``[..., out_features]``
    in x's dtype. Only inference: there is no gradient. Raises :class:`~codescaler.errors.EngineBuildError`
    at construction on a CPU without VNNI/AMX.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        _require_int8()
        if weight.dim() != 2:
            raise ValueError(f"Int8Linear weight must be [out_features, in_features], got shape {tuple(weight.shape)}")
        if weight.dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"Int8Linear weight must be float32 or bfloat16, got {weight.dtype}")
        self.out_features, self.in_features = weight.shape
        if bias is not None and tuple(bias.shape) != (self.out_features,):
            raise ValueError(f"Int8Linear bias must be [{self.out_features}], got shape {tuple(bias.shape)}")
        qweight, scale = quantize_per_channel(weight)
        # Plain attributes, not buffers: ``model.to(torch.bfloat16)`` must leave the scales in float32.
        self.weight_scale = scale
        self.bias = None if bias is None else bias.detach().to(torch.float32)
        self._zero_points = torch.zeros(self.out_features, dtype=torch.int64)
        # oneDNN's own blocked layout (an opaque mkldnn tensor); the matmul never reads a plain int8 weight.
        self._packed = torch.ops.onednn.qlinear_prepack(qweight, None)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear) -> "Int8Linear":
        return cls(linear.weight, linear.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"Int8Linear takes float32 or bfloat16 input, got {x.dtype}")
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Int8Linear expects [..., {self.in_features}] input, got shape {tuple(x.shape)}")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if x2.shape[0] == 0:
            return x.new_empty(*lead, self.out_features)
        q, token_scale = _quantize(x2)
        # oneDNN takes one activation scale per tensor: pass 1.0 and apply the per-token scales after.
        y = torch.ops.onednn.qlinear_pointwise(
            q, 1.0, _ZERO_POINT, self._packed, self.weight_scale, self._zero_points, None,
            1.0, 0, x.dtype, "none", [], "")
        y.mul_(token_scale)
        if self.bias is not None:
            y.add_(self.bias)
        return y.view(*lead, self.out_features)


def quantize_model_(hf_model: torch.nn.Module) -> torch.nn.Module:
    """Swap every ``nn.Linear`` inside a Hugging Face ``*ForSequenceClassification``'s decoder
    (``hf_model.model``: attention and MLP projections) for an :class:`Int8Linear`, in place, and return
    the model. The score head and the embeddings are left in their float dtype."""
    _require_int8()
    decoder = getattr(hf_model, "model", None)
    if not isinstance(decoder, torch.nn.Module):
        raise ValueError(f"{type(hf_model).__name__} has no decoder at .model; expected a Hugging Face "
                         f"*ForSequenceClassification such as Qwen3ForSequenceClassification")
    targets = [(name, module) for name, module in decoder.named_modules() if isinstance(module, torch.nn.Linear)]
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = decoder.get_submodule(parent_name) if parent_name else decoder
        setattr(parent, child, Int8Linear.from_linear(linear))
    return hf_model
