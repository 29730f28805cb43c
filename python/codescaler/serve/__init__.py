"""The HTTP reward server (``codescaler serve``): FastAPI routes over a scheduler that merges requests
arriving together into one ``RewardModel.score`` call. Needs the ``serve`` extra; importing this package
does not import FastAPI until ``create_app`` is used."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from .settings import ServeSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .app import create_app

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str) -> Callable[..., FastAPI]:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
