"""The CodeScaler reward as a TRL ``GRPOTrainer`` reward function, in this process or from a server.

TRL (1.x) calls a reward function once per generation batch as ``f(prompts=..., completions=...,
completion_ids=..., trainer_state=..., log_extra=..., log_metric=..., **dataset_columns)`` and takes one
float per completion. :class:`CodeScalerReward` reads the question from a ``question`` dataset column,
else (and in rows where it is None) from the prompt's last user turn, takes each completion's text (plain or
conversational), and scores the whole batch in one call: one forward per unique valid answer, each
question's prefix once per group, so the policy gets exactly the published reward (0.0 without valid
code, else softplus of the raw score). :class:`AsyncCodeScalerReward` is the same reward as a coroutine
(TRL awaits async reward functions on its own event loop, concurrently with the others).

From a server, a missed deadline (``timeout=``, seconds per request, retries included), no server or a
busy one gives the completions of that request the ``fallback`` reward (default 0.0; None becomes NaN
in TRL, i.e. no reward from this function) instead of failing the step; ``codescaler/fallback`` logs
their fraction and ``model.fallbacks`` counts them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from .client import FALLBACK_STATUSES
from .scorer import is_url, open_async_scorer, open_scorer, question_of, split_options, text_of

if TYPE_CHECKING:
    from ..model import Reward
    from .scorer import AsyncScorer, Prompt, Target

CLIENT_OPTIONS = ("timeout", "fallback")


class CodeScalerReward:
    """``reward(prompts, completions, question=None, **kw) -> list[float]`` for ``GRPOTrainer(reward_funcs=...)``.

    ``model``: a ``RewardModel``, a ``Client``, a model folder / engine directory / ``"tiny"`` (loaded
    here), or an ``http(s)://`` URL of a ``codescaler serve`` server (``api_key`` defaults to
    ``$CODESCALER_API_KEY``). ``options``: per-call options (``policy``, ``language``, ``truncation``,
    ``score_empty``) applied to every call; the other options of :mod:`codescaler.options` (``dtype``,
    ``max_length``, ...) are used to load a model given by path.

    For a server, ``timeout`` and ``fallback`` (default 0.0) are the client's (see the module's docstring).

    Each call logs ``codescaler/valid_code`` and ``codescaler/truncated`` (fractions of the batch; from a
    server also ``codescaler/fallback``) through TRL's ``log_metric`` and a ``code_status`` column through
    ``log_extra``; ``last`` keeps the call's
    :class:`~codescaler.Reward` objects (``code`` is ``""`` when scored by a server).
    """

    __name__ = "codescaler"  # the name TRL logs the reward under (rewards/codescaler/mean)

    _open = staticmethod(open_scorer)

    def __init__(self, model: Target, *, api_key: str | None = None, **options: Any) -> None:
        client = {k: options.pop(k) for k in CLIENT_OPTIONS if k in options}
        self.per_call, load = split_options(options)
        self.model = self._open(model, api_key=api_key, client_options=client, **load)
        self.remote = is_url(model)
        self._client = client
        self.calls = 0
        self.last: list[Reward] = []  # the Reward objects of the latest call, for logging and inspection

    def _pairs(self, prompts: Sequence[Prompt], completions: Sequence[Prompt],
               question: Sequence[str | None] | None) -> tuple[list[str], list[str]]:
        if question is None:
            question = [None] * len(prompts)
        questions = [q if q is not None else question_of(p) for q, p in zip(question, prompts)]
        return questions, [text_of(c) for c in completions]

    def _answer(self, rewards: list[Reward], kwargs: dict[str, Any]) -> list[float | None]:
        self.calls += 1
        self.last = rewards
        if rewards:
            log_metric = kwargs.get("log_metric")
            if log_metric is not None:
                log_metric("codescaler/valid_code", sum(r.status == "ok" for r in rewards) / len(rewards))
                log_metric("codescaler/truncated", sum(r.truncated for r in rewards) / len(rewards))
                if self.remote:
                    fallbacks = sum(r.status in FALLBACK_STATUSES for r in rewards)
                    log_metric("codescaler/fallback", fallbacks / len(rewards))
            log_extra = kwargs.get("log_extra")
            if log_extra is not None:
                log_extra("code_status", [r.status for r in rewards])
        return [r.reward for r in rewards]

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[Prompt],
                 question: Sequence[str | None] | None = None, **kwargs: Any) -> list[float | None]:
        questions, texts = self._pairs(prompts, completions, question)
        return self._answer(self.model.score(questions, texts, **self.per_call), kwargs)


class AsyncCodeScalerReward(CodeScalerReward):
    """:class:`CodeScalerReward` as a coroutine, for TRL's async reward functions: a server is reached by
    an ``AsyncClient`` (made on first use on TRL's event loop), a model loaded here runs on a worker thread.
    Same arguments, same rewards."""

    def __init__(self, model: Target, *, api_key: str | None = None, **options: Any) -> None:
        self._target, self._api_key = model, api_key
        super().__init__(model, api_key=api_key, **options)

    @staticmethod
    def _open(model: Target, *, api_key: str | None = None, client_options: dict[str, Any] | None = None,
              **load_options: Any) -> AsyncScorer | None:
        if is_url(model):  # checked now, opened on the first call
            open_scorer(model, api_key=api_key, client_options=client_options, **load_options).close()
            return None
        return open_async_scorer(model, api_key=api_key, client_options=client_options, **load_options)

    async def __call__(self, prompts: Sequence[Prompt], completions: Sequence[Prompt],
                       question: Sequence[str | None] | None = None, **kwargs: Any) -> list[float | None]:
        if self.model is None:  # an AsyncClient belongs to the loop it is made on: TRL's, known only now
            self.model = open_async_scorer(self._target, api_key=self._api_key, client_options=self._client)
        questions, texts = self._pairs(prompts, completions, question)
        return self._answer(await self.model.score(questions, texts, **self.per_call), kwargs)
