"""Tokenization of rendered conversations, with upstream's right truncation and Hugging Face's pooling rule,
and each conversation's question/answer boundary. A long text is tokenized only as far as max_length can
use: up to a cut where its tokens provably equal the whole text's first tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import re
import threading
from pathlib import Path

from .template import ChatTemplate

if TYPE_CHECKING:
    from tokenizers import Tokenizer


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

    @property
    def backend_tokenizer(self) -> Tokenizer:
        """The ``tokenizers.Tokenizer`` itself, as ``PreTrainedTokenizerFast`` names it."""
        return self._tok

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def added_tokens_decoder(self) -> dict:
        return self._tok.get_added_tokens_decoder()

    def __call__(self, texts: str | Sequence[str], *, truncation: bool = False, max_length: int | None = None,
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

    def __init__(self, tokenizer: Any, template: ChatTemplate, max_length: int, truncation: str = "right"):
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
        self._cuts = _added_token_ends(template, tokenizer)
        self._special_tail = _special_tail(tokenizer)
        self._added = _cut_safe(tokenizer)
        # A text longer than this is first tokenized up to a cut past it; 8 characters per token kept is
        # more than code or prose need, so one pass almost always holds enough tokens.
        self._window = 8 * max_length + 256

    def _ids(self, texts: list[str], truncate: bool) -> list[list[int]]:
        kw = {"truncation": True, "max_length": self.max_length} if truncate else {}
        return [list(ids) for ids in self.tokenizer(texts, **kw)["input_ids"]]

    def _heads(self, texts: Sequence[str], limit: int) -> tuple[list[str], list[list[int]]]:
        """Per text, the part of it tokenized and that part's ids: the whole text when it has at most
        ``limit`` tokens, else a prefix cut where its tokens are the whole text's first ones (``_cut_at``),
        holding more than ``limit`` of them. Equal prefixes (one question under many answers) are
        tokenized once."""
        pieces, ids = list(texts), [None] * len(texts)
        todo, want = list(range(len(texts))), self._window
        while todo:
            for i in todo:
                t = texts[i]
                pieces[i] = t if self._added is None or len(t) <= want else t[:_cut_at(t, want, self._added)]
            unique = list(dict.fromkeys(pieces[i] for i in todo))
            got = dict(zip(unique, self._ids(unique, truncate=False)))
            again = []
            for i in todo:
                ids[i] = got[pieces[i]]
                if len(ids[i]) <= limit and len(pieces[i]) < len(texts[i]):
                    again.append(i)  # the cut holds too few tokens to decide: cut further on
            todo, want = again, want * 2
        return pieces, ids

    def _truncated(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        """Each text's ids cut on the right at ``max_length``, and whether it had more tokens: exactly what
        tokenizing it whole, then again with the tokenizer's truncation, gives, tokenizing only a prefix of
        a long text (``_heads``)."""
        pieces, out = self._heads(texts, self.max_length)
        over = [len(ids) > self.max_length for ids in out]
        long = list(dict.fromkeys(p for p, o in zip(pieces, over) if o))
        cut = dict(zip(long, self._ids(long, truncate=True))) if long else {}
        return [cut[p] if o else ids for p, ids, o in zip(pieces, out, over)], over

    def encode(self, questions: Sequence[str], codes: Sequence[str]) -> list[list[int]]:
        return self._encode(questions, codes, None)[0]

    def encode_split(self, questions: Sequence[str], codes: Sequence[str],
                     truncation: str | None = None) -> tuple[list[list[int]], list[bool], list[int]]:
        """Token ids of each conversation, whether it had to be truncated to fit ``max_length``, and its
        boundary (see :meth:`boundaries`).

        ``truncation`` overrides the encoder's own rule for this call. Over-long conversations are
        re-tokenized with the tokenizer's own truncation (not sliced), so special tokens a tokenizer
        appends survive exactly as in Hugging Face's usage.
        """
        out, over, questions, texts = self._encode(questions, codes, truncation)
        return out, over, self.boundaries(questions, texts, out)

    def _encode(self, questions: Sequence[str], codes: Sequence[str],
                truncation: str | None) -> tuple[list[list[int]], list[bool], list[str], list[str]]:
        """(ids, truncated flags, the questions and rendered texts the ids are of) as ``encode_split``
        describes, without the boundaries."""
        truncation = self.truncation if truncation is None else truncation
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {truncation!r}")
        if not questions:
            return [], [], [], []
        questions = list(questions)
        texts = [self.template.render(q, c) for q, c in zip(questions, codes)]
        if truncation == "right":
            out, over = self._truncated(texts)
            return out, over, questions, texts
        # "question" needs each over-long conversation's full length: these are tokenized whole.
        out = self._ids(texts, truncate=False)
        over = [len(ids) > self.max_length for ids in out]
        for i in (i for i, o in enumerate(over) if o):
            out[i], questions[i], texts[i] = self._fit_question(questions[i], codes[i], len(out[i]) - self.max_length)
        return out, over, questions, texts

    def boundaries(self, questions: Sequence[str], texts: Sequence[str], ids: Sequence[Sequence[int]]) -> list[int]:
        """Per conversation, how many of its leading tokens render the question: the tokens of the text up
        to and including the chat template's last added token (``<|im_start|>``, ``</think>``...) before the
        code. Tokenizers split the text at added tokens before anything else, so these tokens depend on the
        question alone, and the same pair always gets the same boundary, alone or in any batch. 0 when the
        template has no added token there, or the text does not start as the splice says (a pair the
        template renders itself) at any of them."""
        splice = self.template.splice
        if splice is None or not self._cuts:
            return [0] * len(texts)
        prefixes = []
        for q, text in zip(questions, texts):
            found = None
            for c in self._cuts:
                p = splice.head + q + splice.middle[:c]
                if text.startswith(p):
                    found = p
                    break
            prefixes.append(found)
        unique = list(dict.fromkeys(p for p in prefixes if p is not None))
        tail = self._special_tail
        # A prefix of more than max_length + tail tokens leaves a head longer than any encoded conversation
        # (boundary 0), so it is tokenized only that far.
        pieces, heads = self._heads(unique, self.max_length + tail)
        prefix_ids = {p: i[:len(i) - tail] if piece == p else None for p, piece, i in zip(unique, pieces, heads)}
        out = []
        for p, full in zip(prefixes, ids):
            head = prefix_ids.get(p) if p is not None else None
            out.append(len(head) if head and list(full[:len(head)]) == head else 0)
        return out

    def _fit_question(self, question: str, code: str, overflow: int) -> tuple[list[int], str, str]:
        """Drop tokens from the end of the question until the conversation fits in max_length: its ids,
        the shortened question and the rendered text."""
        offsets = self.tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        cut = overflow
        while cut <= len(offsets):
            keep = len(offsets) - cut
            shorter = question[: offsets[keep][0]] if keep < len(offsets) else question
            text = self.template.render(shorter, code)
            ids = self._ids([text], truncate=False)[0]
            if len(ids) <= self.max_length:
                return ids, shorter, text
            cut += len(ids) - self.max_length  # token merges at the cut can cost a little more
        text = self.template.render("", code)
        return self._ids([text], truncate=True)[0], "", text


# The pre-tokenizer split of Qwen2, Qwen2.5 and Qwen3's tokenizer.json, the one ``_CUT`` is derived for.
_QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")

# Positions j of a text T where that split ends a piece whatever follows: the piece holding T[j-1] ends at
# j in T and in T[:j] alike (in T[:j] because the text ends, in T because T[j] cannot continue it), and no
# earlier piece looked further than T[j-1], or saw the same either way. T[j] is ASCII, so NFC never joins it
# to T[j-1]. Then T[:j]'s tokens are T's first ones (byte-level BPE works within a piece), provided no added
# token spans j (``_cut_at``). Cases:
_CUT = re.compile(
    r"(?<=[A-Za-z])(?=[ -@\[-`{-~])"  # a letter run ([^\r\n\p{L}\p{N}]?\p{L}+ or 's...) ends at a non-letter
    r"|(?<=[0-9])(?=[ -~])"           # a digit is a piece of its own (\p{N}), whatever follows
    r"|(?<=\n)(?=[!-~])"              # a run ending in newlines ends at a character that is not a space
    r"|(?<=[!-/:-@\[-`{-~])(?= )"     # a punctuation run ends at a space (not at a newline: [\r\n]* takes it)
)


def _cut_at(text: str, at: int, added: Sequence[str]) -> int:
    """The first position ``j >= at`` of ``text`` where ``_CUT`` matches outside every added token, so that the
    tokens of ``text[:j]`` are the first tokens of ``text``; ``len(text)`` when there is none."""
    while True:
        m = _CUT.search(text, at)
        if m is None:
            return len(text)
        j = m.start()
        if not any(text.find(a, max(0, j - len(a) + 1), j + len(a) - 1) >= 0 for a in added):
            return j
        at = j + 1


def _cut_safe(tokenizer: Any) -> tuple[str, ...] | None:
    """The tokenizer's added tokens when ``_CUT`` holds for it: a Hugging Face fast tokenizer with NFC or no
    normalizer, Qwen's split then byte-level BPE without dropout, and added tokens that strip nothing and
    are ASCII or matched before normalization. None for any other tokenizer, whose texts are tokenized whole."""
    import json

    backend = getattr(tokenizer, "backend_tokenizer", None)
    try:
        normalizer, pre = backend.normalizer, json.loads(backend.pre_tokenizer.__getstate__())
        if normalizer is not None and json.loads(normalizer.__getstate__()) != {"type": "NFC"}:
            return None
        split, level = pre["pretokenizers"]
        model = backend.model
        added = list(backend.get_added_tokens_decoder().values())
    except Exception:  # no backend, another pre-tokenizer's shape: tokenize whole texts
        return None
    if (pre["type"] != "Sequence" or split != {"type": "Split", "pattern": {"Regex": _QWEN_SPLIT},
                                               "behavior": "Isolated", "invert": False}
            or level.get("type") != "ByteLevel" or level.get("add_prefix_space") or level.get("use_regex")
            or type(model).__name__ != "BPE" or getattr(model, "dropout", None)):
        return None
    if any(t.lstrip or t.rstrip or t.single_word or (t.normalized and not t.content.isascii()) for t in added):
        return None
    return tuple(t.content for t in added if t.content)


def _added_token_ends(template: ChatTemplate, tokenizer: Any) -> list[int]:
    """End offsets in the template splice's middle of the tokenizer's added tokens there, last first."""
    splice = template.splice
    if splice is None:
        return []
    ends = set()
    for t in getattr(tokenizer, "added_tokens_decoder", {}).values():
        content = getattr(t, "content", str(t))
        at = splice.middle.find(content) if content else -1
        while at >= 0:
            ends.add(at + len(content))
            at = splice.middle.find(content, at + 1)
    return sorted(ends, reverse=True)


def _special_tail(tokenizer: Any) -> int:
    """How many special tokens the tokenizer's post-processor appends after a text (e.g. an EOS)."""
    bare = list(tokenizer("x", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("x")["input_ids"])
    at = next((i for i in range(len(full) - len(bare) + 1) if full[i:i + len(bare)] == bare), None)
    return 0 if at is None else len(full) - at - len(bare)
