"""The CodeScaler reward as a verl custom reward function (``reward.custom_reward_function``).

verl (0.7 and later) loads it with ``path=pkg://codescaler.integrations.verl`` (older versions: the path of
this file) and calls ``compute_score(data_source=, solution_str=, ground_truth=, extra_info=,
**reward_kwargs)`` once per response, many at a time from its reward-loop threads; verl's
``BatchRewardManager`` (``reward_model.reward_manager=batch``, before the reward loop became the default)
calls ``compute_score_batch(data_sources=, solution_strs=, ground_truths=, extra_infos=, **reward_kwargs)``
once per batch. Both return the CodeScaler reward: 0.0 without valid code, else softplus of the raw score.
``compute_score_async`` has ``compute_score``'s signature as a coroutine: verl's reward loop awaits a
coroutine function on its event loop (``name=compute_score_async``) instead of running it on a thread,
so thousands of per-sample requests wait concurrently and the server merges them into its batches.

- The question is ``extra_info["question"]`` (verl's example preprocessors write it), else
  ``extra_info["prompt"]`` (a string, or chat messages whose last user turn is taken), passed as is:
  whitespace and newlines are part of the question.
- ``ground_truth`` and ``data_source`` are not used: the reward is execution-free.
- The scorer comes from ``reward_kwargs``: ``url`` (a ``codescaler serve`` server, with ``api_key``) or
  ``model`` (a folder, an engine directory or ``tiny``, loaded once per process), else from
  ``$CODESCALER_URL`` / ``$CODESCALER_MODEL`` (``$CODESCALER_API_KEY``). The per-call options
  (``policy``, ``language``, ``truncation``, ``score_empty``) and, for ``model``, the load options
  (``dtype``, ``max_length``, ...) are ``reward_kwargs`` too. Concurrent per-response calls are merged
  into one model call, in the server or, for ``model``, by the same scheduler in this process.
- With ``url``, ``timeout`` (seconds per request, retries included; default 300) and ``fallback`` (the
  reward on a missed deadline, no server or a busy one; default 0.0, None allowed) are ``reward_kwargs``
  too: a slow or lost server never raises into the training step; the fallbacks are counted on the
  client (``shared_scorer(url=...).fallbacks``) and logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

from codescaler.errors import InputError
from codescaler.integrations.scorer import question_of, shared_async_scorer, shared_scorer, split_options

if TYPE_CHECKING:
    from codescaler.integrations.scorer import AsyncScorer, Scorer

S = TypeVar("S", "Scorer", "AsyncScorer")  # a blocking or a coroutine scorer

QUESTION_KEYS = ("question", "prompt")
CLIENT_KWARGS = ("timeout", "fallback")
# Keyword arguments verl itself adds to a custom reward function's call (its reward loop, when a
# reward-model router runs); they mean nothing here.
VERL_KWARGS = frozenset({"reward_router_address", "reward_model_tokenizer"})


def _question(extra_info: dict[str, Any] | None, i: int | None = None) -> str:
    where = "extra_info" if i is None else f"extra_infos[{i}]"
    if not isinstance(extra_info, dict):
        raise InputError(f"{where} must be a dict holding the question under 'question', got "
                         f"{type(extra_info).__name__}; write it in your parquet's extra_info column")
    for key in QUESTION_KEYS:
        value = extra_info.get(key)
        if value is not None and len(value):
            # parquet hands chat messages back as a numpy array of dicts
            return value if key == "question" else question_of(value if isinstance(value, str) else list(value))
    raise InputError(f"{where} has no 'question' (nor 'prompt') to score against (keys: {sorted(extra_info)}); "
                     "write the question into the extra_info column when preparing the dataset")


def _scorer_and_options(kwargs: dict[str, Any], opener: Callable[..., S]) -> tuple[S, dict[str, Any]]:
    kwargs = {k: v for k, v in kwargs.items() if k not in VERL_KWARGS}
    url, model, api_key = kwargs.pop("url", None), kwargs.pop("model", None), kwargs.pop("api_key", None)
    client = {k: kwargs.pop(k) for k in CLIENT_KWARGS if k in kwargs}
    per_call, load = split_options(kwargs)
    return opener(url=url, model=model, api_key=api_key, client_options=client, **load), per_call


def compute_score(data_source: str, solution_str: str, ground_truth: object = None,
                  extra_info: dict[str, Any] | None = None, **kwargs: Any) -> float:
    """The reward of one response (verl's per-item signature)."""
    scorer, per_call = _scorer_and_options(kwargs, shared_scorer)
    return scorer.score([_question(extra_info)], [solution_str], **per_call)[0].reward


async def compute_score_async(data_source: str, solution_str: str, ground_truth: object = None,
                              extra_info: dict[str, Any] | None = None, **kwargs: Any) -> float:
    """The reward of one response, as a coroutine (verl's reward loop awaits it)."""
    scorer, per_call = _scorer_and_options(kwargs, shared_async_scorer)
    return (await scorer.score([_question(extra_info)], [solution_str], **per_call))[0].reward


def compute_score_batch(data_sources: Sequence[str], solution_strs: Sequence[str], ground_truths: Sequence[object],
                        extra_infos: Sequence[dict[str, Any]], **kwargs: Any) -> list[float]:
    """The rewards of a batch of responses in one call (verl's ``BatchRewardManager`` signature)."""
    if len(extra_infos) != len(solution_strs):
        raise InputError(f"extra_infos has {len(extra_infos)} items but solution_strs has {len(solution_strs)}")
    scorer, per_call = _scorer_and_options(kwargs, shared_scorer)
    questions = [_question(info, i) for i, info in enumerate(extra_infos)]
    return [r.reward for r in scorer.score(questions, list(solution_strs), **per_call)]
