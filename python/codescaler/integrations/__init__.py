"""codescaler.integrations: an HTTP client for ``codescaler serve`` and reward adapters for RL frameworks.

``client`` (:class:`~codescaler.integrations.client.Client`, ``AsyncClient``), ``trl``
(``CodeScalerReward`` and ``AsyncCodeScalerReward`` for ``GRPOTrainer``), ``verl`` (``compute_score``,
``compute_score_async``, ``compute_score_batch``) and ``openrlhf`` (``reward_func``). Each adapter scores
with a model in this process or with a server by URL; nothing here is imported by ``import codescaler``.
"""

# The adapters are submodules, each imported by name with the extra it needs (httpx, ray, torch): none is
# imported by `from codescaler.integrations import *`.
__all__: list[str] = []
