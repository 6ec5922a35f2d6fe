"""Every error the API returns, as types, mapped once to an HTTP status and one JSON shape.

ApiError                    {"error": {"code", "message"}} with a status
├── BadRequest        400   malformed input the schema could not catch
├── Unauthorized      401   missing, forged or expired token
├── Forbidden         403   valid token, not allowed to do this
├── NotFound          404   no such Space / object
├── Gone              410   existed, has ended
├── TooManyRequests   429   rate limit hit (Retry-After); ratelimit.table.Limited maps here too
└── Unavailable       503   try again later (Retry-After)

Besides these, two kinds of exception from below the API are mapped here and nowhere else:
`ratelimit.table.Limited` → 429 + Retry-After, and a store that cannot be reached (Redis or the
database; `state.unavailable` says which driver errors those are) → 503 + Retry-After, or close
code 1013 ("try again later") on a WebSocket. Routes never catch them one by one.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from townhall.ratelimit.table import Limited
from townhall.state.unavailable import UNAVAILABLE_ERRORS, is_unavailable

log = logging.getLogger(__name__)

# A restarted Redis or database is usually back within seconds; clients add jitter.
STORE_RETRY_AFTER_S = 2
# RFC 6455 §7.4.1 registry: 1013 "Try Again Later".
WS_TRY_AGAIN_LATER = 1013


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

    async def on_limited(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Limited)
        return error_response(
            TooManyRequests.status,
            TooManyRequests.code,
            exc.limit.message,
            {"Retry-After": exc.retry_after},
        )

    async def on_store_error(conn: Request | WebSocket, exc: Exception) -> JSONResponse | None:
        if isinstance(conn, WebSocket):
            log.warning("%s: closing, a store is unreachable: %s", conn.url.path, exc)
            with contextlib.suppress(RuntimeError):  # the client may have gone already
                await conn.close(WS_TRY_AGAIN_LATER)
            return None
        if not is_unavailable(exc):  # e.g. an IntegrityError: a bug, not an outage
            log.error("%s %s failed", conn.method, conn.url.path, exc_info=exc)
            return error_response(500, "internal", "internal error; it has been logged")
        log.warning("%s %s: a store is unreachable: %s", conn.method, conn.url.path, exc)
        return error_response(
            Unavailable.status,
            "store_unavailable",
            "the service cannot reach its storage right now; try again shortly",
            {"Retry-After": str(STORE_RETRY_AFTER_S)},
        )

    async def on_crash(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal", "internal error; it has been logged")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(Limited, on_limited)
    for unreachable in UNAVAILABLE_ERRORS:
        app.add_exception_handler(unreachable, on_store_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)
