"""Every error the API returns, as types, mapped once to an HTTP status and one JSON shape.

ApiError                    {"error": {"code", "message"}} with a status
├── BadRequest        400   malformed input the schema could not catch
├── Unauthorized      401   missing, forged or expired token
├── Forbidden         403   valid token, not allowed to do this
├── NotFound          404   no such Space / object
├── Gone              410   existed, has ended
├── TooManyRequests   429   rate limit hit (Retry-After)
└── Unavailable       503   try again later (Retry-After)

A database that cannot be reached (refused, timed out, connection lost, no pooled connection free
in time, SQLite busy past its timeout) is an unavailable dependency too: 503 + Retry-After, never
a 500 with a stack trace, whichever route met it.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

log = logging.getLogger(__name__)

# What the database driver raises when the database is down or overloaded, as opposed to a bug.
# asyncpg lets a refused or timed-out connect through as the built-in OSError subclasses.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection free within the pool timeout
    ConnectionError,
    TimeoutError,
)
DATABASE_RETRY_AFTER_S = 2


class ApiError(Exception):
    status = 500
    code = "internal"

    def __init__(
        self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class Unprocessable(ApiError):
    status, code = 422, "invalid_input"


class Gone(ApiError):
    status, code = 410, "gone"


class TooManyRequests(ApiError):
    status, code = 429, "rate_limited"


class Unavailable(ApiError):
    status, code = 503, "unavailable"


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def install(app: FastAPI) -> None:
    """Map every error, including the framework's own, to the one JSON error shape."""

    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = (
            f"{where}: {first.get('msg', 'invalid')}"
            if where
            else str(first.get("msg", "invalid input"))
        )
        return error_response(422, "invalid_input", message)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    async def on_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("%s %s: database unavailable: %r", request.method, request.url.path, exc)
        return error_response(
            503,
            "unavailable",
            "the database is not answering; try again shortly",
            {"Retry-After": str(DATABASE_RETRY_AFTER_S)},
        )

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
            return await on_unavailable(request, exc)  # the connection dropped mid-statement
        return error_response(500, "internal", "internal error; it has been logged")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    for unavailable in DATABASE_UNAVAILABLE:
        app.add_exception_handler(unavailable, on_unavailable)
    app.add_exception_handler(Exception, on_crash)
