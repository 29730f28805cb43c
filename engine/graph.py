"""The scoring graph: a decoder forward over a general sequence layout, pooled before the final norm.

One forward serves padded batches, packed (padding-free) rows and shared-question groups. The layout is
five tensors:

- ``input_ids`` (B, T) int64 and ``position_ids`` (B, T) int64;
- ``segment_ids`` (B, T) int64: the segment each token belongs to (padding: a segment of its own, e.g. -1);
- ``prefix_ids`` (B, T) int64: a segment the token may also attend to (the question its answer shares),
  or its own segment when it shares nothing;
- ``pool_index`` (K,) int64: flat indices into the B*T tokens whose score is wanted.

Token i attends to token j of the same row iff j <= i and segment(j) is segment(i) or prefix(i). So a row
``[question][answer 1][answer 2]`` with the answers' prefix set to the question's segment scores both
answers against the question while each answer sees only the question and itself; positions of each
answer continue from the question's length. The pooled rows are gathered *before* the final RMSNorm, and
only they are normalised and projected by the score head.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

_flash_cpu = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def prefix_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention of packed answers that each continue one shared prefix, computing only useful blocks.

    One row holds the answers back to back, padding-free. ``key``/``value`` hold the prefix (its first
    ``prefix_length`` positions) followed by the answers' own. Every answer query attends to the whole
    prefix (one flash-attention call for all answers, no mask) and causally to its own answer (one call
    per answer); the two softmax halves are merged exactly through their log-sum-exps. Attention work
    per answer is (prefix + answer) x answer; no answer sees another.
    """
    p = kwargs["prefix_length"]
    lengths = kwargs["answer_lengths"]
    h = query.shape[1]
    groups = h // key.shape[1]
    if groups > 1:  # grouped-query attention: the flash kernel wants one key head per query head
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    o1, l1 = _flash_cpu(query, key[:, :, :p], value[:, :, :p], 0.0, False, scale=scaling)[:2]
    parts, lses = [], []
    start = 0
    for n in lengths:
        q, s = query[:, :, start:start + n], slice(p + start, p + start + n)
        o, lse = _flash_cpu(q, key[:, :, s], value[:, :, s], 0.0, True, scale=scaling)[:2]
        parts.append(o)
        lses.append(lse)
        start += n
    o2 = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]
    l2 = torch.cat(lses, dim=2) if len(lses) > 1 else lses[0]
    top = torch.maximum(l1, l2)
    w1 = torch.exp(l1 - top).unsqueeze(-1)
    w2 = torch.exp(l2 - top).unsqueeze(-1)
    out = (o1.float() * w1 + o2.float() * w2) / (w1 + w2)
    return out.to(query.dtype).transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register("codescaler_prefix", prefix_attention)


_register()


class PrefixCache:
    """The keys and values of one shared prefix, per layer, in the shape the attention layers use.

    Passed as ``past_key_values`` it first records the prefix (``update`` stores what it is given), then,
    once ``freeze(batch)`` is called, serves every row of a batch of answers: each layer's call returns the
    prefix's keys and values (broadcast over the batch) followed by the answers' own.
    """

    def __init__(self):
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}
        self.batch: int | None = None

    def freeze(self, batch: int) -> "PrefixCache":
        view = PrefixCache()
        view.keys, view.values, view.batch = self.keys, self.values, batch
        return view

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        if self.batch is None:
            self.keys[layer_idx], self.values[layer_idx] = key_states, value_states
            return key_states, value_states
        k, v = self.keys[layer_idx], self.values[layer_idx]
        shape = (self.batch, *k.shape[1:])
        return (torch.cat([k.expand(shape), key_states], dim=2), torch.cat([v.expand(shape), value_states], dim=2))

    @property
    def length(self) -> int:
        return next(iter(self.keys.values())).shape[2]


