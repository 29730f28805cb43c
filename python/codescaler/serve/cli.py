"""``codescaler serve``: argument parsing and the uvicorn run; FastAPI is imported when the command runs."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Callable

from .settings import API_KEY_ENV

if TYPE_CHECKING:
    from types import FrameType

    import uvicorn

    from .scheduler import Scheduler

DRAIN_TIMEOUT_S = 25.0  # under Kubernetes' default 30 s grace period, with room to answer and exit


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    from ..options import add_arguments
    from .settings import ServeSettings

    d = ServeSettings()
    p = sub.add_parser(
        "serve", help="serve rewards over HTTP, batched across requests",
        description="Serve a reward model over HTTP: /v1/rewards, /v1/best_of_n, /v1/rerank (Cohere/Jina/vLLM\n"
        "contract), /get_reward (OpenRLHF), /health, /metrics (Prometheus), OpenAPI at /docs.\n"
        "Requests that arrive within the batch window are scored in one model call, so a GRPO group\n"
        "split across requests still runs its question once.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="'tiny' (the embedded demo model), a Hugging Face reward-model "
                   "folder or an engine directory from `codescaler export`")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s, loopback only)")
    p.add_argument("--port", type=int, default=8000, help="(default: %(default)s)")
    p.add_argument("--api-key", default=None, help=f"require 'Authorization: Bearer KEY' on every endpoint but "
                   f"/health and the docs; prefer ${API_KEY_ENV}: a flag is visible to every user in the process list")
    p.add_argument("--allowed-hosts", default=None, metavar="HOST[,HOST...]",
                   help="Host header names the server answers, else 400 ('*': any; '*.example.com': its subdomains); "
                   "default: localhost,127.0.0.1,[::1] when --host is loopback (so a web page cannot reach the "
                   "server through a name it controls), any otherwise")
    p.add_argument("--batch-window-ms", type=float, default=d.batch_window_ms,
                   help="how long the oldest waiting request waits for others to merge with (default: %(default)s)")
    p.add_argument("--no-batching", dest="batching", action="store_false",
                   help="one model call per request: no window, no merging across requests")
    p.add_argument("--max-batch-tokens-in-flight", type=int, default=d.max_batch_tokens_in_flight,
                   help="close a merged call at about this many tokens, estimated from text length (default: %(default)s)")
    p.add_argument("--max-queue", type=int, default=d.max_queue,
                   help="items admitted and not yet answered; past it requests get 503 with Retry-After "
                   "(default: %(default)s)")
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes, help="larger bodies get 413 (default: %(default)s)")
    p.add_argument("--max-items", type=int, default=d.max_items,
                   help="responses in one request; more get 413; also caps one merged call (default: %(default)s)")
    p.add_argument("--body-timeout", type=float, default=d.body_timeout,
                   help="seconds to receive a request's body once its headers are in, else 408 and the connection "
                   "is closed (default: %(default)s)")
    p.add_argument("--limit-concurrency", type=int, default=d.limit_concurrency,
                   help="open connections and requests in flight; past it uvicorn answers 503 (plain text) and "
                   "closes the connection (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=d.timeout,
                   help="seconds from arrival to answer, else 504; a request's X-Request-Timeout header may "
                   "lower it (default: %(default)s)")
    p.add_argument("--drain-timeout", type=float, default=DRAIN_TIMEOUT_S,
                   help="on SIGTERM or Ctrl-C: stop admitting (503), answer queued requests with 503, and give the "
                   "model call under way this many seconds to finish before exiting 0; a second signal exits at "
                   "once (default: %(default)s)")
    p.add_argument("--no-model-process", dest="model_process", action="store_false",
                   help="run the model on a thread of the server process instead of a process of its own (the "
                   "HTTP side then waits whenever the model holds the GIL: for debugging and comparison)")
    add_arguments(p)
    p.set_defaults(func=cmd_serve)


def _allowed_hosts(given: str | None, listen: str) -> tuple[str, ...] | None:
    from .settings import ServeSettings

    if given is None:
        return ServeSettings.default_allowed_hosts(listen)
    names = [h.strip().lower() for h in given.split(",") if h.strip()]
    if "*" in names:
        return None
    return tuple(f"[{h}]" if ":" in h and not h.startswith("[") else h for h in names)  # an IPv6 address


def cmd_serve(args: argparse.Namespace) -> int:
    import threading

    import uvicorn

    from ..errors import InputError
    from ..model import RewardModel
    from ..options import checked, from_args
    from .app import create_app
    from .settings import ServeSettings
    from .worker import ModelProcess

    for flag in ("max_batch_tokens_in_flight", "max_queue", "max_body_bytes", "max_items", "limit_concurrency"):
        if getattr(args, flag) < 1:
            raise InputError(f"--{flag.replace('_', '-')} must be a positive integer, got {getattr(args, flag)}")
    if args.batch_window_ms < 0 or args.timeout <= 0 or args.drain_timeout < 0:
        raise InputError("--batch-window-ms and --drain-timeout must be >= 0 and --timeout > 0")
    if args.body_timeout <= 0:
        raise InputError(f"--body-timeout must be > 0, got {args.body_timeout:g}")
    options = checked(from_args(args))  # a bad option fails before the port is taken
    if args.api_key:
        print(f"codescaler: warning: --api-key is visible to every user of this machine in the process list; set "
              f"${API_KEY_ENV} instead", file=sys.stderr, flush=True)
    settings = ServeSettings(api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
                             batch_window_ms=args.batch_window_ms, batching=args.batching,
                             max_batch_tokens_in_flight=args.max_batch_tokens_in_flight, max_queue=args.max_queue,
                             max_body_bytes=args.max_body_bytes, max_items=args.max_items, timeout=args.timeout,
                             body_timeout=args.body_timeout, limit_concurrency=args.limit_concurrency,
                             allowed_hosts=_allowed_hosts(args.allowed_hosts, args.host))
    if args.model_process:
        app = create_app(lambda: ModelProcess.start(args.model, options), settings)
    else:
        app = create_app(lambda: RewardModel.from_pretrained(args.model, **options), settings)
    scheduler = app.state.scheduler
    server = _DrainingServer(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                            access_log=False, timeout_graceful_shutdown=5,
                                            limit_concurrency=settings.limit_concurrency),
                             scheduler, args.drain_timeout)
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{args.port}"

    def announce() -> None:
        scheduler.loaded.wait()
        if scheduler.error is not None:
            server.should_exit = True
            return
        batching = (f"batching across requests within {args.batch_window_ms:g} ms" if args.batching
                    else "no batching across requests")
        auth = ", API key required" if settings.api_key else ""
        print(f"codescaler: serving {scheduler.model.describe()} at {url} ({batching}{auth}; docs at {url}/docs)",
              file=sys.stderr, flush=True)

    threading.Thread(target=announce, daemon=True).start()
    try:
        server.run()
    finally:
        scheduler.stop(0)  # the model process exits with the server, however the server ended
    if scheduler.error is not None:
        print(f"codescaler: error: {args.model}: cannot serve: {scheduler.error}", file=sys.stderr)
        return 2
    return 0


def _draining_server_class() -> Callable[[uvicorn.Config, Scheduler, float], uvicorn.Server]:
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """uvicorn's server, with a drain on the first SIGTERM or SIGINT: the scheduler stops admitting
        and answers what it cannot finish with 503 (JSON, Retry-After), the model call under way gets
        ``drain_s`` seconds, then uvicorn closes the connections (all answered by then) and the process
        exits 0. A second signal is uvicorn's own exit (at once on Ctrl-C)."""

        def __init__(self, config: uvicorn.Config, scheduler: Scheduler, drain_s: float) -> None:
            super().__init__(config)
            self.scheduler, self.drain_s, self.draining = scheduler, drain_s, False

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.draining:
                return super().handle_exit(sig, frame)
            self.draining = True
            import threading

            print(f"codescaler: draining (signal {sig}): new requests get 503; the model call under way has "
                  f"{self.drain_s:g} s to finish", file=sys.stderr, flush=True)
            threading.Thread(target=self._drain, name="codescaler-drain", daemon=True).start()

        def _drain(self) -> None:
            self.scheduler.stop(self.drain_s)
            self.should_exit = True

    return DrainingServer


def _DrainingServer(config: uvicorn.Config, scheduler: Scheduler, drain_s: float) -> uvicorn.Server:
    return _draining_server_class()(config, scheduler, drain_s)
