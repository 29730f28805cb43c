"""codescaler: an execution-free reward engine for code (CodeScaler reward models, exact and fast)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import CodeScalerError, EngineBuildError, InputError, ModelLoadError, TemplateError
from .extract import Extraction, extract, extract_batch
from .model import BestOfN, CallStats, Reward, RewardModel
from .shape import shape, softplus
from .version import __version__

if TYPE_CHECKING:
    from .integrations.client import AsyncClient, Client


def __getattr__(name: str) -> type[Client] | type[AsyncClient]:
    """``codescaler.Client`` / ``codescaler.AsyncClient``, imported on first use so that ``import
    codescaler`` does not import httpx."""
    if name in ("Client", "AsyncClient"):
        from .integrations import client

        return getattr(client, name)
    raise AttributeError(f"module 'codescaler' has no attribute {name!r}")


# Client and AsyncClient are left out: `from codescaler import *` would then import httpx, which only the
# `client` extra installs.
__all__ = [
    "BestOfN",
    "CallStats",
    "CodeScalerError",
    "EngineBuildError",
    "Extraction",
    "InputError",
    "ModelLoadError",
    "Reward",
    "RewardModel",
    "TemplateError",
    "extract",
    "extract_batch",
    "shape",
    "softplus",
    "__version__",
]