class PooledScorer(nn.Module):
    """Wraps a Hugging Face ``*ForSequenceClassification`` (Qwen3, Qwen2, Llama layout) as the scoring graph."""

    def __init__(self, model: nn.Module):
        super().__init__()
        base = getattr(model, model.base_model_prefix)
        for part in ("embed_tokens", "layers", "norm", "rotary_emb"):
            if not hasattr(base, part):
                raise TypeError(f"{type(model).__name__}: base model has no {part!r}; unsupported architecture")
        layer_types = getattr(base.config, "layer_types", None) or ()
        if "sliding_attention" in layer_types or getattr(base.config, "use_sliding_window", False):
            raise TypeError(f"{type(model).__name__}: sliding-window attention is not supported by the scoring graph")
        self.embed_tokens = base.embed_tokens
        self.layers = base.layers
        self.norm = base.norm
        self.rotary_emb = base.rotary_emb
        self.score = model.score

    def hidden_states(self, input_ids, position_ids, segment_ids, prefix_ids):
        """Pre-final-norm hidden states (B, T, H) of every token under the layout's attention rule."""
        hidden = self.embed_tokens(input_ids)
        t = input_ids.shape[1]
        pos = torch.arange(t, device=input_ids.device)
        causal = pos.unsqueeze(0) <= pos.unsqueeze(1)  # [i, j]: j <= i
        seg_j = segment_ids.unsqueeze(1)
        allowed = causal & ((segment_ids.unsqueeze(2) == seg_j) | (prefix_ids.unsqueeze(2) == seg_j))
        zero = torch.zeros((), dtype=hidden.dtype, device=hidden.device)
        neg = torch.full((), torch.finfo(hidden.dtype).min, dtype=hidden.dtype, device=hidden.device)
        mask = torch.where(allowed, zero, neg).unsqueeze(1)  # (B, 1, T, T), additive
        rope = self.rotary_emb(hidden, position_ids)
        for layer in self.layers:
            hidden = layer(hidden, attention_mask=mask, position_embeddings=rope, position_ids=position_ids)
        return hidden

    def prefill(self, prefix_ids: torch.Tensor) -> PrefixCache:
        """Run a shared prefix (1, P) once and keep its keys and values."""
        cache = PrefixCache()
        hidden = self.embed_tokens(prefix_ids)
        pos = torch.arange(prefix_ids.shape[1], device=prefix_ids.device).unsqueeze(0)
        rope = self.rotary_emb(hidden, pos)
        for layer in self.layers:
            hidden = layer(hidden, attention_mask=None, position_embeddings=rope, position_ids=pos,
                           past_key_values=cache, use_cache=True)
        return cache

    def hidden_after_prefix(self, cache: PrefixCache, input_ids: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """Pre-norm hidden states (1, N) of answers packed back to back (``lengths`` tokens each, no
        padding) that each continue the cached prefix.

        Answer tokens attend to the whole prefix and causally to their own answer; the answers never see
        each other, and each answer's positions continue from the prefix length.
        """
        p = cache.length
        device = input_ids.device
        hidden = self.embed_tokens(input_ids)
        pos = torch.cat([p + torch.arange(n, device=device) for n in lengths]).unsqueeze(0)
        rope = self.rotary_emb(hidden, pos)
        view = cache.freeze(1)
        split = _flash_cpu is not None and device.type == "cpu"
        if split:
            mask, extra = None, {"prefix_length": p, "answer_lengths": list(lengths)}
        else:  # a dense block mask: prefix fully visible, each answer causal over itself only
            seg = torch.cat([torch.full((n,), i, device=device) for i, n in enumerate(lengths)])
            idx = torch.arange(len(seg), device=device)
            own = (seg.unsqueeze(0) == seg.unsqueeze(1)) & (idx.unsqueeze(0) <= idx.unsqueeze(1))
            allowed = torch.cat([torch.ones((len(seg), p), dtype=torch.bool, device=device), own], dim=1)
            zero = torch.zeros((), dtype=hidden.dtype, device=device)
            neg = torch.full((), torch.finfo(hidden.dtype).min, dtype=hidden.dtype, device=device)
            mask, extra = torch.where(allowed, zero, neg)[None, None], {}
        with self._attention("codescaler_prefix" if split else None):
            for layer in self.layers:
                hidden = layer(hidden, attention_mask=mask, position_embeddings=rope, position_ids=pos,
                               past_key_values=view, use_cache=True, **extra)
        return hidden

    @contextlib.contextmanager
    def _attention(self, name: str | None):
        """Switch the layers' attention implementation for one forward pass."""
        if name is None:
            yield
            return
        configs = {id(layer.self_attn.config): layer.self_attn.config for layer in self.layers}
        saved = {k: c._attn_implementation for k, c in configs.items()}
        for c in configs.values():
            c._attn_implementation = name
        try:
            yield
        finally:
            for k, c in configs.items():
                c._attn_implementation = saved[k]

    def forward(self, input_ids, position_ids, segment_ids, prefix_ids, pool_index):
        hidden = self.hidden_states(input_ids, position_ids, segment_ids, prefix_ids)
        pooled = hidden.reshape(-1, hidden.shape[-1]).index_select(0, pool_index)
        return self.score(self.norm(pooled))[:, 0].float()
