"""Log lines as JSON objects, one per line (`TOWNHALL_LOG_FORMAT=json`), for log collectors.

A standard `logging.Formatter`, so every existing logger (ours, uvicorn's, aiortc's) is written
the same way without touching its call sites: time (UTC, ISO 8601), level, logger, the message
as it reads in text, the exception if any, and the structured fields a call passed in `extra`
(the request lines of `telemetry.requests`: method, route, status, duration_ms, request_id).
A line logged while a request is being answered carries that request's id too (`REQUEST_ID`,
set by `telemetry.requests` when the access log is on), so an error can be found from its request.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

LOG_FORMATS = ("text", "json")
# The id of the request whose handling logs a line (None: not in a request, or no access log).
REQUEST_ID: ContextVar[str | None] = ContextVar("townhall_request_id", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What every LogRecord carries; anything else on a record came from `extra` and is written out
# (but uvicorn's `color_message`: the message again, with terminal colour codes).
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and not key.startswith("_") and key not in out:
                out[key] = value
        if "request_id" not in out and (request_id := REQUEST_ID.get()) is not None:
            out["request_id"] = request_id
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # default=str: an `extra` value JSON cannot hold is written as its text, never dropped.
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(log_format: str, level: int = logging.INFO) -> None:
    """The root logger writes `text` (the classic one-line format) or `json` lines to stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
