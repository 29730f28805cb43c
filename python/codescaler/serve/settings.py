"""The server's limits and batching knobs, one field per ``codescaler serve`` flag (no FastAPI import, so
building the command line stays cheap)."""

from __future__ import annotations

from dataclasses import dataclass

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
# What a server and its clients agree on besides the JSON bodies, named once for both sides:
API_KEY_ENV = "CODESCALER_API_KEY"  # where the server reads its API key and a client the key it sends
TIMEOUT_HEADER = "X-Request-Timeout"  # seconds the caller waits: the server drops work nobody waits for


@dataclass(frozen=True)
class ServeSettings:
    api_key: str | None = None                 # required as 'Authorization: Bearer KEY' when set
    batch_window_ms: float = 5.0               # how long the oldest waiting request waits for others
    batching: bool = True                      # False: one model call per request, no window
    max_batch_tokens_in_flight: int = 65536    # estimated tokens merged into one model call at most
    max_queue: int = 16384                     # items admitted and not yet answered, else 503
    max_body_bytes: int = 32 * 2**20           # else 413
    max_items: int = 4096                      # responses in one request, else 413; also caps a merged call
    timeout: float = 60.0                      # seconds from arrival to answer, else 504
    body_timeout: float = 30.0                 # seconds to receive a request's body once its headers are in, else 408
    limit_concurrency: int = 1024              # open connections and requests in flight (uvicorn's), else 503
    allowed_hosts: tuple[str, ...] | None = None  # Host header names served ('*.example.com' a suffix); None: any

    @staticmethod
    def default_allowed_hosts(listen: str) -> tuple[str, ...] | None:
        """Loopback names when listening on loopback, so a web page cannot reach a local server through a
        name it controls (DNS rebinding); any host otherwise."""
        import ipaddress

        name = listen.strip("[]")
        try:
            loopback = ipaddress.ip_address(name).is_loopback
        except ValueError:
            loopback = name == "localhost"
        if not loopback:
            return None
        own = f"[{name}]" if ":" in name else name
        return LOOPBACK_HOSTS + ((own,) if own not in LOOPBACK_HOSTS else ())
