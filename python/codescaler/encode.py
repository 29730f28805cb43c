"""Tokenization of rendered conversations, with upstream's right truncation and Hugging Face's pooling rule."""

from __future__ import annotations

from typing import Sequence

import threading
from pathlib import Path

from .template import ChatTemplate


class RustTokenizer:
    """The part of a Hugging Face fast tokenizer the encoder uses, over the ``tokenizers`` library alone:
    what an engine directory loads, so that loading imports no transformers. Calls are what
    ``PreTrainedTokenizerFast.__call__`` does: ``encode_batch`` with the tokenizer's own truncation."""

    def __init__(self, path: Path, pad_token_id: int | None):
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_padding()
        self._tok.no_truncation()
        self._lock = threading.Lock()  # truncation is tokenizer state
        self.pad_token_id = pad_token_id
        self.truncation_side = "right"

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def __call__(self, texts, *, truncation: bool = False, max_length: int | None = None,
                 add_special_tokens: bool = True, return_offsets_mapping: bool = False) -> dict:
        one = isinstance(texts, str)
        with self._lock:
            if truncation:
                self._tok.enable_truncation(max_length, direction=self.truncation_side)
            try:
                encs = self._tok.encode_batch([texts] if one else list(texts), add_special_tokens=add_special_tokens)
            finally:
                self._tok.no_truncation()
        out = {"input_ids": [e.ids for e in encs]}
        if return_offsets_mapping:
            out["offset_mapping"] = [e.offsets for e in encs]
        return {k: v[0] for k, v in out.items()} if one else out


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


from .options import TRUNCATIONS


class Encoder:
    """(question, code) -> token ids, exactly as the model card's usage tokenizes them.

    ``truncation="right"`` (upstream's, the default) cuts the rendered conversation at ``max_length``
    tokens, so a long question can push the code out of view. ``truncation="question"`` instead
    shortens the question (keeping its beginning) until the whole conversation fits, so the code is
    always seen whole; when even an empty question does not fit, it falls back to right truncation.
    """

    def __init__(self, tokenizer, template: ChatTemplate, max_length: int, truncation: str = "right"):
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {truncation!r}")
        self.tokenizer = tokenizer
        self.template = template
        self.max_length = max_length
        self.truncation = truncation
        # Upstream truncates on the right whatever a checkpoint's tokenizer config says.
        self.tokenizer.truncation_side = "right"

    def _ids(self, texts: list[str], truncate: bool) -> list[list[int]]:
        kw = {"truncation": True, "max_length": self.max_length} if truncate else {}
        return [list(ids) for ids in self.tokenizer(texts, **kw)["input_ids"]]

    def encode(self, questions: Sequence[str], codes: Sequence[str]) -> list[list[int]]:
        return self.encode_flagged(questions, codes)[0]

    def encode_flagged(self, questions: Sequence[str], codes: Sequence[str],
                       truncation: str | None = None) -> tuple[list[list[int]], list[bool]]:
        """Token ids of each conversation, and whether it had to be truncated to fit ``max_length``.

        ``truncation`` overrides the encoder's own rule for this call. Over-long conversations are
        re-tokenized with the tokenizer's own truncation (not sliced), so special tokens a tokenizer
        appends survive exactly as in Hugging Face's usage.
        """
        truncation = self.truncation if truncation is None else truncation
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {truncation!r}")
        if not questions:
            return [], []
        texts = [self.template.render(q, c) for q, c in zip(questions, codes)]
        out = self._ids(texts, truncate=False)
        over = [len(ids) > self.max_length for ids in out]
        long = [i for i, o in enumerate(over) if o]
        if long and truncation == "right":
            for i, ids in zip(long, self._ids([texts[i] for i in long], truncate=True)):
                out[i] = ids
        for i in long if truncation == "question" else ():
            out[i] = self._fit_question(questions[i], codes[i], len(out[i]) - self.max_length)
        return out, over

    def _fit_question(self, question: str, code: str, overflow: int) -> list[int]:
        """Drop tokens from the end of the question until the conversation fits in max_length."""
        offsets = self.tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        cut = overflow
        while cut <= len(offsets):
            keep = len(offsets) - cut
            shorter = question[: offsets[keep][0]] if keep < len(offsets) else question
            ids = self._ids([self.template.render(shorter, code)], truncate=False)[0]
            if len(ids) <= self.max_length:
                return ids
            cut += len(ids) - self.max_length  # token merges at the cut can cost a little more
        return self._ids([self.template.render("", code)], truncate=True)[0]
