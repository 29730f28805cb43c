"""Where the RL adapters' rewards come from: a ``RewardModel`` in this process or a server by URL.

:func:`open_scorer` opens one for an adapter object that keeps it (TRL's ``CodeScalerReward``).
:func:`shared_scorer` opens one per process, from keyword arguments or the ``CODESCALER_URL`` /
``CODESCALER_MODEL`` / ``CODESCALER_API_KEY`` environment variables, for frameworks that call a plain
function once per item from many threads (verl's reward loop, OpenRLHF): an in-process model then sits
behind the server's batching scheduler, so concurrent calls become one merged model call, as they do in
the server. The adapters' text helpers (a prompt's question, a message's text) live here too.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Sequence

from codescaler import options as opts
from codescaler.errors import InputError

URL_ENV = "CODESCALER_URL"
MODEL_ENV = "CODESCALER_MODEL"
API_KEY_ENV = "CODESCALER_API_KEY"


def is_url(target: Any) -> bool:
    return isinstance(target, str) and target.startswith(("http://", "https://"))


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(per-call options, load options), each checked against the option table; unknown names are an
    :class:`InputError` naming the known ones."""
    checked = opts.checked({k: v for k, v in options.items() if v is not None})
    per_call = {k: v for k, v in checked.items() if k in opts.PER_CALL}
    return per_call, {k: v for k, v in checked.items() if k not in opts.PER_CALL}


def open_scorer(target, *, api_key: str | None = None, **load_options):
    """Something with ``RewardModel.score``'s signature: ``target`` itself when it already scores (a
    ``RewardModel``, a ``Client``), a :class:`~codescaler.integrations.client.Client` for an
    ``http(s)://`` URL, else ``RewardModel.from_pretrained(target, **load_options)`` (a model folder, an
    engine directory or ``"tiny"``)."""
    if hasattr(target, "score"):
        if load_options:
            raise InputError(f"options {sorted(load_options)} apply when loading a model; this one is already loaded")
        return target
    if is_url(target):
        if load_options:
            raise InputError(f"options {sorted(load_options)} apply to a model loaded here; a server at {target} "
                             "takes them as `codescaler serve` flags")
        from codescaler.integrations.client import Client

        return Client(target, api_key=api_key)
    if not isinstance(target, (str, Path)):
        raise TypeError(f"reward model must be a RewardModel, a Client, a path, 'tiny' or an http(s):// URL, "
                        f"got {type(target).__name__}")
    from codescaler.model import RewardModel

    return RewardModel.from_pretrained(target, **load_options)


class MergedModel:
    """A ``RewardModel`` behind the server's batching scheduler: ``score`` may be called from many threads
    at once, and calls that wait together run as one model call (one forward per unique answer, each
    question once)."""

    def __init__(self, model, *, window_s: float = 0.005, max_batch_items: int = 4096,
                 max_batch_tokens: int = 1 << 20):
        from codescaler.serve.scheduler import Scheduler

        self.model = model
        self.scheduler = Scheduler(model, window_s=window_s, max_batch_tokens=max_batch_tokens,
                                   max_batch_items=max_batch_items, max_queue=1 << 62)
        self.scheduler.start()
        self.scheduler.loaded.wait()
        if self.scheduler.error is not None:
            raise self.scheduler.error

    def score(self, questions: Sequence[str], responses: Sequence[str], **options) -> list:
        if not len(responses):
            return []
        return self.scheduler.submit(list(questions), list(responses), options).future.result().rewards


_shared: dict[tuple, Any] = {}
_shared_lock = threading.Lock()


def shared_scorer(*, url: str | None = None, model: str | None = None, api_key: str | None = None,
                  **load_options):
    """This process's scorer for ``url`` or ``model`` (else ``$CODESCALER_URL`` or ``$CODESCALER_MODEL``),
    opened on first use and shared by every later call with the same arguments."""
    if url is None and model is None:
        url, model = os.environ.get(URL_ENV) or None, os.environ.get(MODEL_ENV) or None
        where = f"${URL_ENV} and ${MODEL_ENV}"
    else:
        where = "url= and model="
    if (url is None) == (model is None):
        raise InputError(f"give exactly one of {where}: the URL of a `codescaler serve` server, or a reward "
                         "model folder, engine directory or 'tiny' to load in this process"
                         if url is None else f"{where} are both set ({url!r}, {model!r}); give one")
    if url is not None and not is_url(url):
        raise InputError(f"url must start with http:// or https://, got {url!r}")
    api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    key = (url, api_key) if url is not None else (str(model), tuple(sorted(load_options.items())))
    with _shared_lock:
        if key not in _shared:
            if url is not None:
                _shared[key] = open_scorer(url, api_key=api_key, **load_options)
            else:
                _shared[key] = MergedModel(open_scorer(model, **load_options))
        return _shared[key]


def text_of(message) -> str:
    """A completion or message as plain text: a string as is; a message's ``content`` (its text parts
    joined when multimodal); for a list of messages, the last one's."""
    if isinstance(message, list):
        return text_of(message[-1]) if message else ""
    if isinstance(message, dict):
        content = message.get("content") or ""
        if isinstance(content, list):
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return content
    return message


def question_of(prompt) -> str:
    """The question a prompt asks, as it was asked: a conversation's last user turn; for a text prompt,
    its last user turn as rendered when it is a rendered chat (ChatML, Llama-3, parsed as the server's
    ``/get_reward`` does), else the text unchanged."""
    from codescaler.serve.chat_text import last_user_turn

    if isinstance(prompt, list):
        users = [text_of(m) for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        if not users:
            raise InputError(f"the prompt has no user turn to take the question from: {prompt!r:.200}")
        return users[-1]
    if not isinstance(prompt, str):
        raise TypeError(f"a prompt must be str or a list of messages, got {type(prompt).__name__}")
    return last_user_turn(prompt)
