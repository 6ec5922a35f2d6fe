"""The server's HTTP protocol: bounded (api/bounds.py), and answering a listener's request for the
open segment itself, without an ASGI call (delivery/segment_front.py says which requests, and why),
as it does the prebuilt answers (api/fastpath.py: the health check, a public Space's current
snapshot, which every listener page reads now and then).

uvicorn gives every request a `RequestResponseCycle` and a task running the app; the cycle frames
the response (status line, its default headers, chunked encoding, `connection: close` when the
connection is not kept alive) and, when the response completes, calls the protocol's
`on_response_complete`, which arms the keep-alive timer or starts a pipelined request. A streamed
segment held that task, its chain of coroutines and the cycle for the segment's two seconds, per
listener. Here the protocol frames the same head itself, hands the connection to the fan-out and
puts `_HeldSegment` where uvicorn keeps the current cycle, with the few fields its protocol reads
(so a pipelined request queues behind it, a lost connection and a shutdown are seen as uvicorn
sees them); the fan-out writes the final chunk with the segment's last part, and when it says the
stream is over the protocol completes the response as the cycle would.

Most of those requests are taken before they are parsed (`raw_segment_get`, `_take_raw`): a
listener's request arrives whole in one read, in one shape (a request line, a few header lines),
and the parser's five callbacks, the scope built for it and a header deadline armed and cancelled
cost more than the rest of its answer (measured, docs/architecture.md). What is taken is what the
parser would read as a plain GET of that segment on a kept-alive connection (a property test
checks it against httptools); anything else, and a request in pieces or at a moment the parser
is inside one, is parsed as before. Bytes that come behind a request taken so are held (reading
paused, as uvicorn holds a pipelined request) and parsed in turn when it is answered.

A request whose stream ends before anything was sent (`Ending.UNSTARTED`) is handed to the app
then, through an ordinary cycle (one taken before parsing is parsed then): the origin's route
answers it. The bytes on the wire are the
ones the origin's route sends through uvicorn (tests/delivery/test_segment_front.py compares them).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from townhall.api.admission import RequestClass, classify, refusal
from townhall.api.bounds import HEADER_BYTES_MAX, BoundedHttpProtocol
from townhall.api.fastpath import FastPath
from townhall.api.lean_connection import LeanEvent
from townhall.delivery.fanout import Ending
from townhall.delivery.origin import GROWING_SEGMENT_HEADERS
from townhall.delivery.segment_front import SEGMENT_PATH, OpenSegment, OpenSegmentFront

_OK = b"HTTP/1.1 200 OK\r\n"
_UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\n"
# Request headers that make a GET something else than a plain read of the whole object.
_NOT_PLAIN = (b"content-length", b"transfer-encoding", b"range")
# A listener's request for a segment as players and edges send it, whole in one read: the request
# line of an HTTP/1.1 GET of a segment, header lines (a token, a colon, a value of visible
# characters, spaces and tabs), the blank line, and nothing after it. (Linear: a value holds no
# "\r", a name no ":".)
_RAW_SEGMENT_GET = re.compile(
    b"GET " + SEGMENT_PATH + rb" HTTP/1\.1\r\n"
    rb"((?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e]*\r\n)*)\r\n"
)
# Header lines that make it something else than a plain GET of the whole object on a connection
# kept alive (a body, a range, an upgrade, an expectation, a Connection other than keep-alive):
# those requests are the parser's.
_RAW_NOT_PLAIN = re.compile(
    rb"(?:^|\n)(?:(?:content-length|transfer-encoding|range|upgrade|expect):"
    rb"|connection:(?![ \t]*keep-alive[ \t]*\r))",
    re.IGNORECASE,
)


def frame_head(
    status_line: bytes,
    defaults: Sequence[tuple[bytes, bytes]],
    headers: Sequence[tuple[bytes, bytes]],
    keep_alive: bool,
    length: int | None,
) -> bytes:
    """A response head as uvicorn's cycle writes it: the status line, the server's default
    headers, the response's own, `connection: close` if the connection is not kept alive, and
    the body's framing (`length`, or chunked when None)."""
    lines = [status_line]
    lines.extend(b"%b: %b\r\n" % header for header in defaults)
    if length is not None:
        lines.append(b"content-length: %d\r\n" % length)
    lines.extend(b"%b: %b\r\n" % header for header in headers)
    if not keep_alive:
        lines.append(b"connection: close\r\n")
    if length is None:
        lines.append(b"transfer-encoding: chunked\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def raw_segment_get(data: bytes) -> re.Match[bytes] | None:
    """`data` as a plain GET of a whole segment on a connection kept alive, if it is one in the
    shape `_RAW_SEGMENT_GET` (the Space, the stream, the segment's number and the header lines);
    None: it is for the parser."""
    match = _RAW_SEGMENT_GET.fullmatch(data)
    if match is None or _RAW_NOT_PLAIN.search(match[4]):
        return None
    return match


class _NothingWaits:
    """The stand-in's message event: nothing reads a held segment's request body."""

    __slots__ = ()

    def set(self) -> None:
        pass


class _HeldSegment:
    """Stands where uvicorn keeps the current request's cycle while the fan-out streams the
    segment: the fields uvicorn's protocol reads or sets, and what the protocol needs to pass the
    request on if nothing was sent: its scope, or for a request taken before it was parsed, its
    bytes (`request`)."""

    __slots__ = ("disconnected", "keep_alive", "more_body", "request", "response_complete", "scope")

    message_event = _NothingWaits()

    def __init__(self, scope: Any, keep_alive: bool, request: bytes = b"") -> None:
        self.scope = scope
        self.request = request
        self.keep_alive = keep_alive
        self.response_complete = False
        self.disconnected = False
        self.more_body = True


class ListenerProtocol(BoundedHttpProtocol):
    """See the module docstring. `segments`: the open-segment front; `answers`: the prebuilt
    answers (api/fastpath.py: the health check, a public Space's current snapshot). None: every
    request goes to the app, as when the access log is on."""

    __slots__ = ("_answers", "_pass_on", "_segments", "_waiting")

    def __init__(
        self,
        *args: Any,
        segments: OpenSegmentFront | None = None,
        answers: FastPath | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._segments = segments
        self._answers = answers
        # What came on the connection while a request taken before parsing is answered; parsed
        # when it is.
        self._waiting = b""
        # The request being parsed was taken before parsing and is passed to the app.
        self._pass_on = False

    def data_received(self, data: bytes) -> None:
        held: Any = self.cycle
        if type(held) is _HeldSegment and held.request and not held.response_complete:
            # Behind a request taken before parsing: it waits until that one is answered, as
            # uvicorn holds a pipelined request (reading paused), then it is parsed in turn.
            self._waiting += data
            self.flow.pause_reading()
            return
        if not (data.startswith(b"GET /live/") and self._take_raw(data)):
            super().data_received(data)

    def _take_raw(self, data: bytes) -> bool:
        """Take a listener's request for the open segment before it is parsed: when it is the
        whole of `data` in the one shape players and edges send (`_RAW_SEGMENT_GET`), at a
        request's start. Parsing it cost more than the rest of its answer (the parser's five
        callbacks, the scope, a header deadline armed and cancelled; measured in
        docs/architecture.md). False leaves it to the parser, which answers it as before."""
        front = self._segments
        cycle = self.cycle
        if (
            front is None
            or self._in_message
            or len(data) > HEADER_BYTES_MAX
            or (cycle is not None and not cycle.response_complete)
            or self.transport.is_closing()
        ):
            return False
        match = raw_segment_get(data)
        if match is None:
            return False
        segment = front.open_segment(match[1].decode(), match[2].decode(), int(match[3]))
        if segment is None:
            return False
        self._unset_keepalive_if_required()
        self._disarm()  # the connection's first request: its header deadline
        held = _HeldSegment(None, keep_alive=True, request=data)
        self.cycle = cast(RequestResponseCycle, held)
        self._serve_segment(front, segment, held)
        return True

    def on_headers_complete(self) -> None:
        if self._pass_on:  # a request taken before parsing, passed to the app
            self._pass_on = False
            super().on_headers_complete()
            return
        path = self._plain_get() if self._segments or self._answers else None
        if path is None or not (self._take_segment(path) or self._take_answer(path)):
            super().on_headers_complete()

    def _plain_get(self) -> str | None:
        """The path of a plain HTTP/1.1 GET of a whole object (no query, no body, no range) that
        may be answered now; None for anything else."""
        cycle = self.cycle
        if self.transport.is_closing() or (cycle is not None and not cycle.response_complete):
            return None  # closing (refused already), or pipelined: uvicorn queues it
        parser = self.parser
        if (
            parser.get_method() != b"GET"
            or parser.get_http_version() != "1.1"
            or parser.should_upgrade()
            or b"?" in self.url
            or b"%" in self.url
            or any(name in _NOT_PLAIN for name, _ in self.headers)
        ):
            return None
        return self.url.decode("ascii", "replace")

    def _hold(self, path: str) -> _HeldSegment:
        """Put the stand-in where uvicorn keeps the request's cycle."""
        self._disarm()  # the head is in and there is no body: no deadline while it is answered
        scope = self.scope  # completed as uvicorn would, in case the app answers after all
        scope["method"] = "GET"
        scope["path"] = path
        scope["raw_path"] = self.url
        scope["query_string"] = b""
        held = _HeldSegment(scope, self.parser.should_keep_alive())
        self.cycle = cast(RequestResponseCycle, held)
        return held

    def _take_answer(self, path: str) -> bool:
        """Answer a prebuilt answer's request whole, here (admitted and counted as the fast path
        does it in front of the framework)."""
        front = self._answers
        answer = front.prepared(path) if front is not None else None
        if front is None or answer is None:
            return False
        body, headers, route = answer
        started = time.perf_counter()
        held = self._hold(path)
        kind = classify("GET", path)
        if front.admission.enter(kind):
            self._write_whole(_OK, headers, body, held.keep_alive)
            front.admission.leave(kind)
            status = 200
        else:
            self._write_whole(_UNAVAILABLE, *refusal(kind), held.keep_alive)
            status = 503
        front.stats.record(route, "GET", status, time.perf_counter() - started)
        self._complete(held)
        return True

    def _write_whole(
        self,
        status_line: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        keep_alive: bool,
    ) -> None:
        """A whole response (its length known), head and body in one write."""
        defaults = self.server_state.default_headers
        self.transport.write(
            frame_head(status_line, defaults, headers, keep_alive, len(body)) + body
        )

    def _take_segment(self, path: str) -> bool:
        front = self._segments
        segment = front.target(path) if front is not None else None
        if front is None or segment is None:
            return False
        self._serve_segment(front, segment, self._hold(path))
        return True

    def _serve_segment(
        self, front: OpenSegmentFront, segment: OpenSegment, held: _HeldSegment
    ) -> None:
        """Admit the held request and stream its segment, or answer it 503."""
        started = time.perf_counter()
        if not front.admit():
            self._write_whole(_UNAVAILABLE, *refusal(RequestClass.MEDIA), held.keep_alive)
            front.refused(started)
            self._complete(held)
            return
        head = _segment_head(self.server_state.default_headers, held.keep_alive)

        def ended(how: Ending) -> None:
            self._segment_ended(held, how)

        front.stream(segment, self.transport, head, started, ended)

    def _segment_ended(self, held: _HeldSegment, how: Ending) -> None:
        if how is Ending.UNSTARTED:
            self._to_app(held)
            return
        self._complete(held)  # COMPLETE: its final chunk went out with the last part

    def _complete(self, held: _HeldSegment) -> None:
        """What uvicorn's cycle does when a response completes."""
        held.response_complete = True
        if not held.keep_alive and not self.transport.is_closing():
            self.transport.close()
        self.on_response_complete()
        if self._waiting:  # what came behind a request taken before parsing: its turn now
            waiting, self._waiting = self._waiting, b""
            if not self.transport.is_closing():
                self.data_received(waiting)

    def _to_app(self, held: _HeldSegment) -> None:
        """Pass a request nothing was sent for to the app, as uvicorn would have at first."""
        if self.transport.is_closing():
            held.response_complete = True
            return
        if held.request:  # taken before parsing: parsed now (and what came behind it, in turn)
            held.response_complete = True
            request, self._waiting = held.request + self._waiting, b""
            self._pass_on = True
            super().data_received(request)
            return
        cycle = RequestResponseCycle(
            scope=held.scope,
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=cast(asyncio.Event, LeanEvent()),
            expect_100_continue=False,
            keep_alive=held.keep_alive,
            on_response=self.on_response_complete,
        )
        cycle.more_body = False  # a GET without a body: all of it is in
        cycle.message_event.set()
        if self.cycle is cast(Any, held):
            self.cycle = cycle
        self._start_asgi_task(cycle, self.app)


_heads: dict[tuple[int, bool], tuple[list[tuple[bytes, bytes]], bytes]] = {}


def _segment_head(defaults: list[tuple[bytes, bytes]], keep_alive: bool) -> bytes:
    """The streamed segment's response head; built again only when the server's default headers
    change (uvicorn replaces their list when its Date header moves on, once a second)."""
    key = (id(defaults), keep_alive)
    cached = _heads.get(key)
    if cached is None or cached[0] is not defaults:
        if len(_heads) > 8:
            _heads.clear()
        head = frame_head(_OK, defaults, GROWING_SEGMENT_HEADERS, keep_alive, None)
        cached = _heads[key] = (defaults, head)
    return cached[1]
