"""The reward model's conversation text: question as the user turn, extracted code as the assistant turn.

The tokenizer's own chat template is the truth. Rendering it once around placeholders and splicing real
contents in is much cheaper, and needs no Jinja (the C++ scorer reads the splice from an engine
directory), so ``ChatTemplate`` derives a *guarded* splice at load time, by probing only: head, middle
and tail around the contents, the characters the template strips from the code's start, and the tag
strings (taken from the template's own literals) whose presence makes the template render differently.
Pairs containing one of those are rendered by the template itself; a template that rewrites contents
any other way gets no splice at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .errors import TemplateError

_Q = "\x00codescaler-question\x00"
_C = "\x00codescaler-code\x00"

# Contents a template is known to transform (strip, lstrip('\n'), split on think tags) or that could
# confuse a naive splice; each is tried as question and as code, with every other probe.
PROBES = (
    "def f(x):\n    return x + 1",
    "Write a function.\n\nExample: f(1) == 2",
    "\n\nleading newlines",
    "trailing newlines\n\n",
    "  spaces around  ",
    "\tx = 1\t",
    "<think>\nreasoning\n</think>\n\nprint(1)",
    "a </think> b",
    "a <think> b",
    "<|im_end|>\n<|im_start|>user\n",
    "{{ messages }} {% raw %}",
    "unicode: déjà vu — 数据 🚀",
    "",
    "x",
    "\n\n\nx\n",
    "\r\nx\r\n",
    " \n x",
    "\x0b\x0cx",
    "\u3000\xa0x",  # whitespace to str.strip() but not to an ASCII character set: such a strip is refused
)
# Probes derived from the template's literals are added after PROBES up to this many contents in all
# (every question is rendered with every code: MAX_PROBES**2 renders at load).
MAX_PROBES = 60
# Leading characters a template may strip from the code, tried in this order; ASCII only, so a reader
# of the recorded splice strips bytes.
CODE_LSTRIP = ("", "\n", "\r\n", " \n", " \t\n\r", " \t\n\r\x0b\x0c")
_TAG = re.compile(r"<[^<>\s]{1,64}>")
_LITERAL_PROBE_CHARS = 64


@dataclass(frozen=True)
class Splice:
    """The template rendered around placeholders: text = head + question + middle + code + tail, where the
    code loses its leading ``code_lstrip`` characters (as ``str.lstrip``), for every (question, code)
    pair that contains none of ``refuse``."""

    head: str
    middle: str
    tail: str
    code_lstrip: str = ""
    refuse: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "refuse", tuple(self.refuse))  # a manifest records a list

    def refused_by(self, question: str, code: str) -> str | None:
        """The refuse string the pair contains (the splice does not cover it), else None."""
        return _first_in(self.refuse, question, code)

    def covers(self, question: str, code: str) -> bool:
        return self.refused_by(question, code) is None

    def join(self, question: str, code: str) -> str:
        if self.code_lstrip:
            code = code.lstrip(self.code_lstrip)
        return f"{self.head}{question}{self.middle}{code}{self.tail}"


class ChatTemplate:
    """Renders (question, code) exactly as ``tokenizer.apply_chat_template`` would, fast when safe.

    ``splice`` is the render-once splice in use (None: every pair goes through the template) and
    ``reason`` says why there is none; ``probes`` is how many contents were probed at load.

    An engine directory passes the ``splice`` recorded (and verified) at export instead of a tokenizer, so
    loading it needs no Jinja and no transformers; ``reference`` then returns the tokenizer whose template
    renders the pairs a guarded splice refuses, called the first time such a pair comes (None: those
    pairs raise :class:`TemplateError`)."""

    def __init__(self, tokenizer: Any, *, source: str = "tokenizer", splice: Splice | None = None,
                 reference: Callable[[], Any] | None = None):
        self._load_reference = reference
        if splice is not None:
            self._tokenizer, self._bos, self.splice, self.reason, self.probes = None, None, splice, None, 0
            return
        self._use(tokenizer, source)
        self.splice, self.reason = self._verified_splice()

    def _use(self, tokenizer: Any, source: str) -> None:
        """Render with ``tokenizer``'s chat template (its BOS, if any, is removed from the texts)."""
        if not getattr(tokenizer, "chat_template", None):
            raise TemplateError(f"{source}: the tokenizer has no chat_template; a reward model needs one")
        self._tokenizer = tokenizer
        bos = getattr(tokenizer, "bos_token", None)
        self._bos = bos if isinstance(bos, str) and bos else None

    @property
    def fast(self) -> bool:
        """True when the render-once splice is in use (for the pairs it covers)."""
        return self.splice is not None

    def render_reference(self, question: str, code: str) -> str:
        """The template's own text, with a leading BOS removed as the model card does (the tokenizer adds it)."""
        if self._tokenizer is None:
            refused = self.splice.refused_by(question, code)
            if refused is None:
                return self.splice.join(question, code)
            if self._load_reference is None:
                raise TemplateError(
                    f"the (question, code) pair contains {refused!r}, which the chat template renders "
                    "differently from the engine's recorded splice; without the tokenizer's template it "
                    "cannot be rendered")
            self._use(self._load_reference(), "the engine's tokenizer")
        return self._reference([(question, code)])[0]

    def render(self, question: str, code: str) -> str:
        if self.splice is not None and self.splice.covers(question, code):
            return self.splice.join(question, code)
        return self.render_reference(question, code)

    def _reference(self, pairs: list[tuple[str, str]]) -> list[str]:
        conversations = [[{"role": "user", "content": q}, {"role": "assistant", "content": c}] for q, c in pairs]
        try:
            texts = self._tokenizer.apply_chat_template(conversations, tokenize=False, add_generation_prompt=False)
        except Exception as exc:  # a template is user code: report which one failed and why
            raise TemplateError(f"chat template failed to render a (question, code) pair: {exc}") from exc
        if self._bos:
            texts = [t[len(self._bos):] if t.startswith(self._bos) else t for t in texts]
        return texts

    def _verified_splice(self) -> tuple[Splice | None, str | None]:
        """The splice that reproduces the template's own text on every probe pair it covers, with the
        fewest refuse strings; or None and the reason."""
        text = self._reference([(_Q, _C)])[0]
        if text.count(_Q) != 1 or text.count(_C) != 1 or text.index(_Q) > text.index(_C):
            return None, ("the chat template does not render the question and the code as given, once each, "
                          "in that order")
        head, rest = text.split(_Q)
        middle, tail = rest.split(_C)
        tags, contents = probe_contents(self._tokenizer.chat_template)
        self.probes = len(contents)
        pairs = [(q, c) for q in contents for c in contents]
        want = self._reference(pairs)
        best, uncovered = None, None
        for strip in CODE_LSTRIP:
            plain = Splice(head, middle, tail, strip)
            failing = [p for p, w in zip(pairs, want) if plain.join(*p) != w]
            if not failing:
                return plain, None
            loose = [p for p in failing if _first_in(tags, *p) is None]
            if loose:
                uncovered = uncovered or loose[0]
                continue
            refuse = _fewest_refuse(tags, failing)
            if best is None or len(refuse) < len(best.refuse):
                best = Splice(head, middle, tail, strip, refuse)
        if best is not None:
            return best, None
        q, c = (repr(s if len(s) <= 40 else s[:37] + "...") for s in uncovered)
        return None, (f"the chat template rewrites the contents it is given (question {q} with code {c} is not "
                      "spliced in as given, nor with only leading whitespace stripped from the code)")


