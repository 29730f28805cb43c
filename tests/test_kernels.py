"""Last-token pooling: the Triton kernel (under Triton's CPU interpreter) and the torch reference against a
float64 computation and against Hugging Face's Qwen3ForSequenceClassification."""

import os

os.environ["TRITON_INTERPRET"] = "1"  # read when the kernel is decorated, so before triton/the module load

import pytest
import torch

triton = pytest.importorskip("triton", reason="triton is not installed; the kernel tests run it under "
                             "TRITON_INTERPRET=1")
from triton.runtime.interpreter import InterpretedFunction  # noqa: E402

if not isinstance(triton.language.sum, InterpretedFunction):
    # triton.language's own helpers (tl.sum, tl.zeros) are jitted when triton is first imported.
    pytest.skip("triton was imported before TRITON_INTERPRET=1 was set (by an earlier test module), so its "
                "interpreter cannot run here; run `pytest tests/test_kernels.py` alone, or set the variable "
                "at the top of tests/conftest.py", allow_module_level=True)

from codescaler.kernels.last_token_pool import (  # noqa: E402
    flat_rows,
    last_token_pool,
    last_token_pool_reference,
    pool,
)

EPS = 1e-6
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# The reference rounds like Hugging Face in the hidden dtype; tolerances per dtype (Liger-Kernel's).
REFERENCE_TOL = {torch.float32: (1e-5, 5e-4), torch.bfloat16: (5e-3, 5e-2), torch.float16: (5e-3, 5e-2)}
# The kernel computes in float32 from the stored values, whatever their dtype.
KERNEL_TOL = (1e-5, 5e-4)

# (hidden shape, flat rows to pool): realistic, then deliberately odd.
SHAPES = {
    "realistic-8x300x1024": ((8, 300, 1024), None),
    "B1-T1-H123": ((1, 1, 123), [0]),
    "first-and-last-H47": ((3, 47, 47), [0, 46, 47 + 17, 3 * 47 - 1]),
    "H1": ((2, 5, 1), [0, 4, 9]),
    "packed-H12289-two-chunks": ((1, 6, 12289), [5, 0, 3]),
    "rows-H4096-odd-K": ((37, 4096), [36, 0, 11]),
}


