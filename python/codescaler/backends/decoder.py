"""The decoder at scoring time: every token of a batch through each linear layer at once, attention per unit.

A batch is a list of *units*, packed back to back in one row with no padding. A unit is a prefix (a
rendered question, possibly empty) followed by answers that each continue it; a sequence that shares
nothing is a unit with an empty prefix and one answer. Linear layers (over 90% of the FLOPs at real
model shapes) do not care which unit a token belongs to, so they run over all tokens of the batch at
once; only attention is per unit: the prefix causally over itself, each answer against the prefix and
causally over itself, the two halves merged exactly through their log-sum-exps.

Batch invariance: a token's result depends only on its own sequence, never on what shares the pass.
A GEMM library picks its algorithm (blocking, kernels, reduction splits) by the number of rows, so the
blocks always run on tiles of exactly one row count, the last one padded: every call has one shape,
hence one algorithm, and a row's bits do not depend on its neighbours. The tile is ``ROW_TILE`` unless
the compiled package says otherwise (its build measures the candidates, see ``codescaler.backends.aoti``). Every attention call
covers one prefix or one answer (never several answers at once), and the score head reads one row per
call. So a sequence's score is the same alone, in any pass, at any position, in any order.

Each layer is two blocks, ``PreAttention`` (RMSNorm, q/k/v projections, q/k norms, rotary) and
``PostAttention`` (output projection, residual, RMSNorm, SiLU-gated MLP, residual). Their weights are
inputs, not constants, so one compiled pair serves every layer and every checkpoint of that shape: see
``codescaler.backends.aoti``, which compiles them once per machine with AOTInductor. Run eagerly they are
the same code, so the compiled blocks are checked against the very functions they were made from.
Numerics follow Hugging Face's Qwen3 / Qwen2 / Llama layers (same operations, same rounding points).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelLoadError
from .base import Unit

_flash_cpu = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
# Bumped whenever PreAttention or PostAttention change their inputs or arithmetic, or how they are called:
# compiled packages and engines made from other versions are rebuilt or refused.
BLOCKS_VERSION = 3
# Tokens per call of the blocks by default (see the module docstring); a compiled package records its own,
# chosen by measurement at its build, and the C++ scorer reads it from an engine's manifest.
ROW_TILE = 256
# A unit's place in the packed row: (start, prefix length, answer lengths, cached prefix keys/values or None).
Span = Tuple[int, int, list, Optional[list]]


@dataclass(frozen=True)
class Arch:
    """What the compiled blocks depend on: layer dimensions, norms, biases and dtype (not the weights)."""

    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    eps: float
    qk_norm: bool
    qkv_bias: bool
    dtype: str

    @classmethod
    def from_config(cls, cfg: dict, dtype: str, *, source: str = "config.json") -> "Arch":
        text = cfg.get("text_config", cfg)
        kind = text.get("model_type", "")
        if kind not in ("qwen3", "qwen2", "llama"):
            raise ModelLoadError(f"{source}: model_type {kind!r} is not supported (qwen3, qwen2, llama)")
        act = text.get("hidden_act", "silu")
        if act != "silu":
            raise ModelLoadError(f"{source}: hidden_act {act!r} is not supported; the decoder expects silu")
        if text.get("use_sliding_window") or "sliding_attention" in (text.get("layer_types") or ()):
            raise ModelLoadError(f"{source}: sliding-window attention is not supported")
        heads = int(text["num_attention_heads"])
        hidden = int(text["hidden_size"])
        return cls(
            hidden=hidden,
            intermediate=int(text["intermediate_size"]),
            heads=heads,
            kv_heads=int(text.get("num_key_value_heads") or heads),
            head_dim=int(text.get("head_dim") or hidden // heads),
            eps=float(text.get("rms_norm_eps", 1e-6)),
            qk_norm=kind == "qwen3",
            qkv_bias=bool(text.get("attention_bias", kind == "qwen2")),
            dtype=dtype,
        )

    def key(self) -> str:
        """A stable name for this shape, for compiled-package file names."""
        return json.dumps(asdict(self), sort_keys=True)

    def pre_names(self) -> list[str]:
        names = ["input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                 "self_attn.v_proj.weight"]
        if self.qkv_bias:
            names += ["self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"]
        if self.qk_norm:
            names += ["self_attn.q_norm.weight", "self_attn.k_norm.weight"]
        return names

    @staticmethod
    def post_names() -> list[str]:
        return ["self_attn.o_proj.weight", "post_attention_layernorm.weight", "mlp.gate_proj.weight",
                "mlp.up_proj.weight", "mlp.down_proj.weight"]


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Hugging Face's RMSNorm: float32 statistics, cast back, then the weight in the input dtype."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class PreAttention(nn.Module):
    """hidden (N, hidden), cos and sin (N, head_dim), the layer's ``Arch.pre_names()`` weights ->
    q (1, heads, N, d), k and v (1, kv_heads, N, d), contiguous in that layout for flash attention."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch

    def forward(self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                *w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = self.arch
        n = hidden.shape[0]
        x = rms_norm(hidden, w[0], a.eps)
        bias = w[4:7] if a.qkv_bias else (None, None, None)
        q = F.linear(x, w[1], bias[0]).view(n, a.heads, a.head_dim)
        k = F.linear(x, w[2], bias[1]).view(n, a.kv_heads, a.head_dim)
        v = F.linear(x, w[3], bias[2]).view(n, a.kv_heads, a.head_dim)
        if a.qk_norm:
            q = rms_norm(q, w[-2], a.eps)
            k = rms_norm(k, w[-1], a.eps)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        return (q.transpose(0, 1).unsqueeze(0).contiguous(), k.transpose(0, 1).unsqueeze(0).contiguous(),
                v.transpose(0, 1).unsqueeze(0).contiguous())


class PostAttention(nn.Module):
    """hidden (N, hidden); attention as two halves over disjoint key sets, each an output (N, heads, d)
    with its log-sum-exps (1, heads, N) in float32 (a token with one half has -inf and zeros in the
    other); the layer's ``Arch.post_names()`` weights -> the layer's output hidden states (N, hidden).
    The halves are merged exactly here, fused with the output projection's input."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch

    def forward(self, hidden: torch.Tensor, oa: torch.Tensor, la: torch.Tensor, ob: torch.Tensor, lb: torch.Tensor,
                wo: torch.Tensor, ln: torch.Tensor, wg: torch.Tensor, wu: torch.Tensor, wd: torch.Tensor) -> torch.Tensor:
        n = hidden.shape[0]
        top = torch.maximum(la, lb)
        wa = torch.exp(la - top).squeeze(0).transpose(0, 1).unsqueeze(-1)  # (N, heads, 1)
        wb = torch.exp(lb - top).squeeze(0).transpose(0, 1).unsqueeze(-1)
        attn = ((oa.float() * wa + ob.float() * wb) / (wa + wb)).to(hidden.dtype)
        hidden = hidden + F.linear(attn.reshape(n, -1), wo)
        x = rms_norm(hidden, ln, self.arch.eps)
        return hidden + F.linear(F.silu(F.linear(x, wg)) * F.linear(x, wu), wd)


class Rope:
    """cos and sin per position as Hugging Face's rotary embedding computes them: float32 angles from the
    inverse frequencies, times the attention scaling, cast to the model dtype."""

    def __init__(self, inv_freq: torch.Tensor, scaling: float = 1.0):
        self.inv_freq = inv_freq
        self.scaling = scaling

    @classmethod
    def default(cls, head_dim: int, theta: float) -> "Rope":
        return cls(1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim)))

    def __call__(self, positions: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions[:, None].float() * self.inv_freq.to(positions.device)[None]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        if self.scaling != 1.0:
            cos, sin = cos * self.scaling, sin * self.scaling
        return cos.to(like.dtype), sin.to(like.dtype)


Block = Callable[..., object]


class PrefixCache:
    """Keys and values of question prefixes, per layer, kept across calls: a later answer to a cached
    question runs only its own tokens. Keyed by the prefix's exact tokens (a cache belongs to one decoder,
    so to one model and dtype); least recently used entries are evicted past ``max_bytes``. A prefix's
    keys and values depend on its tokens alone (see the module docstring), so a hit gives the same bits
    as computing it again."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self._sizes: dict[tuple[int, ...], int] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.saved_tokens = 0  # prefix tokens not run thanks to hits
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, tokens: tuple[int, ...]) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        with self._lock:
            kv = self._entries.get(tokens)
            if kv is None:
                self.misses += 1
                return None
            self._entries.move_to_end(tokens)
            self.hits += 1
            self.saved_tokens += len(tokens)
            return kv

    def put(self, tokens: tuple[int, ...], kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        size = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)
        if size > self.max_bytes:
            return
        with self._lock:
            if tokens in self._entries:
                return
            self._entries[tokens] = kv
            self._sizes[tokens] = size
            self.bytes += size
            while self.bytes > self.max_bytes:
                old, _ = self._entries.popitem(last=False)
                self.bytes -= self._sizes.pop(old)
                self.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._sizes.clear()
            self.bytes = 0


