"""Every error the server answers, in one place: ``{"error": {"type": ..., "message": ...}}`` with the
message naming the field at fault. ``ApiError`` is what a route raises; ``HANDLERS`` turn it, a body that
fails validation, an ``InputError`` from the model, a 404/405 and anything unexpected into that body.
``ERRORS`` and ``GATE_ERRORS`` are the statuses the OpenAPI schema documents."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Coroutine, Sequence

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InputError
from .protocol import JSON_DEPTH, ErrorResponse

if TYPE_CHECKING:
    from fastapi.responses import Response


class ApiError(Exception):
    def __init__(self, status: int, type: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.type, self.headers = status, type, headers


def error_response(status: int, type: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": type, "message": message}}, status_code=status, headers=headers)


def _where(loc: Sequence[int | str]) -> str:
    """``("body", "items", 0, "question")`` -> ``items[0].question``. Pydantic's names of union members
    (``function-after[...]``, ``RerankDocument``) are left out: fields are lower-case words."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier() and part.islower():
            out += f".{part}" if out else part
    return out or "body"


def _validation_message(errors: Sequence[dict[str, Any]]) -> str:
    parts = []
    for e in errors[:5]:
        if e["type"] == "json_invalid":
            parts.append(f"the body is not valid JSON ({e.get('ctx', {}).get('error', 'decode error')} at "
                         f"character {e['loc'][-1]})")
        elif e["type"] == "missing" and tuple(e["loc"]) == ("body",):
            parts.append("the body is missing: send a JSON object")
        else:
            parts.append(f"{_where(e['loc'])}: {e['msg'].removeprefix('Value error, ')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


# What a scoring route answers besides 200; the Gate's 400 (Host) and 401 (API key) are added to every
# operation they apply to by the app's openapi(), from the server's settings.
ERRORS = {code: {"model": ErrorResponse, "description": what} for code, what in (
    (408, "the body did not arrive within --body-timeout"),
    (413, "body over --max-body-bytes or more responses than --max-items"),
    (415, "a Content-Type other than application/json, or a Content-Encoding (send the body uncompressed)"),
    (422, f"malformed body: not UTF-8, not JSON, nested deeper than {JSON_DEPTH}, a wrong type, a missing field, "
     "an unknown option value, text that is not valid Unicode"),
    (503, "queue full, model not loaded yet or shutting down; see Retry-After"),
    (504, "not answered within --timeout or X-Request-Timeout"),
)}
GATE_ERRORS = {
    400: "the Host header names no host in --allowed-hosts",
    401: "missing or wrong `Authorization: Bearer KEY`",
}



async def on_api_error(_request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.type, str(exc), exc.headers)


async def on_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(422, "invalid_request", _validation_message(exc.errors()))


async def on_input_error(_request: Request, exc: InputError) -> JSONResponse:
    return error_response(422, "invalid_request", str(exc))


async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI's "error parsing the body"
        cause = exc.__cause__
        return error_response(422, "invalid_request", f"the body is not valid JSON ({type(cause).__name__}: "
                              f"{cause})")
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = (f"no endpoint {request.method} {request.url.path}; see /docs" if exc.status_code in (404, 405)
               else str(exc.detail))
    return error_response(exc.status_code, kind, message, getattr(exc, "headers", None))


async def on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
    return error_response(500, "internal", f"{type(exc).__name__}: {exc}")


# The app's exception handlers (FastAPI(exception_handlers=HANDLERS)).
HANDLERS: dict[int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]] = {
    ApiError: on_api_error, RequestValidationError: on_invalid, InputError: on_input_error,
    StarletteHTTPException: on_http_error, Exception: on_unexpected}
