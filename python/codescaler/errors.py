"""Typed errors raised by codescaler; each names the file, field or value at fault."""

import importlib


class CodeScalerError(Exception):
    """Base class of every error codescaler raises on purpose."""


class ModelLoadError(CodeScalerError):
    """A model directory cannot serve as a CodeScaler reward model (missing, wrong head, wrong labels)."""


class TemplateError(CodeScalerError):
    """The tokenizer has no chat template, or the template cannot render a (question, code) pair."""


class InputError(CodeScalerError, ValueError):
    """A request is malformed: wrong lengths, unknown policy or backend, bad JSON line."""


class EngineBuildError(CodeScalerError):
    """An engine cannot be built here (e.g. TensorRT without TensorRT or an NVIDIA GPU)."""


# A codescaler server's answers, as its clients (codescaler.integrations.client) raise them.
class ServerError(CodeScalerError):
    """The server answered with an error, or could not be reached. ``status`` is the HTTP status (None
    when there was no answer), ``type`` the server's error type."""

    def __init__(self, message: str, *, status: int | None = None, type: str | None = None):
        super().__init__(message)
        self.status = status
        self.type = type


class AuthenticationError(ServerError):
    """401: the server has an API key and the request did not carry it (``api_key=`` or
    ``CODESCALER_API_KEY``)."""


class RejectedRequestError(ServerError, InputError):
    """The server refused the request itself (422 malformed, 413 too large, 404 no such endpoint)."""


class ServerBusyError(ServerError):
    """The server stayed overloaded (503/429) through every retry."""


class ServerUnreachableError(ServerError):
    """No connection to the server through every retry."""


class ServerTimeoutError(ServerError):
    """No answer within the timeout (the client's, or the server's own: 504)."""


def require_extra(extra: str, modules: tuple[str, ...], what: str) -> None:
    """Fail, in one line naming the pip install to run, when a module of an optional extra cannot be
    imported; called before anything slow, such as loading a model."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise InputError(f"{what} needs the '{extra}' extra ({exc.name or name} is not installed): "
                             f"pip install 'codescaler[{extra}]'") from None
