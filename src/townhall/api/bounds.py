"""What one request may cost before any route sees it: body sizes, header size, and how long a
client may take to send its headers and its body.

Measured before this existed: a 38 MB JSON body to the (unauthenticated) sign-in was read and
parsed on the event loop, which blocked it 1.3 s (every open Space's media clock skipped ticks)
and cost 430 MB; and a connection that sends nothing, or its headers or body a byte at a time,
was held open forever (each one a request in flight against the admission caps).

- **Bodies** are capped by FastAPI's own limit (`max_body_size`, Starlette's
  RequestBodyLimitMiddleware): a request whose Content-Length is over the cap is refused before
  its first byte is read, a chunked one as soon as it passes the cap, 413 in the API's JSON error
  shape. JSON bodies get `JSON_BODY_MAX` (the largest, a Space's 2,000-character description, is
  under 13 KB even if every character were \\u-escaped); an SDP offer (`/rtc`) gets
  `SDP_BODY_MAX`, which holds the longest offer the route accepts (32,768 characters), escaped.
- **Headers** must arrive within `HEADER_TIMEOUT_S` of the connection opening (or of the previous
  response, on a kept-alive connection) and total at most `HEADER_BYTES_MAX`; a **body** must
  arrive within `BODY_TIMEOUT_S` of its headers. Neither clock runs while the server answers, so
  a blocking playlist reload held for seconds (delivery/origin.py) or a segment streamed over
  ~2 s is untouched; an idle kept-alive connection is closed after `KEEP_ALIVE_S` (uvicorn's own
  timer), longer than a listener page's pause between two requests.
- **WebSocket messages** are capped at `WS_MESSAGE_MAX`: the stage's event socket receives
  nothing but closes and pings.

The edge configs in deploy/ carry the same numbers (nginx `client_max_body_size`,
`client_header_timeout`, `client_body_timeout`; the Varnish VCL refuses a Content-Length over
the caps), so a refusal costs the origin nothing when an edge is in front.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, cast

from fastapi import Depends, FastAPI, HTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from townhall.api.errors import error_response
from townhall.api.lanes import Lane, by_prefix
from townhall.api.lean_connection import LeanEvent, LeanPipeline
from townhall.delivery.fanout import TRANSPORT_EXTENSION

JSON_BODY_MAX = 16 * 1024
SDP_BODY_MAX = 64 * 1024
HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
HEADER_BYTES_MAX = 32 * 1024
WS_MESSAGE_MAX = 64 * 1024

_HEAD_TOO_LARGE_BODY = json.dumps(
    {"error": {"code": "too_large", "message": "The request's headers are longer than allowed."}}
).encode()
_HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
    % (len(_HEAD_TOO_LARGE_BODY), _HEAD_TOO_LARGE_BODY)
)


TOO_LARGE_MESSAGE = "That is more than this request may carry."


class BoundedApp(FastAPI):
    """FastAPI with the JSON body cap, whose 413s are in the API's JSON error shape.

    Starlette's limiter answers a request whose Content-Length is over the cap with its own
    text/plain 413 (even over a response the app already chose), from outside every middleware an
    app can add; so the one place to put that answer into our shape is around the whole stack."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            max_body_size=JSON_BODY_MAX,
            dependencies=[Depends(_refuse_declared_excess)],
            # The operator's metrics are Prometheus (townhall.telemetry); FastAPI's own
            # OpenTelemetry hooks would only ask, on every request, whether a provider exists.
            telemetry={"tracing": False, "metrics": False, "logs": False},
            **kwargs,
        )
        # Prefixes served past the framework's stack (api/lanes.py), built with the stack.
        self.lanes: list[Lane] = []

    # Answers some requests before the framework does (api/fastpath.py); True when it answered.
    front: Callable[[Scope, Send], Awaitable[bool]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.front is not None and await self.front(scope, send):
            return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        # What FastAPI's and Starlette's own `__call__` do for a request (telemetry is off), done
        # here: a streamed segment keeps every coroutine between the server and the response
        # suspended for the response's life (~290 bytes each, one held request per listener), so
        # these two layers are not kept.
        if self.root_path:
            scope["root_path"] = self.root_path
        scope["app"] = self
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        await self.middleware_stack(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        full = _json_too_large(super().build_middleware_stack())
        if not self.lanes:
            return full
        return by_prefix(full, {lane.prefix: lane.build(self) for lane in self.lanes})


async def _refuse_declared_excess(connection: HTTPConnection) -> None:
    """Refuse a body declared larger than the route's cap before the route runs.

    Starlette's limiter checks Content-Length only when the body is read or when the response
    starts: a route that reads no body (go-live, end, ...) would run first and be answered 413
    after. This runs before any route does, with the route's own cap (the limiter puts it in the
    scope)."""
    limit = connection.scope.get(MAX_BODY_SIZE_SCOPE_KEY)
    declared = connection.headers.get("content-length", "")
    if isinstance(limit, int) and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413)


def _json_too_large(app: ASGIApp) -> ASGIApp:
    async def bounded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        replaced = False

        async def send_json(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] == 413:
                replaced = True
                response = error_response(413, "too_large", TOO_LARGE_MESSAGE)
                await response(scope, receive, send)
            elif not replaced:
                await send(message)

        await app(scope, receive, send_json)

    return bounded


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for the request head and for the body, and a
    cap on the head's size (uvicorn has neither; its only timer is the keep-alive one, armed after
    a response). A missed deadline or an oversized head closes the connection: an app waiting on
    the body sees the client disconnect, as it would if the client had gone away.

    It also holds less per connection (api/lean_connection.py): its own fields are slots, so
    uvicorn's 28 attributes stay in a shared-key instance dict (a 30th key turns that into a
    1.6 KB table per connection, measured), and its pipeline and both events are built without
    a deque each."""

    __slots__ = ("_deadline", "_head_bytes", "_in_message")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        # Between the parser's message begin and complete: bytes that come now are the request's.
        self._in_message = False
        self.pipeline = cast(Any, LeanPipeline())

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        writable = LeanEvent()
        writable.set()  # as FlowControl starts: writable until the transport says otherwise
        self.flow._is_writable_event = cast(asyncio.Event, writable)
        self._arm(HEADER_TIMEOUT_S)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        # A response completed while the previous request was parsed (a refusal answered at
        # once) armed the keep-alive timer: this request is not idle time.
        self._unset_keepalive_if_required()
        self._in_message = True
        super().on_message_begin()
        # The connection's transport, for the origin's segment fan-out (delivery/fanout.py),
        # which writes a streamed segment's parts to it directly; everything else ignores it.
        self.scope["extensions"] = {TRANSPORT_EXTENSION: {"transport": self.transport}}
        self._head_bytes = 0
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm(HEADER_TIMEOUT_S)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > HEADER_BYTES_MAX:
            self._disarm()
            if not self.transport.is_closing():
                self.transport.write(_HEAD_TOO_LARGE)
                self.transport.close()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not before:
            # A new request cycle: nothing waits on its event yet (its task has not run).
            self.cycle.message_event = cast(asyncio.Event, LeanEvent())
        if self.transport.is_closing():
            return
        headers = dict(self.headers)
        if headers.get(b"content-length", b"0") not in (b"0", b"") or b"transfer-encoding" in (
            headers
        ):
            self._arm(BODY_TIMEOUT_S)
        else:
            self._disarm()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the connection is the WebSocket protocol's from here on
        super().handle_websocket_upgrade()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_message = False
        super().on_message_complete()
