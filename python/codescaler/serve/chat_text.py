"""(question, response) from the text an RL framework sends: a policy's chat-template-rendered query,
optionally with the prompt it continued (OpenRLHF's remote reward model contract, ``/get_reward``; vLLM's
``/classify`` and ``/pooling`` ``input``), or a conversation as chat messages (their ``messages`` form).

The question and the response are passed through exactly as they were rendered: the question is the
text between the user turn's header and its end marker, byte for byte (a HumanEval prompt keeps its
final newline), as the trainer's dataset held it and as ``/v1/rewards`` would be sent it. The template's
own separators are not part of it. Rules, in order:

- End-of-text markers (``<|endoftext|>``, ``<|im_end|>``, ``<|eot_id|>``, ``<|end_of_text|>``) leading a
  query or a prompt are left padding and are dropped; a response ends at its first end marker.
- With a prompt: the query must start with it; the response is the rest. The question is the prompt's
  last user turn when the prompt is ChatML (``<|im_start|>user\\n...<|im_end|>``) or uses Llama-3 headers
  (``<|start_header_id|>user<|end_header_id|>\\n\\n...<|eot_id|>``); otherwise the whole prompt, as is.
- Without a prompt: the query must be ChatML or Llama-3. The response is the text after the last
  assistant header (``<|im_start|>assistant\\n``, ``<|start_header_id|>assistant<|end_header_id|>\\n\\n``), up
  to an optional end marker; the question is the last user turn before it.
- A leading ``<think>...</think>`` block and the newlines after it are dropped from the response, as
  Qwen3's chat template drops reasoning from assistant turns (``content.split('</think>')[-1].lstrip('\\n')``):
  the reward model judges the answer, and code drafted while thinking would otherwise count as extra
  code blocks.

A template that rewrites content (Llama-3's trims it) renders a different question than the dataset's;
what was rendered is what is scored.
"""

from __future__ import annotations

import re
from typing import Sequence

from ..errors import InputError

END_MARKERS = ("<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>")
# (user turn, assistant header) per chat format; a user turn's group is its content, byte for byte.
CHAT_FORMATS = {
    "chatml": (re.compile(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", re.DOTALL), "<|im_start|>assistant\n"),
    "llama3": (re.compile(r"<\|start_header_id\|>user<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>", re.DOTALL),
               "<|start_header_id|>assistant<|end_header_id|>\n\n"),
}
_ENDS = "|".join(re.escape(m) for m in END_MARKERS)
_PADDING = re.compile(rf"\A(?:{_ENDS})+")
_END = re.compile(_ENDS)
_THINK = re.compile(r"\A\s*<think>.*?</think>\n*", re.DOTALL)


def _unpadded(text: str) -> str:
    return _PADDING.sub("", text)


def _answer(text: str) -> str:
    """The response up to its first end marker, without a leading think block."""
    end = _END.search(text)
    return _THINK.sub("", text if end is None else text[:end.start()], count=1)


def last_user_turn(prompt: str) -> str:
    """The last user message of a ChatML or Llama-3 prompt as rendered, else the whole prompt as is."""
    for user, _assistant in CHAT_FORMATS.values():
        turns = user.findall(prompt)
        if turns:
            return turns[-1]
    return prompt


def split_query(query: str, prompt: str | None = None) -> tuple[str, str]:
    """(question, response) of one rendered query; ``prompt`` is the text the policy continued.

    Raises :class:`InputError` when the query does not start with its prompt, or when there is no
    prompt and the query is neither ChatML nor Llama-3.
    """
    query = _unpadded(query)
    if prompt is not None:
        prompt = _unpadded(prompt)
        if not query.startswith(prompt):
            raise InputError("the query does not start with its prompt")
        return last_user_turn(prompt), _answer(query[len(prompt):])
    for user, assistant in CHAT_FORMATS.values():
        at = query.rfind(assistant)
        turns = user.findall(query, 0, max(at, 0))
        if at >= 0 and turns:
            return turns[-1], _answer(query[at + len(assistant):])
    raise InputError("the query is neither ChatML nor Llama-3 (no user turn followed by an assistant header)")


def split_messages(turns: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """(question, response) of a conversation given as (role, text) turns, as :func:`split_query` splits
    its rendering: the response is the last assistant turn (up to an end marker, without a leading think
    block), the question the last user turn before it, as is. Raises :class:`InputError` when there is no
    assistant turn, or no user turn before it."""
    last = max((i for i, (role, _) in enumerate(turns) if role == "assistant"), default=None)
    if last is None:
        raise InputError("no assistant turn to score: the last assistant message is the response")
    users = [text for role, text in turns[:last] if role == "user"]
    if not users:
        raise InputError("no user turn before the last assistant turn: the last user message is the question")
    return users[-1], _answer(turns[last][1])
