"""Int8Linear against float64: within the error int8 quantization permits, equal to the same quantization
computed in float64, and a typed error on a CPU that declares no int8 dot-product instructions."""

from __future__ import annotations

import pytest
import torch

from codescaler import device
from codescaler.backends import int8
from codescaler.errors import EngineBuildError

SUPPORTED, WHY = int8.int8_supported()
needs_int8 = pytest.mark.skipif(not SUPPORTED, reason=f"int8 not available: {WHY}")

# (leading dims of x, in_features, out_features): one realistic, the others deliberately odd.
SHAPES = [((2, 64), 512, 384), ((4, 47), 123, 31), ((1,), 7, 5)]
OUT_ROUNDING = {torch.float32: 1e-6, torch.bfloat16: 2.0**-7}  # bf16: result and per-token rescale each rounded


@pytest.fixture(autouse=True)
def eager_quantizer(request, monkeypatch):
    """The per-token quantizer runs eagerly in these tests: compiling it costs seconds per dtype and
    grad mode, and test_compiled_quantizer_equals_eager shows the compiled one is bit-identical."""
    if request.node.originalname != "test_compiled_quantizer_equals_eager":
        monkeypatch.setattr(int8, "_quantizer", int8.quantize_per_token)


def _case(lead, k, n, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, k, generator=g)
    x[..., 3 % k] *= 20  # an outlier channel, as real activations have: it sets each token's scale
    w = torch.randn(n, k, generator=g) / k**0.5
    b = torch.randn(n, generator=g)
    return x.to(dtype), w.to(dtype), b


def _int8_error_bound(x64, w64, b64, dtype):
    """Worst-case |x.w - x^.w^| for round-to-nearest with step s_x (per token) and s_w (per channel):
    sum|x| * s_w/2 + s_x/2 * sum|w^|, with |w^| <= |w| + s_w/2; plus the output's own rounding."""
    s_x = x64.abs().amax(-1, keepdim=True) / 127
    s_w = w64.abs().amax(-1) / 127
    bound = x64.abs().sum(-1, keepdim=True) * s_w / 2 + s_x / 2 * (w64.abs() + s_w[:, None] / 2).sum(-1)
    ref = x64 @ w64.T + b64
    return bound + OUT_ROUNDING[dtype] * (ref.abs() + b64.abs()) + 1e-6, ref


@needs_int8
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("lead,k,n", SHAPES)
def test_int8_linear_within_quantization_error(lead, k, n, dtype):
    x, w, b = _case(lead, k, n, dtype)
    lin = int8.Int8Linear(w, b)
    y = lin(x)
    assert y.dtype == dtype and y.shape == (*lead, n)
    tol, ref = _int8_error_bound(x.double(), w.double(), b.double(), dtype)
    err = (y.double() - ref).abs()
    assert (err <= tol).all(), f"max excess {(err - tol).max().item():.3g}"
    # and the same quantization done in float64: the kernel adds nothing but float rounding
    q, s = int8.quantize_per_token(x.reshape(-1, k))
    wq, ws = int8.quantize_per_channel(w)
    sim = ((q.double() - 128) * s.double()) @ (wq.double() * ws.double()[:, None]).T + b.double()
    rel = OUT_ROUNDING[dtype] * 2
    torch.testing.assert_close(y.reshape(-1, n).double(), sim, rtol=rel, atol=rel * sim.abs().max().item())


@needs_int8
def test_int8_linear_any_strides_and_empty_and_zero_rows():
    x, w, _ = _case((5, 9), 40, 24, torch.bfloat16)
    lin = int8.Int8Linear(w)
    strided = x.transpose(0, 1)  # [9, 5, 40], not contiguous
    torch.testing.assert_close(lin(strided), lin(strided.contiguous()), rtol=0, atol=0)
    assert lin(x[:0]).shape == (0, 9, 24)
    zeros = torch.zeros(3, 40, dtype=torch.bfloat16)
    assert torch.equal(lin(zeros), torch.zeros(3, 24, dtype=torch.bfloat16))  # finite scale, no NaN


@needs_int8
def test_compiled_quantizer_equals_eager():
    x, _, _ = _case((37,), 300, 1, torch.bfloat16)  # the runtime's dtype; float32 is the same code
    x[5] = 0
    q_eager, s_eager = int8.quantize_per_token(x)
    q_compiled, s_compiled = int8._quantize(x)
    assert torch.equal(q_eager, q_compiled) and torch.equal(s_eager, s_compiled)
    assert torch.equal(q_eager[5], torch.full((300,), 128, dtype=torch.uint8))


@needs_int8
def test_quantize_model_swaps_decoder_linears_only_and_keeps_scores():
    from transformers import Qwen3Config, Qwen3ForSequenceClassification

    config = Qwen3Config(vocab_size=500, hidden_size=96, intermediate_size=200, num_hidden_layers=2,
                         num_attention_heads=3, num_key_value_heads=1, head_dim=40, num_labels=1, pad_token_id=0)
    torch.manual_seed(0)
    model = Qwen3ForSequenceClassification(config).eval()
    with torch.no_grad():
        model.score.weight.normal_(0.0, 96**-0.5)
    ids = torch.randint(1, 500, (12, 30), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model(input_ids=ids).logits[:, 0]
        int8.quantize_model_(model)
        got = model(input_ids=ids).logits[:, 0]
    swapped = [n for n, m in model.named_modules() if isinstance(m, int8.Int8Linear)]
    assert len(swapped) == 2 * 7 and all(n.startswith("model.layers.") for n in swapped)
    assert type(model.score) is torch.nn.Linear and type(model.model.embed_tokens) is torch.nn.Embedding
    spread = (ref.max() - ref.min()).item()
    assert (got - ref).abs().max().item() < 0.05 * spread


def test_unsupported_cpu_is_a_typed_error(monkeypatch):
    monkeypatch.setattr(device, "_cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    ok, why = int8.int8_supported()
    assert not ok and "avx512_vnni" in why and "amx_int8" in why
    with pytest.raises(EngineBuildError, match="int8 is not available on this machine.*avx512_vnni"):
        int8.Int8Linear(torch.randn(4, 8))
    with pytest.raises(EngineBuildError, match="avx_vnni"):
        int8.quantize_model_(torch.nn.Linear(8, 4))