class PackedDecoder:
    """Scores units packed in one row: ``scores(units)`` -> one float32 score per answer, in order.

    ``pre`` and ``post`` are the blocks to run: ``PreAttention``/``PostAttention`` themselves (eager) or
    their compiled forms (same inputs, same outputs)."""

    def __init__(self, arch: Arch, *, embed: torch.Tensor, layers: list[tuple[list[torch.Tensor], list[torch.Tensor]]],
                 norm: torch.Tensor, score: torch.Tensor, rope: Rope, pre: Block, post: Block,
                 prefix_cache: PrefixCache | None = None, tile: int = ROW_TILE):
        self.arch = arch
        self.tile = tile  # tokens per call of the blocks
        self.prefix_cache = prefix_cache
        self.embed = embed
        self.layers = layers
        self.norm = norm
        self.score = score
        self.rope = rope
        self.pre = pre
        self.post = post
        self.scaling = arch.head_dim ** -0.5
        # False only to measure what invariance costs (benchmarks): one block call over the whole pass and
        # one attention call for all of a unit's answers over its prefix; rewards then depend on the batch.
        self.invariant = True
        self.device = embed.device

    def layout(self, units: Sequence[Unit],
               cached: Sequence[bool] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token ids, positions and pooled rows of ``units`` packed back to back; the prefixes of units
        flagged in ``cached`` are left out (their answers keep their positions)."""
        ids: list[int] = []
        pos: list[int] = []
        rows: list[int] = []
        for n, u in enumerate(units):
            p = len(u.prefix)
            if not (cached and cached[n]):
                ids += u.prefix
                pos += range(p)
            for answer, at in zip(u.answers, u.pools):
                if not 0 <= at < len(answer):
                    raise ValueError(f"pool offset {at} outside an answer of {len(answer)} tokens")
                rows.append(len(ids) + at)
                ids += answer
                pos += range(p, p + len(answer))
        dev = self.device
        return (torch.as_tensor(ids, dtype=torch.long, device=dev), torch.as_tensor(pos, dtype=torch.long, device=dev),
                torch.as_tensor(rows, dtype=torch.long, device=dev))

    def hidden_states(self, units: Sequence[Unit]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-final-norm hidden states (N, hidden) of every packed token, and the pooled rows."""
        cache = self.prefix_cache if self.invariant else None
        kvs = [cache.get(tuple(u.prefix)) if cache is not None and len(u.prefix) else None for u in units]
        ids, pos, rows = self.layout(units, [kv is not None for kv in kvs])
        n = ids.shape[0]
        tile = self.tile if self.invariant else max(n, 2)  # the compiled blocks take 2 tokens or more
        tiles = range(0, -(-n // tile) * tile, tile)
        pad = len(tiles) * tile - n
        if pad:  # padding rows (token 0 at position 0) are computed and never read
            ids, pos = F.pad(ids, (0, pad)), F.pad(pos, (0, pad))
        hidden = self.embed[ids]
        cos, sin = self.rope(pos, hidden)
        spans = list(_spans(units, kvs))
        made: dict[int, list] = {}  # unit index -> the keys and values of its prefix, per layer so far
        for layer, (pre_w, post_w) in enumerate(self.layers):
            qkv = [self.pre(hidden[t:t + tile], cos[t:t + tile], sin[t:t + tile], *pre_w) for t in tiles]
            q, k, v = (torch.cat(parts, dim=2) for parts in zip(*qkv))
            oa, la, ob, lb = self.attend(q, k, v, spans, pad, layer, made if cache is not None else None)
            # Compiled blocks take their inputs contiguous, as exported: slices of la/lb along the token
            # axis are not.
            hidden = torch.cat([self.post(hidden[t:t + tile], oa[t:t + tile], la[:, :, t:t + tile].contiguous(),
                                          ob[t:t + tile], lb[:, :, t:t + tile].contiguous(), *post_w) for t in tiles])
        if cache is not None:
            for i, kv in made.items():
                cache.put(tuple(units[i].prefix), kv)
        return hidden, rows

    def scores(self, units: Sequence[Unit]) -> torch.Tensor:
        from codescaler.kernels.last_token_pool import pool

        with torch.inference_mode():
            hidden, rows = self.hidden_states(units)
            # One row per call of the score head: its GEMM then has one shape whatever the pass holds.
            if not self.invariant:
                return pool(hidden, rows, self.norm, self.score, self.arch.eps)
            return torch.cat([pool(hidden, rows[i:i + 1], self.norm, self.score, self.arch.eps)
                              for i in range(rows.shape[0])]) if rows.numel() else rows.float()

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spans: list[Span], pad: int = 0,
               layer: int = 0, made: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attention of every packed token as two halves (see ``PostAttention``): per unit, the prefix
        causally over itself; each answer over the prefix (half a) and causally over itself (half b).
        A prefix's keys and values are taken from the cache (its rows are not in the pass) or copied out
        contiguous, recorded in ``made`` for the cache, and used in that form either way, so a hit and
        a miss run the very same calls. Returns oa, la, ob, lb in token order, ``pad`` neutral rows
        (output 0) appended."""
        heads, d = q.shape[1], q.shape[3]
        flash = _flash_cpu if q.device.type == "cpu" and _flash_cpu is not None else _attention_with_lse
        a_out, a_lse, b_out, b_lse = [], [], [], []

        def none(n: int) -> None:  # the empty half of n tokens
            b_out.append(q.new_zeros(n, heads, d))
            b_lse.append(torch.full((1, heads, n), float("-inf"), device=q.device))

        def run(qs: slice, ks: torch.Tensor, vs: torch.Tensor, causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
            o, lse = flash(q[:, :, qs], ks, vs, 0.0, causal, scale=self.scaling)[:2]
            return o.transpose(1, 2)[0], lse  # (n, heads, d): flash's output is laid out that way

        for unit, (start, p, lengths, kv) in enumerate(spans):
            at = start
            pk = pv = None
            if p and kv is not None:
                pk, pv = kv[layer]
            elif p:
                prefix = slice(start, start + p)
                pk, pv = k[:, :, prefix].contiguous(), v[:, :, prefix].contiguous()
                if made is not None and self.invariant:
                    made.setdefault(unit, []).append((pk, pv))
                o, lse = run(prefix, pk, pv, True)
                a_out.append(o)
                a_lse.append(lse)
                none(p)
                at += p
            if p and not self.invariant:
                o, lse = run(slice(at, at + sum(lengths)), pk, pv, False)
                a_out.append(o)
                a_lse.append(lse)
            for n in lengths:
                s = slice(at, at + n)
                if p and self.invariant:
                    o, lse = run(s, pk, pv, False)
                    a_out.append(o)
                    a_lse.append(lse)
                o, lse = run(s, k[:, :, s], v[:, :, s], True)
                (b_out if p else a_out).append(o)
                (b_lse if p else a_lse).append(lse)
                if not p:
                    none(n)
                at += n
        if pad:
            a_out.append(q.new_zeros(pad, heads, d))
            a_lse.append(torch.zeros((1, heads, pad), device=q.device))
            none(pad)
        return (torch.cat(a_out), torch.cat(a_lse, dim=2).float(), torch.cat(b_out), torch.cat(b_lse, dim=2).float())

def _spans(units: Sequence[Unit], kvs: Sequence[list | None] | None = None) -> Iterator[Span]:
    """(start, prefix length, answer lengths, cached prefix keys/values or None) of each unit in the
    packed row; a cached prefix takes no rows."""
    start = 0
    for n, u in enumerate(units):
        lengths = [len(a) for a in u.answers]
        kv = kvs[n] if kvs else None
        yield start, len(u.prefix), lengths, kv
        start += (0 if kv is not None else len(u.prefix)) + sum(lengths)


def _attention_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout: float, causal: bool, *,
                        scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention with its log-sum-exps where there is no CPU flash kernel (CUDA): float32 scores,
    the same (output, lse) the flash kernel returns. q (1, heads, L, d); k, v (1, kv_heads, S, d)."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = (q.float() @ k.float().transpose(-1, -2)) * scale
    if causal:
        n, m = scores.shape[-2:]
        keep = torch.ones(n, m, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    out = (torch.exp(scores - lse.unsqueeze(-1)) @ v.float()).to(q.dtype)
    return out, lse
