"""Where the RL adapters' rewards come from: a ``RewardModel`` in this process or a server by URL.

:func:`open_scorer` opens one for an adapter object that keeps it (TRL's ``CodeScalerReward``).
:func:`shared_scorer` opens one per process, from keyword arguments or the ``CODESCALER_URL`` /
``CODESCALER_MODEL`` / ``CODESCALER_API_KEY`` environment variables, for frameworks that call a plain
function once per item from many threads (verl's reward loop, OpenRLHF): an in-process model then sits
behind the server's batching scheduler, so concurrent calls become one merged model call, as they do in
the server. :func:`shared_async_scorer` is its coroutine twin for asynchronous reward loops (verl's
reward loop, TRL's async reward functions). A server's client takes ``client_options`` (``timeout``,
``fallback``: the adapters give 0.0 as the fallback reward, so a missed deadline never fails a step).
The adapters' text helpers (a prompt's question, a message's text) live here too.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence, TypeGuard

from codescaler import options as opts
from codescaler.errors import InputError
from codescaler.serve.settings import API_KEY_ENV

if TYPE_CHECKING:
    from codescaler.integrations.client import AsyncClient, Client
    from codescaler.model import Reward, RewardModel

URL_ENV = "CODESCALER_URL"
MODEL_ENV = "CODESCALER_MODEL"


class Scorer(Protocol):
    """What an adapter scores with: ``RewardModel.score``'s signature (a ``RewardModel``, a ``Client``, a
    :class:`MergedModel`)."""

    def score(self, questions: Sequence[str], responses: Sequence[str], *, policy: str | None = None,
              language: str | None = None, score_empty: bool | None = None,
              truncation: str | None = None) -> list[Reward]: ...


class AsyncScorer(Protocol):
    """:class:`Scorer` as a coroutine (an ``AsyncClient``, a :class:`ThreadedScorer`)."""

    async def score(self, questions: Sequence[str], responses: Sequence[str], *, policy: str | None = None,
                    language: str | None = None, score_empty: bool | None = None,
                    truncation: str | None = None) -> list[Reward]: ...


# What an adapter is given to score with: a scorer, a server's URL, a model folder, an engine directory or "tiny".
Target = Scorer | AsyncScorer | str | Path
# A prompt or a completion as RL frameworks hand it over: text, or a conversation of {"role", "content"} messages.
Prompt = str | list[dict[str, Any]]


def is_url(target: object) -> TypeGuard[str]:
    return isinstance(target, str) and target.startswith(("http://", "https://"))


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(per-call options, load options), each checked against the option table; unknown names are an
    :class:`InputError` naming the known ones."""
    return opts.split(options)


ADAPTER_CLIENT = {"fallback": 0.0}  # what the RL adapters give a server's client unless told otherwise


def _client_options(target: object, client_options: dict[str, Any] | None) -> dict[str, Any]:
    """``client_options`` over the adapters' defaults; an :class:`InputError` when they are given for a
    target that is not a server."""
    if client_options and not is_url(target):
        raise InputError(f"options {sorted(client_options)} apply to a server (an http(s):// URL), not to {target!r}")
    return {**ADAPTER_CLIENT, **(client_options or {})}


def open_scorer(target: Scorer | str | Path, *, api_key: str | None = None,
                client_options: dict[str, Any] | None = None, **load_options: Any) -> Scorer:
    """Something with ``RewardModel.score``'s signature: ``target`` itself when it already scores (a
    ``RewardModel``, a ``Client``), a :class:`~codescaler.integrations.client.Client` for an
    ``http(s)://`` URL, else ``RewardModel.from_pretrained(target, **load_options)`` (a model folder, an
    engine directory or ``"tiny"``)."""
    client_options = _client_options(target, client_options)
    if hasattr(target, "score"):
        if load_options:
            raise InputError(f"options {sorted(load_options)} apply when loading a model; this one is already loaded")
        return target
    if is_url(target):
        if load_options:
            raise InputError(f"options {sorted(load_options)} apply to a model loaded here; a server at {target} "
                             "takes them as `codescaler serve` flags")
        from codescaler.integrations.client import Client

        return Client(target, api_key=api_key, **client_options)
    if not isinstance(target, (str, Path)):
        raise TypeError(f"reward model must be a RewardModel, a Client, a path, 'tiny' or an http(s):// URL, "
                        f"got {type(target).__name__}")
    from codescaler.model import RewardModel

    return RewardModel.from_pretrained(target, **load_options)


