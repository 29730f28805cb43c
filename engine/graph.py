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

import torch
from torch import nn


class PooledScorer(nn.Module):
    """Wraps a Hugging Face ``*ForSequenceClassification`` (Qwen3, Qwen2, Llama layout) as the scoring graph."""

    def __init__(self, model: nn.Module) -> None:
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

    def hidden_states(self, input_ids: torch.Tensor, position_ids: torch.Tensor, segment_ids: torch.Tensor,
                      prefix_ids: torch.Tensor) -> torch.Tensor:
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

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, segment_ids: torch.Tensor,
                prefix_ids: torch.Tensor, pool_index: torch.Tensor) -> torch.Tensor:
        hidden = self.hidden_states(input_ids, position_ids, segment_ids, prefix_ids)
        pooled = hidden.reshape(-1, hidden.shape[-1]).index_select(0, pool_index)
        return self.score(self.norm(pooled))[:, 0].float()
