"""Every error the API returns, as types, mapped once to an HTTP status and one JSON shape.

ApiError                    {"error": {"code", "message"}} with a status
├── BadRequest        400   malformed input the schema could not catch
├── Unauthorized      401   missing, forged or expired token
├── Forbidden         403   valid token, not allowed to do this
├── NotFound          404   no such Space / object
├── Conflict          409   the state does not allow it (or changed meanwhile)
├── Gone              410   existed, has ended
├── Unprocessable     422   well-formed, but the values cannot be used
├── TooManyRequests   429   rate limit hit (Retry-After); ratelimit.table.Limited maps here too,
│                           and its QuotaExceeded (`quota_exceeded`: a storage budget used up)
├── Unavailable       503   try again later (Retry-After)
└── InsufficientStorage 507 a storage quota is used up (a clip past its Space's share)

Input the schema refuses (pydantic's RequestValidationError) answers 422 `invalid_input` with a
sentence written for people, never the validator's wording ("The password must be at least 8
characters long.", not "String should have at least 8 characters"), and the name of the field
it is about, `{"error": {"code", "message", "field"}}`, so that a page shows it next to that field.

Besides these, the exceptions from below the API are mapped here and nowhere else, so a route
awaits its command and never catches them one by one:
- `spaces.control.ControlError` (a refused command) → the status of its `kind` (`CONTROL_KINDS`),
  with the command's own code and sentence;
- `state.errors.RecordsError` that a command let through (`RECORDS_ERRORS`): a target removed or
  a record changed between a command's check and its write, someone banned or a stage filled
  meanwhile → 404 / 409 / 403 / 409, never a 500;
- `ratelimit.table.Limited` → 429 + Retry-After, with its code (`rate_limited`, `quota_exceeded`);
- a store that cannot be reached (Redis or the database; `state.unavailable` says which driver
  errors those are) → 503 + Retry-After, or close code 1013 ("try again later") on a WebSocket.

`ERROR_RESPONSES` documents the one JSON shape in the OpenAPI for every status a route can answer
besides its success, so a client generated from it knows the error body.
"""

from __future__ import annotations

import contextlib
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from townhall.ratelimit.table import Limited
from townhall.spaces.control import ControlError
from townhall.state import errors as records_errors
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
    """503: always with Retry-After (the store's few seconds unless the raiser knows better)."""

    status, code = 503, "unavailable"

    def __init__(
        self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        retry = {"Retry-After": str(STORE_RETRY_AFTER_S)}
        super().__init__(message, code=code, headers={**retry, **(headers or {})})


class InsufficientStorage(ApiError):
    status, code = 507, "insufficient_storage"


# A refused command's kind (spaces.control.ControlError) → its status; an unknown kind is a 409.
CONTROL_KINDS: dict[str, type[ApiError]] = {
    "not_found": NotFound,
    "forbidden": Forbidden,
    "conflict": Conflict,
    "invalid": Unprocessable,
    "gone": Gone,
    "unavailable": Unavailable,  # e.g. the queue of raised hands is full: later
}

# What the records raise on purpose, when a command let it through: almost always a race between
# the command's check and its write (another process removed the target, banned them, took the
# last seat). Most specific first (UsernameTaken is a Conflict); the base class catches the rest.
RECORDS_ERRORS: tuple[tuple[type[records_errors.RecordsError], type[ApiError], str, str], ...] = (
    (records_errors.UsernameTaken, Conflict, "username_taken", "that username is taken"),
    (
        records_errors.NotFound,
        NotFound,
        "gone_meanwhile",
        "that is no longer there; reload and try again",
    ),
    (records_errors.Banned, Forbidden, "banned", "that person is banned from this Space"),
    (
        records_errors.StageFull,
        Conflict,
        "stage_full",
        "every seat on the stage for that role is taken",
    ),
    (
        records_errors.RecordsError,
        Conflict,
        "changed_meanwhile",
        "it changed meanwhile; reload and try again",
    ),
)


def records_error(exc: records_errors.RecordsError) -> ApiError:
    """The API error a records error that escaped its command answers as."""
    _, answer, code, message = next(row for row in RECORDS_ERRORS if isinstance(exc, row[0]))
    return answer(message, code=code)


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None  # 422 only: the input field the message is about


class ErrorOut(BaseModel):
    """Every error the API answers: `{"error": {"code", "message"}}` (and `field` on a 422)."""

    error: ErrorBody


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def documented(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    """One error status as the OpenAPI shows it: the JSON error shape (and Retry-After)."""
    answer: dict[str, Any] = {"model": ErrorOut, "description": description}
    if retry_after:
        answer["headers"] = _RETRY_AFTER
    return answer


# The error statuses any API route may answer, documented once with the one JSON shape. 422 here
# replaces FastAPI's own validation schema, which is not what the API sends.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: documented("Malformed input"),
    401: documented("No identity, or an expired or forged token"),
    403: documented("Not allowed (not the host, banned, a guest where guests may not)"),
    404: documented("No such Space or object (a private Space without its code)"),
    409: documented("The Space's state does not allow it, or it changed meanwhile"),
    410: documented("It existed and is over (an ended Space, an expired recording)"),
    413: documented("The body is larger than this call takes (any call: the cap is checked first)"),
    422: documented("Input the schema refuses; `field` names the field"),
    429: documented(
        "A rate limit, or a storage quota used up (`quota_exceeded`): wait Retry-After seconds",
        retry_after=True,
    ),
    503: documented(
        "A store, or room for one more Space, is unavailable: retry after Retry-After",
        retry_after=True,
    ),
}


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    field: str | None = None,
) -> JSONResponse:
    error = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return JSONResponse({"error": error}, status_code=status, headers=headers)