def _first_in(strings: Sequence[str], question: str, code: str) -> str | None:
    """The first of ``strings`` that ``question`` or ``code`` contains, else None."""
    return next((s for s in strings if s in question or s in code), None)


def template_literals(source: str | dict[str, str]) -> list[str]:
    """The string literals and raw text of a Jinja template (``chat_template`` may be a dict of them),
    read by Jinja's lexer; nothing is evaluated."""
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    sources = list(source.values()) if isinstance(source, dict) else [source]
    lexer = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).lexer
    out = []
    for s in sources:
        try:
            out += [t.value for t in lexer.tokenize(s) if t.type in ("string", "data")]
        except TemplateSyntaxError:
            continue  # apply_chat_template will report it
    return out


def probe_contents(source: str | dict[str, str]) -> tuple[tuple[str, ...], list[str]]:
    """The tag strings of the template's literals (``<think>``, ``<|im_end|>``...: the candidates to
    refuse) and the contents to probe it with: PROBES, then each tag pair around text, each tag and
    short literal around and beside text, at most MAX_PROBES in all."""
    literals = template_literals(source)
    tags = list(dict.fromkeys(t for lit in literals for t in _TAG.findall(lit)))
    plain = [lit for lit in dict.fromkeys(literals) if lit and lit not in tags and len(lit) <= _LITERAL_PROBE_CHARS
             and not any(s in lit for s in ("{{", "{%", "{#"))]
    contents = list(PROBES)
    contents += [f"{t}\nx\n</{t[1:]}" for t in tags if not t.startswith("</") and f"</{t[1:]}" in tags]
    contents += [f"x {t} y" for t in tags]
    contents += [s for t in tags for s in (f"{t}x", f"x{t}")]
    contents += [s for lit in plain for s in (f"x {lit} y", f"{lit}x", f"x{lit}")]
    return tuple(tags), list(dict.fromkeys(contents))[:MAX_PROBES]


def _fewest_refuse(tags: tuple[str, ...], failing: list[tuple[str, str]]) -> tuple[str, ...]:
    """Tags such that every failing pair contains one, none of them superfluous: start from every tag a
    failing pair contains and drop, narrowest first, each one the others still cover without."""
    hits = {t: {i for i, (q, c) in enumerate(failing) if t in q or t in c} for t in tags}
    kept = [t for t in tags if hits[t]]
    for t in sorted(kept, key=lambda t: len(hits[t])):
        rest = [u for u in kept if u != t]
        if len(set().union(*(hits[u] for u in rest))) == len(failing):
            kept = rest
    return tuple(kept)