def make_inputs(shape, rows, dtype, seed=0):
    """Pre-norm hidden states with a few outlier channels (as real ones have), Qwen3-like weights."""
    g = torch.Generator().manual_seed(seed)
    H = shape[-1]
    hidden = torch.randn(shape, generator=g) * 2.0
    hidden[..., : max(1, H // 200)] *= 40.0
    norm_weight = 1.0 + 0.3 * torch.randn(H, generator=g)
    score_weight = torch.randn(1, H, generator=g) / H**0.5
    n = hidden.numel() // H
    if rows is None:  # 64 pooled rows: the first, the last and random ones
        index = torch.randint(0, n, (64,), generator=g)
        index[0], index[-1] = 0, n - 1
    else:
        index = torch.tensor(rows, dtype=torch.int64)
    return hidden.to(dtype), index, norm_weight.to(dtype), score_weight.to(dtype)


def pool_float64(hidden, index, norm_weight, score_weight, eps=EPS):
    """The exact value of the same stored inputs: RMSNorm and the score head in float64."""
    H = hidden.shape[-1]
    x = hidden.reshape(-1, H)[index].double()
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return (y * norm_weight.double()) @ score_weight.double().reshape(H)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("case", list(SHAPES))
@pytest.mark.parametrize("impl", ["kernel", "reference"])
def test_matches_float64(impl, case, dtype):
    """The kernel keeps float32 throughout (tight everywhere); the reference rounds where HF does."""
    fn, (atol, rtol) = {"kernel": (last_token_pool, KERNEL_TOL),
                        "reference": (last_token_pool_reference, REFERENCE_TOL[dtype])}[impl]
    args = make_inputs(*SHAPES[case], dtype)
    got = fn(*args, EPS)
    assert got.dtype == torch.float32 and got.shape == args[1].shape
    torch.testing.assert_close(got.double(), pool_float64(*args), atol=atol, rtol=rtol)


def test_kernel_reads_strided_rows_and_int32_index():
    base, index, norm_weight, score_weight = make_inputs((4, 9, 200), [0, 35, 17], torch.bfloat16)
    hidden = base[..., :123]  # rows 200 apart: a view, not a copy
    norm_weight, score_weight = norm_weight[:123], score_weight[:, :123].reshape(123)
    got = last_token_pool(hidden, index.to(torch.int32), norm_weight, score_weight, EPS)
    torch.testing.assert_close(got.double(), pool_float64(hidden, index, norm_weight, score_weight),
                               atol=KERNEL_TOL[0], rtol=KERNEL_TOL[1])


def test_padded_batch_positions_and_empty_index():
    hidden, _, norm_weight, score_weight = make_inputs((3, 10, 64), [0], torch.float32)
    positions = torch.tensor([9, 0, 4])
    index = flat_rows(positions, 10)
    assert index.tolist() == [9, 10, 24]
    expected = torch.stack([pool_float64(hidden[b], positions[b : b + 1], norm_weight, score_weight)[0]
                            for b in range(3)])
    torch.testing.assert_close(last_token_pool(hidden, index, norm_weight, score_weight, EPS).double(),
                               expected, atol=1e-5, rtol=5e-4)
    empty = torch.zeros(0, dtype=torch.int64)
    assert last_token_pool(hidden, empty, norm_weight, score_weight, EPS).shape == (0,)
    assert last_token_pool_reference(hidden, empty, norm_weight, score_weight, EPS).shape == (0,)
    with pytest.raises(ValueError, match="positions holds 10, outside 0..9"):
        flat_rows(torch.tensor([3, 10]), 10)


def test_pool_uses_the_reference_on_cpu_and_the_kernel_when_asked():
    args = make_inputs((2, 7, 96), [6, 13], torch.bfloat16)
    assert torch.equal(pool(*args, EPS), last_token_pool_reference(*args, EPS))
    assert torch.equal(pool(*args, EPS, kernel=True), last_token_pool(*args, EPS))
    assert torch.equal(pool(*args, EPS, kernel=False), last_token_pool_reference(*args, EPS))


BAD_INPUTS = [
    ("float index", lambda h, i, n, s: (h, i.float(), n, s), TypeError, "index has dtype torch.float32"),
    ("2-D index", lambda h, i, n, s: (h, i[None], n, s), ValueError, "index must be a 1-D tensor"),
    ("index past the end", lambda h, i, n, s: (h, torch.tensor([0, 14]), n, s), ValueError,
     r"index holds row 14, outside hidden's 14 rows \(0..13\)"),
    ("negative index", lambda h, i, n, s: (h, torch.tensor([-1]), n, s), ValueError, "index holds row -1"),
    ("norm weight of another H", lambda h, i, n, s: (h, i, n[:-1], s), ValueError,
     r"norm_weight has shape \(47,\); expected \(48,\)"),
    ("score weight of another H", lambda h, i, n, s: (h, i, n, s[:, :-1]), ValueError,
     r"score_weight has shape \(1, 47\)"),
    ("two labels", lambda h, i, n, s: (h, i, n, s.expand(2, -1)), ValueError, "one label"),
    ("weight of another dtype", lambda h, i, n, s: (h, i, n.double(), s), TypeError,
     "norm_weight has dtype torch.float64; expected torch.float32"),
    ("integer hidden", lambda h, i, n, s: (h.long(), i, n, s), TypeError, "hidden has dtype torch.int64"),
    ("1-D hidden", lambda h, i, n, s: (h[0, 0], i, n, s), ValueError, "hidden must be a tensor of shape"),
]


@pytest.mark.parametrize("run", [last_token_pool, last_token_pool_reference], ids=lambda f: f.__name__)
@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda c: c[0])
def test_bad_inputs_name_the_argument(run, case):
    _, change, error, message = case
    args = make_inputs((2, 7, 48), [0, 13], torch.float32)
    with pytest.raises(error, match=message):
        run(*change(*args), EPS)


def tiny_qwen3(dtype):
    from transformers import Qwen3Config, Qwen3ForSequenceClassification

    config = Qwen3Config(vocab_size=1000, hidden_size=96, intermediate_size=192, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=24, num_labels=1,
                         pad_token_id=0, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = Qwen3ForSequenceClassification(config)
    with torch.no_grad():  # a trained-looking head and norm (the initial ones are zeros-ish and ones)
        model.score.weight.normal_(0.0, 1.0 / 96**0.5)
        model.model.norm.weight.normal_(1.0, 0.3)
    return model.eval().to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_pooling_reproduces_hugging_face_logits(dtype):
    model = tiny_qwen3(dtype)
    lengths = [11, 1, 7, 16]
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)  # right-padded with pad id 0
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(1, 1000, (n,), generator=torch.Generator().manual_seed(row))
    captured = {}
    hook = model.model.norm.register_forward_pre_hook(lambda _m, args: captured.update(pre_norm=args[0]))
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=(ids != 0).long()).logits[:, 0].float()
    hook.remove()
    hidden = captured["pre_norm"]  # HF's hidden_states[-1] is after the final norm; we pool before it
    index = flat_rows(torch.tensor(lengths) - 1, ids.shape[1])
    weights = (model.model.norm.weight, model.score.weight, model.model.norm.variance_epsilon)
    with torch.inference_mode():
        reference = last_token_pool_reference(hidden, index, weights[0], weights[1], weights[2])
        kernel = last_token_pool(hidden, index, weights[0], weights[1], weights[2])
    if dtype == torch.float32:
        torch.testing.assert_close(reference, logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(kernel, logits, atol=1e-5, rtol=0)
    else:  # same rounding points as HF: equal up to the linear's accumulation order (one bfloat16 ulp)
        torch.testing.assert_close(reference, logits, atol=1e-6, rtol=2**-7)
        exact = pool_float64(hidden, index, weights[0], weights[1], weights[2])
        assert (kernel.double() - exact).abs().max() <= (logits.double() - exact).abs().max() + 1e-6