# The fields people fill in, as a sentence names them; others are named by their JSON name.
_FIELD_NAMES = {
    "username": "The username",
    "password": "The password",
    "display_name": "The name",
    "title": "The title",
    "description": "The description",
    "visibility": "Who can find it",
    "scheduled_start": "The start time",
    "email": "The email address",
    "soon": "Remind me 10 minutes before",
    "record": "Record this Space",
    "captions": "Live captions",
    "max_speakers": "The number of speakers",
    "max_cohosts": "The number of co-hosts",
    "seconds": "The delay",
    "url": "The link",
    "role": "The role",
    "user_id": "The person",
    "emoji": "The reaction",
    "start_s": "The clip's start",
    "end_s": "The clip's end",
    "max_uses": "The number of uses",
    "expires_in_s": "The link's lifetime",
}
# Fields whose every fault means one thing to the person in front of the page.
_FIELD_SENTENCES = {
    "invite": "This invite link is not valid. Ask the host for a new one.",
    "key": "This browser's listener key is not valid: reload the page.",
    "sdp": "The browser's audio offer was not valid: reload the page and try again.",
}
# What a number of that field counts.
_FIELD_UNITS = {"seconds": "seconds", "start_s": "seconds", "end_s": "seconds"}
# Lifetimes in seconds, said in the largest whole unit ("7 days", not "604800 seconds").
_SPOKEN_DURATIONS = frozenset({"expires_in_s"})
_DURATION_UNITS = ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second"))
_WHERE = frozenset({"body", "query", "path", "header", "cookie"})
# A number out of range: pydantic's error type → (its bound in the context, how people say it).
_BOUNDS = {
    "greater_than_equal": ("ge", "must be at least"),
    "greater_than": ("gt", "must be more than"),
    "less_than_equal": ("le", "can be at most"),
    "less_than": ("lt", "must be less than"),
}


