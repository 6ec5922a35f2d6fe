"""The listener's one request per segment, answered before the framework.

A listener page asks for each segment once and the origin streams it while it is produced
(delivery/origin.py, delivery/fanout.py): at steady state that request is almost everything a
listener costs the origin. Through the /live lane it passed seven ASGI layers (proxy headers,
telemetry, admission, error and exception middleware, the cluster router, the private-Space gate)
and Starlette's router before the origin's route looked at the packager; profiled at 2,000 direct
listeners (py-spy, docs/architecture.md) those layers were over half of the request's CPU, and
each kept its coroutine suspended for as long as the segment streamed (memory per listener).

`OpenSegmentFront` answers the common case itself: a plain GET of the whole segment being
produced, of a public or unlisted Space whose media runs in this process, on a server that offers
the connection's transport. It waits for the segment's first part as the origin does, sends the
origin's response head (through ASGI, so uvicorn's framing, keep-alive and response state stay
uvicorn's) and hands the connection to the stream's fan-out, exactly as the origin's route does.

Everything else is left to the framework, which answers it as before: a range, a query string, a
HEAD, a complete or older segment (a plain cacheable answer), a private Space (its gate checks
the media key; whether a Space is private is fixed once it opens, and only then does its media
run, so the media host knows it exactly, node/host.py), a Space running on another node
(relayed), a stream id of an earlier run, the end of the stream, and a first part that does not
come within the blocking timeout (the origin then waits once more and answers 503).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.types import Scope, Send

from townhall.delivery.fanout import SegmentFanout, transport_of
from townhall.delivery.origin import LiveStream, MediaLookup, stream_open_segment

# /live/{space}/{stream}/s{msn}.m4s, the origin's segment names (delivery/origin.py `_OBJECT`).
_SEGMENT_PATH = re.compile(r"/live/([a-z0-9]{10})/([A-Za-z0-9_-]{1,64})/s(\d{1,9})\.m4s")
# The route the framework's path records these requests under (/metrics).
SEGMENT_ROUTE = "/live/{space}/{stream}/{name}"


def _whole(scope: Scope) -> bool:
    """No Range header: the whole segment is asked for."""
    return all(name != b"range" for name, _ in scope["headers"])


class OpenSegmentFront:
    """See the module docstring. `public(space_id)`: whether the Space runs here and is served at
    its plain path (not private)."""

    def __init__(
        self, lookup: MediaLookup, fanout: SegmentFanout, public: Callable[[str], bool]
    ) -> None:
        self.lookup = lookup
        self.fanout = fanout
        self.public = public

    def target(self, scope: Scope) -> OpenSegment | None:
        """The open segment the request asks for, if it is one this answers (so that admission
        and telemetry apply to it); None leaves the request to the framework. The caller (the
        app's fast path, api/fastpath.py) passes only GETs with no query string and no body."""
        match = _SEGMENT_PATH.fullmatch(scope["path"])
        if match is None or not _whole(scope):
            return None
        transport = transport_of(scope)
        if transport is None:
            return None
        space_id, stream, msn = match.group(1), match.group(2), int(match.group(3))
        media = self.lookup(space_id)
        if media is None or media.packager.stream_id != stream or not self.public(space_id):
            return None
        so_far = media.packager.segment_so_far(msn)
        if so_far is None or so_far[1]:
            return None  # complete, older or not yet open: a plain answer, the framework's
        return OpenSegment(media, msn, transport)

    def answer(self, segment: OpenSegment, send: Send) -> Awaitable[bool]:
        """Stream the segment; False (nothing sent) if it closed or the stream ended before its
        first part, or no part came in time: the framework answers it then. (A tail call, not a
        coroutine: the answer is held for as long as the segment streams, and each coroutine in
        its chain is kept with it.)"""
        return stream_open_segment(segment.media, segment.msn, self.fanout, segment.transport, send)


@dataclass(frozen=True, slots=True)
class OpenSegment:
    """A request `OpenSegmentFront` answers: the stream, the open segment's number, and the
    connection its parts are written to."""

    media: LiveStream
    msn: int
    transport: asyncio.Transport
