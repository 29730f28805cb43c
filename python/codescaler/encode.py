"""Tokenization of rendered conversations, with upstream's right truncation and Hugging Face's pooling rule."""

from __future__ import annotations

from typing import Sequence

from .template import ChatTemplate


def pool_index(ids: Sequence[int], pad_id: int | None) -> int:
    """The position Hugging Face's ``*ForSequenceClassification`` reads the score at.

    It takes the rightmost token whose id is not the pad id (so a sequence that *ends* in the pad id,
    e.g. a literal ``<|endoftext|>`` cut by truncation, is read one token earlier), position 0 when every
    token is the pad id, and the last token when the model has no pad id.
    """
    if pad_id is None:
        return len(ids) - 1
    for i in range(len(ids) - 1, -1, -1):
        if ids[i] != pad_id:
            return i
    return 0


class Encoder:
    """(question, code) -> token ids, exactly as the model card's usage tokenizes them."""

    def __init__(self, tokenizer, template: ChatTemplate, max_length: int):
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        self.tokenizer = tokenizer
        self.template = template
        self.max_length = max_length
        # Upstream truncates on the right whatever a checkpoint's tokenizer config says.
        self.tokenizer.truncation_side = "right"

    def encode(self, questions: Sequence[str], codes: Sequence[str]) -> list[list[int]]:
        if not questions:
            return []
        texts = [self.template.render(q, c) for q, c in zip(questions, codes)]
        out = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        return [list(ids) for ids in out["input_ids"]]