def _amount(value: Any, field: str | None) -> str:
    """30.0 → "30 seconds" for the delay; numbers as people write them."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if field in _SPOKEN_DURATIONS and isinstance(value, int) and value > 0:
        size, name = next((s, n) for s, n in _DURATION_UNITS if value % s == 0)
        count = value // size
        return f"{count} {name}{'' if count == 1 else 's'}"
    unit = _FIELD_UNITS.get(field or "")
    return f"{value} {unit}" if unit else str(value)


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else f"{text}."


def human_validation_message(error: dict[str, Any]) -> tuple[str, str | None]:
    """(a sentence for people, the field it is about) for one pydantic error."""
    path = [str(p) for p in error.get("loc", ()) if not isinstance(p, int) and p not in _WHERE]
    field = path[-1] if path else None
    if field in _FIELD_SENTENCES:
        return _FIELD_SENTENCES[field], field
    subject = _FIELD_NAMES.get(field or "", f"“{field}”" if field else "The request")
    kind = str(error.get("type", ""))
    ctx: dict[str, Any] = error.get("ctx") or {}
    if kind == "missing":
        text = f"{subject} is missing"
    elif kind == "string_too_short":
        n = int(ctx.get("min_length", 1))
        text = (
            f"{subject} cannot be empty"
            if n <= 1
            else f"{subject} must be at least {n} characters long"
        )
    elif kind == "string_too_long":
        text = f"{subject} can be at most {ctx.get('max_length')} characters long"
    elif kind == "string_pattern_mismatch":
        text = f"{subject} has characters that are not allowed"
    elif kind in _BOUNDS:
        key, phrase = _BOUNDS[kind]
        text = f"{subject} {phrase} {_amount(ctx.get(key), field)}"
    elif kind in ("int_parsing", "int_type", "float_parsing", "float_type", "int_from_float"):
        text = f"{subject} must be a number"
    elif kind in ("url_parsing", "url_scheme", "url_type"):
        text = f"{subject} must be a web address starting with https:// or http://"
    elif kind in ("literal_error", "enum"):
        text = f"{subject} must be one of {ctx.get('expected', 'the offered choices')}"
    elif kind == "extra_forbidden":
        text = f"The request has a field this call does not take: {field}"
    elif kind == "json_invalid":
        text = "The request is not valid JSON"
    elif kind == "value_error":  # our own validators say what is wrong, in words
        reason = str(ctx.get("error") or error.get("msg", "")).removeprefix("Value error, ")
        text = f"{subject} {reason}" if field else reason
    else:
        text = f"{subject} is not valid"
    return _sentence(text), field


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


# The framework's own refusals (no route, wrong method, ...), said for people.
_HTTP_SENTENCES = {
    404: "There is nothing at this address.",
    405: "This address does not take that kind of request.",
    413: "That is more than this request may carry.",
    415: "This request must be sent as JSON.",
}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def install(app: FastAPI) -> None:
    """Map every error, including the framework's own, to the one JSON error shape, and document
    that shape for every API route added after this (the app's router lends its `responses` to
    every route and router included into it)."""
    app.router.responses = {**ERROR_RESPONSES, **app.router.responses}

    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        message, field = human_validation_message(first)
        return error_response(422, "invalid_input", message, field=field)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if message == _phrase(
            exc.status_code
        ):  # the framework's bare "Not Found": say it for people
            message = _HTTP_SENTENCES.get(exc.status_code, message)
        return error_response(exc.status_code, code, message, dict(exc.headers or {}))

    async def on_refused(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ControlError)
        kind = CONTROL_KINDS.get(exc.kind, Conflict)
        later = {"Retry-After": str(STORE_RETRY_AFTER_S)} if kind is Unavailable else None
        return error_response(kind.status, exc.code, exc.message, later)

    async def on_records_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, records_errors.RecordsError)
        answer = records_error(exc)
        log.info("a records error reached the API (a race, answered %d): %r", answer.status, exc)
        return error_response(answer.status, answer.code, answer.message)

    async def on_limited(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Limited)
        return error_response(
            TooManyRequests.status,
            exc.code,
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
    app.add_exception_handler(ControlError, on_refused)
    app.add_exception_handler(records_errors.RecordsError, on_records_error)
    app.add_exception_handler(Limited, on_limited)
    for unreachable in UNAVAILABLE_ERRORS:
        app.add_exception_handler(unreachable, on_store_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)
