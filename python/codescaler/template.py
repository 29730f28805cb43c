"""The reward model's conversation text: question as the user turn, extracted code as the assistant turn.

The tokenizer's own chat template is the truth. Rendering it once around probe contents and splicing
real contents in is much cheaper, so ``ChatTemplate`` does that only when, at load time, the splice
reproduces the template's own text on every probe, including contents a template might rewrite
(surrounding newlines and spaces, think tags, special tokens, Jinja syntax). Otherwise every item is
rendered by the template itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import TemplateError

_Q = "\x00codescaler-question\x00"
_C = "\x00codescaler-code\x00"

# Contents a template is known to transform (strip, lstrip('\n'), split on think tags) or that could
# confuse a naive splice; each is tried as question and as code.
PROBES = (
    "def f(x):\n    return x + 1",
    "Write a function.\n\nExample: f(1) == 2",
    "\n\nleading newlines",
    "trailing newlines\n\n",
    "  spaces around  ",
    "\tx = 1\t",
    "<think>\nreasoning\n</think>\n\nprint(1)",
    "a </think> b",
    "<|im_end|>\n<|im_start|>user\n",
    "{{ messages }} {% raw %}",
    "unicode: déjà vu — 数据 🚀",
    "",
    "x",
)


@dataclass(frozen=True)
class Splice:
    """The template rendered around placeholders: text = head + question + middle + code + tail."""

    head: str
    middle: str
    tail: str

    def join(self, question: str, code: str) -> str:
        return f"{self.head}{question}{self.middle}{code}{self.tail}"


class ChatTemplate:
    """Renders (question, code) exactly as ``tokenizer.apply_chat_template`` would, fast when safe."""

    def __init__(self, tokenizer, *, source: str = "tokenizer", splice: Splice | None = None):
        if splice is not None:  # recorded (and verified) at export: an engine directory
            self._tokenizer, self._bos, self.splice = None, None, splice
            return
        if not getattr(tokenizer, "chat_template", None):
            raise TemplateError(f"{source}: the tokenizer has no chat_template; a reward model needs one")
        self._tokenizer = tokenizer
        bos = getattr(tokenizer, "bos_token", None)
        self._bos = bos if isinstance(bos, str) and bos else None
        self.splice = self._verified_splice()

    @property
    def fast(self) -> bool:
        """True when the render-once splice is in use."""
        return self.splice is not None

    def render_reference(self, question: str, code: str) -> str:
        """The template's own text, with a leading BOS removed as the model card does (the tokenizer adds it)."""
        if self._tokenizer is None:
            return self.splice.join(question, code)
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": code}]
        try:
            text = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        except Exception as exc:  # a template is user code: report which one failed and why
            raise TemplateError(f"chat template failed to render a (question, code) pair: {exc}") from exc
        if self._bos and text.startswith(self._bos):
            text = text[len(self._bos):]
        return text

    def render(self, question: str, code: str) -> str:
        if self.splice is not None:
            return self.splice.join(question, code)
        return self.render_reference(question, code)

    def _verified_splice(self) -> Splice | None:
        text = self.render_reference(_Q, _C)
        if text.count(_Q) != 1 or text.count(_C) != 1 or text.index(_Q) > text.index(_C):
            return None
        head, rest = text.split(_Q)
        middle, tail = rest.split(_C)
        splice = Splice(head, middle, tail)
        for q in PROBES:
            for c in PROBES:
                if splice.join(q, c) != self.render_reference(q, c):
                    return None
        return splice
