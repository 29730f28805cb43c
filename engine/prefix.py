"""Shared-prefix scoring on torch: run a question once, then many answers as continuations of it.

``PrefixRunner`` re-expresses the decoder layers of a Hugging Face Qwen3 / Qwen2 / Llama model (same
weights, same operations, same rounding points) so that

- a prefix (the rendered question) runs once and its keys and values are kept;
- answers run packed back to back in one row, with no padding;
- attention computes only the useful blocks: every answer query against the prefix in one
  flash-attention call, and each answer causally against itself; the two softmax halves are merged
  exactly through their log-sum-exps. Attention work per answer is (prefix + answer) x answer.

With ``compile=True`` the elementwise work (RMSNorm, rotary embedding, SiLU-gating, the softmax merge)
is fused by ``torch.compile``; on CPU that elementwise work otherwise costs as much as the matmuls.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

_flash_cpu = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def rms_norm(x, weight, eps: float):
    """Hugging Face's RMSNorm: float32 statistics, cast back, then the weight in the input dtype."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def rotary(q, k, cos, sin):
    """Rotary embedding as Hugging Face applies it (``rotate_half`` convention); q, k: (1, heads, N, d)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)

    def rot(x):
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    return q * cos + rot(q) * sin, k * cos + rot(k) * sin


def silu_gate(gate, up):
    return F.silu(gate) * up


def merge(o1, l1, o2, l2):
    """Combine two attention halves over disjoint key sets from their outputs and log-sum-exps."""
    top = torch.maximum(l1, l2)
    w1 = torch.exp(l1 - top).unsqueeze(-1)
    w2 = torch.exp(l2 - top).unsqueeze(-1)
    return ((o1.float() * w1 + o2.float() * w2) / (w1 + w2)).to(o1.dtype)


@dataclass
class PrefixState:
    """Keys and values of a prefix, per layer, with the key heads already repeated for the query heads."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int


class PrefixRunner:
    """Prefill-once, answers-packed forward over the layers of ``scorer`` (a ``PooledScorer``)."""

    def __init__(self, scorer: nn.Module, *, compile: bool = False):
        self.scorer = scorer
        first = scorer.layers[0].self_attn
        self.heads = first.config.num_attention_heads
        self.kv_heads = first.config.num_key_value_heads
        self.head_dim = first.head_dim
        self.scaling = first.scaling
        for layer in scorer.layers:
            act = getattr(layer.mlp, "act_fn", None)
            if not isinstance(act, nn.SiLU) and type(act).__name__ not in ("SiLU", "SiLUActivation"):
                raise TypeError(f"unsupported MLP activation {type(act).__name__}; the prefix runner expects SiLU")
        fuse = (lambda f: torch.compile(f, dynamic=True)) if compile else (lambda f: f)
        self._rms, self._rotary, self._gate, self._merge = fuse(rms_norm), fuse(rotary), fuse(silu_gate), fuse(merge)

    def _qkv(self, layer, hidden, cos, sin):
        attn = layer.self_attn
        x = self._rms(hidden, layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon)
        n = hidden.shape[1]
        q = attn.q_proj(x).view(1, n, self.heads, self.head_dim)
        k = attn.k_proj(x).view(1, n, self.kv_heads, self.head_dim)
        v = attn.v_proj(x).view(1, n, self.kv_heads, self.head_dim).transpose(1, 2)
        if hasattr(attn, "q_norm"):  # Qwen3 normalises queries and keys per head
            q = self._rms(q, attn.q_norm.weight, attn.q_norm.variance_epsilon)
            k = self._rms(k, attn.k_norm.weight, attn.k_norm.variance_epsilon)
        q, k = self._rotary(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
        groups = self.heads // self.kv_heads
        if groups > 1:
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        return q, k, v

    def _finish(self, layer, hidden, attn_out):
        n = hidden.shape[1]
        hidden = hidden + layer.self_attn.o_proj(attn_out.transpose(1, 2).reshape(1, n, -1))
        post = layer.post_attention_layernorm
        x = self._rms(hidden, post.weight, post.variance_epsilon)
        mlp = layer.mlp
        return hidden + mlp.down_proj(self._gate(mlp.gate_proj(x), mlp.up_proj(x)))

    def _embed(self, ids, positions):
        hidden = self.scorer.embed_tokens(ids)
        cos, sin = self.scorer.rotary_emb(hidden, positions)
        return hidden, cos, sin

    def prefill(self, ids: torch.Tensor) -> PrefixState:
        """Run a prefix (1, P) causally and keep its keys and values."""
        p = ids.shape[1]
        hidden, cos, sin = self._embed(ids, torch.arange(p, device=ids.device).unsqueeze(0))
        keys, values = [], []
        for layer in self.scorer.layers:
            q, k, v = self._qkv(layer, hidden, cos, sin)
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scaling)
            hidden = self._finish(layer, hidden, out)
            keys.append(k)
            values.append(v)
        return PrefixState(keys, values, p)

    def answers(self, state: PrefixState, ids: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """Pre-norm hidden states (1, N, H) of answers packed back to back (``lengths`` tokens each) that
        each continue the prefix; no answer sees another."""
        p = state.length
        device = ids.device
        positions = torch.cat([p + torch.arange(n, device=device) for n in lengths]).unsqueeze(0)
        hidden, cos, sin = self._embed(ids, positions)
        split = _flash_cpu is not None and device.type == "cpu"
        mask = None if split else _block_mask(p, lengths, hidden.dtype, device)
        for i, layer in enumerate(self.scorer.layers):
            q, k, v = self._qkv(layer, hidden, cos, sin)
            kp, vp = state.keys[i], state.values[i]
            if split:
                out = self._split_attention(q, k, v, kp, vp, lengths)
            else:
                out = F.scaled_dot_product_attention(q, torch.cat([kp, k], 2), torch.cat([vp, v], 2),
                                                     attn_mask=mask, scale=self.scaling)
            hidden = self._finish(layer, hidden, out)
        return hidden

    def _split_attention(self, q, k, v, kp, vp, lengths):
        o1, l1 = _flash_cpu(q, kp, vp, 0.0, False, scale=self.scaling)[:2]
        outs, lses, start = [], [], 0
        for n in lengths:
            s = slice(start, start + n)
            o, lse = _flash_cpu(q[:, :, s], k[:, :, s], v[:, :, s], 0.0, True, scale=self.scaling)[:2]
            outs.append(o)
            lses.append(lse)
            start += n
        o2 = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]
        l2 = torch.cat(lses, dim=2) if len(lses) > 1 else lses[0]
        return self._merge(o1, l1, o2, l2)


def _block_mask(p: int, lengths: list[int], dtype, device) -> torch.Tensor:
    """Additive mask (1, 1, N, P + N): the prefix fully visible, each answer causal over itself only."""
    seg = torch.cat([torch.full((n,), i, device=device) for i, n in enumerate(lengths)])
    idx = torch.arange(len(seg), device=device)
    own = (seg.unsqueeze(0) == seg.unsqueeze(1)) & (idx.unsqueeze(0) <= idx.unsqueeze(1))
    allowed = torch.cat([torch.ones((len(seg), p), dtype=torch.bool, device=device), own], dim=1)
    zero = torch.zeros((), dtype=dtype, device=device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)[None, None]
