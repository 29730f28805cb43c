"""The CodeScaler reward as an OpenRLHF reward function file (``--reward.remote_url /path/to/this/file.py``).

OpenRLHF (0.11) imports this file by path and calls ``reward_func(queries, prompts, labels)`` with the
rendered prompt+response texts (special tokens kept), the rendered prompts and the dataset's labels,
from many threads at once, and reads ``{"rewards", "scores", "extra_logs"}``. The question and response
are split from the text exactly as the server's ``/get_reward`` does
(:mod:`codescaler.serve.chat_text`): the response is the query after its prompt, up to the first end
marker; the question is the prompt's last user turn exactly as rendered (a HumanEval prompt keeps its
final newline), so the reward is the one ``/v1/rewards`` gives the dataset's (question, response).
``labels`` are not used (the reward is execution-free). ``scores`` (OpenRLHF's dynamic-filtering value)
equal ``rewards``; ``extra_logs`` has ``valid_code`` and ``truncated`` per response.

The scorer is ``$CODESCALER_URL`` (a ``codescaler serve`` server; ``$CODESCALER_API_KEY``) or
``$CODESCALER_MODEL`` (a folder, an engine directory or ``tiny``, loaded once per process, concurrent
calls merged into one model call). A server that misses the client's deadline, cannot be reached or stays
busy gives its queries the fallback reward 0.0 (counted and logged by the client) rather than failing
the step. With a server and no API key, ``--reward.remote_url http://HOST:PORT/get_reward`` reaches the
same reward without this file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from codescaler.errors import InputError
from codescaler.integrations.scorer import shared_scorer
from codescaler.serve.chat_text import split_query

if TYPE_CHECKING:
    import torch


def reward_func(queries: list[str], prompts: list[str] | None = None, labels: object = None,
                **kwargs: Any) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
    """OpenRLHF's reward function: one reward per query, as tensors."""
    import torch

    if prompts is not None and len(prompts) != len(queries):
        raise InputError(f"prompts has {len(prompts)} items but queries has {len(queries)}")
    pairs = []
    for i, query in enumerate(queries):
        try:
            pairs.append(split_query(query, None if prompts is None else prompts[i]))
        except InputError as exc:
            raise InputError(f"queries[{i}]: {exc}") from None
    rewards = shared_scorer().score([q for q, _ in pairs], [r for _, r in pairs])
    values = torch.tensor([r.reward for r in rewards], dtype=torch.float32)
    return {"rewards": values, "scores": values.clone(),
            "extra_logs": {"valid_code": torch.tensor([float(r.status == "ok") for r in rewards]),
                           "truncated": torch.tensor([float(r.truncated) for r in rewards])}}