class MergedModel:
    """A ``RewardModel`` behind the server's batching scheduler: ``score`` may be called from many threads
    at once, and calls that wait together run as one model call (one forward per unique answer, each
    question once)."""

    def __init__(self, model: RewardModel, *, window_s: float = 0.005, max_batch_items: int = 4096,
                 max_batch_tokens: int = 1 << 20) -> None:
        from codescaler.serve.scheduler import Scheduler

        self.model = model
        self.scheduler = Scheduler(model, window_s=window_s, max_batch_tokens=max_batch_tokens,
                                   max_batch_items=max_batch_items, max_queue=1 << 62)
        self.scheduler.start()
        self.scheduler.loaded.wait()
        if self.scheduler.error is not None:
            raise self.scheduler.error

    def score(self, questions: Sequence[str], responses: Sequence[str], **options: str | bool | None) -> list[Reward]:
        if not len(responses):
            return []
        return self.scheduler.submit(list(questions), list(responses), options).future.result().rewards


_shared: dict[tuple, Any] = {}
_shared_lock = threading.Lock()


def _source(url: str | None, model: str | None, api_key: str | None) -> tuple[str | None, str | None, str | None]:
    """(url, model, api_key) from the arguments, else from the environment; exactly one of url and model."""
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
    return url, model, api_key if api_key is not None else os.environ.get(API_KEY_ENV)


def _shared_model(model: str, load_options: dict[str, Any]) -> MergedModel:
    key = (str(model), tuple(sorted(load_options.items())))
    with _shared_lock:
        if key not in _shared:
            _shared[key] = MergedModel(open_scorer(model, **load_options))
        return _shared[key]


def shared_scorer(*, url: str | None = None, model: str | None = None, api_key: str | None = None,
                  client_options: dict[str, Any] | None = None, **load_options: Any) -> Client | MergedModel:
    """This process's scorer for ``url`` or ``model`` (else ``$CODESCALER_URL`` or ``$CODESCALER_MODEL``),
    opened on first use and shared by every later call with the same arguments."""
    url, model, api_key = _source(url, model, api_key)
    if url is None:
        _client_options(model, client_options)
        return _shared_model(model, load_options)
    key = (url, api_key, tuple(sorted((client_options or {}).items())))
    with _shared_lock:
        if key not in _shared:
            _shared[key] = open_scorer(url, api_key=api_key, client_options=client_options, **load_options)
        return _shared[key]


class ThreadedScorer:
    """An in-process scorer's ``score`` as a coroutine, run on the event loop's worker threads: the calls
    of concurrent coroutines wait together and, behind a :class:`MergedModel`, run as one model call."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer

    async def score(self, questions: Sequence[str], responses: Sequence[str],
                    **options: str | bool | None) -> list[Reward]:
        return await asyncio.to_thread(self.scorer.score, questions, responses, **options)


def open_async_scorer(target: Target, *, api_key: str | None = None, client_options: dict[str, Any] | None = None,
                      **load_options: Any) -> AsyncScorer:
    """:func:`open_scorer`'s coroutine twin: an :class:`~codescaler.integrations.client.AsyncClient` for
    an ``http(s)://`` URL (use it from one event loop), else the scorer :func:`open_scorer` opens, run on
    worker threads."""
    if is_url(target):
        if load_options:
            raise InputError(f"options {sorted(load_options)} apply to a model loaded here; a server at {target} "
                             "takes them as `codescaler serve` flags")
        from codescaler.integrations.client import AsyncClient

        return AsyncClient(target, api_key=api_key, **_client_options(target, client_options))
    if hasattr(target, "score") and asyncio.iscoroutinefunction(target.score):
        return target
    return ThreadedScorer(open_scorer(target, api_key=api_key, client_options=client_options, **load_options))


_shared_async: dict[tuple, Any] = {}


def shared_async_scorer(*, url: str | None = None, model: str | None = None, api_key: str | None = None,
                        client_options: dict[str, Any] | None = None,
                        **load_options: Any) -> AsyncClient | ThreadedScorer:
    """:func:`shared_scorer` for coroutines: for a server, one ``AsyncClient`` per event loop (a client
    belongs to the loop it was made on); for a model, this process's shared model on worker threads."""
    url, model, api_key = _source(url, model, api_key)
    if url is None:
        _client_options(model, client_options)
        return ThreadedScorer(_shared_model(model, load_options))
    key = (asyncio.get_running_loop(), url, api_key, tuple(sorted((client_options or {}).items())))
    with _shared_lock:
        if key not in _shared_async:
            _shared_async[key] = open_async_scorer(url, api_key=api_key, client_options=client_options,
                                                   **load_options)
        return _shared_async[key]


def text_of(message: Prompt | dict[str, Any]) -> str:
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


def question_of(prompt: Prompt) -> str:
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
