"""The server's app factory: ``create_app`` builds the scheduler and puts it, the settings and the metrics on
``app.state``, includes the routes (``routes``), installs the error handlers (``errors``) and the Gate
(``middleware``), and documents in the OpenAPI schema what the Gate answers before any route.

The server never executes code and never opens a path named in a request. Bodies are JSON
(``Content-Type: application/json``, uncompressed); a Host allow-list keeps browser pages off a local server.
"""

from __future__ import annotations

import asyncio
import functools
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, AsyncIterator, Callable

from fastapi import FastAPI

from ..version import __version__
from .errors import GATE_ERRORS, HANDLERS
from .metrics import ServeMetrics
from .middleware import OPEN_PATHS, Gate
from .routes import router
from .scheduler import Scheduler
from .settings import ServeSettings

if TYPE_CHECKING:
    from ..model import RewardModel
    from .worker import ModelProcess


def create_app(model_or_factory: RewardModel | ModelProcess | Callable[[], RewardModel | ModelProcess],
               settings: ServeSettings | None = None, *,
               scheduler_class: Callable[..., Scheduler] = Scheduler) -> FastAPI:
    """The server's ASGI app. ``model_or_factory``: a ``RewardModel`` or a zero-argument callable
    returning one, loaded and warmed on the model thread at startup (``/health`` answers 503 until then).
    ``app.state.scheduler`` exposes the scheduler (``.loaded``, ``.error``, ``.model``); ``scheduler_class``
    takes ``Scheduler``'s arguments (Ray Serve's app passes one whose batches ``@serve.batch`` forms)."""
    settings = settings or ServeSettings()
    metrics = ServeMetrics()
    scheduler = scheduler_class(model_or_factory, window_s=settings.batch_window_ms / 1000 if settings.batching else 0.0,
                                max_batch_tokens=settings.max_batch_tokens_in_flight, max_batch_items=settings.max_items,
                                max_queue=settings.max_queue, merge=settings.batching, metrics=metrics)
    metrics.watch_prefix_cache(lambda: getattr(scheduler.model, "prefix_cache", None) if scheduler.ready else None)
    metrics.watch_reward_cache(lambda: getattr(scheduler.model, "reward_cache", None) if scheduler.ready else None)

    app = FastAPI(title="codescaler reward server", version=_version(), lifespan=_lifespan,
                  exception_handlers=HANDLERS, description="Execution-free rewards for code, batched across "
                  'requests. Errors are `{"error": {"type", "message"}}`.')
    app.state.scheduler = scheduler
    app.state.metrics = metrics
    app.state.settings = settings
    routes = [*app.routes, *router.routes]  # the documentation's and ours (included lazily by FastAPI)
    app.include_router(router)

    app.openapi = functools.partial(_openapi, app, settings)
    endpoints = frozenset(route.path for route in routes)
    posts = frozenset(route.path for route in routes if "POST" in getattr(route, "methods", ()))
    app.add_middleware(Gate, settings=settings, metrics=metrics, endpoints=endpoints, posts=posts)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The scheduler's model thread runs while the app serves; on shutdown it drains and stops."""
    scheduler = app.state.scheduler
    scheduler.start()
    try:
        yield
    finally:
        await asyncio.to_thread(scheduler.stop)


def _openapi(app: FastAPI, settings: ServeSettings) -> dict:
    """FastAPI's schema plus what the Gate answers before any route: 400 to a Host not allowed and, with an
    API key, the bearer scheme and 401 on every operation but the open ones."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
        if settings.api_key:
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {
                "type": "http", "scheme": "bearer", "description": "the server's --api-key (or $CODESCALER_API_KEY)"}}
        for path, operations in schema["paths"].items():
            for operation in operations.values():
                if settings.allowed_hosts is not None:
                    operation["responses"]["400"] = {"description": GATE_ERRORS[400], **error}
                if settings.api_key and path not in OPEN_PATHS:
                    operation["responses"]["401"] = {"description": GATE_ERRORS[401], **error}
                    operation["security"] = [{"bearer": []}]
    return app.openapi_schema


def _version() -> str:
    return __version__
