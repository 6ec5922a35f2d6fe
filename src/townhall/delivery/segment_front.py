"""The listener's one request per segment, answered by the server's protocol itself.

A listener page asks for each segment once and the origin streams it while it is produced
(delivery/origin.py, delivery/fanout.py): at steady state that request is almost everything a
listener costs the origin. Through the /live lane it passed seven ASGI layers (proxy headers,
telemetry, admission, error and exception middleware, the cluster router, the private-Space gate)
and Starlette's router before the origin's route looked at the packager; profiled at 2,000 direct
listeners (py-spy, docs/architecture.md) those layers were over half of the request's CPU, and
each kept its coroutine suspended for as long as the segment streamed (memory per listener).
Answered in front of the framework, what was left per request was the server's own ASGI cycle:
a task, its coroutines and the cycle's state held for the segment's two seconds, and the
response head built and checked header by header.

So the common case is answered where the request is parsed (api/listener_protocol.py): a plain
GET of the whole segment being produced, of a public or unlisted Space whose media runs in this
process. `target` says whether a request is one; the protocol then takes the media class's place
in flight (`admit`, or answers 503 + Retry-After like the framework's admission) and hands the
connection to the stream's fan-out with the response head still to write (`stream`): the head
goes out with the segment's first part, so the next segment, asked before it has a part, waits
as a subscriber — no task, no coroutine. The request is counted under its route's template in
/metrics, as the framework's telemetry counts it.

Everything else is left to the framework, which answers it as before: a range, a query string, a
HEAD, a complete or older segment (a plain cacheable answer), a private Space (its gate checks
the media key; whether a Space is private is fixed once it opens, and only then does its media
run, so the media host knows it exactly, node/host.py), a Space running on another node
(relayed), a stream id of an earlier run, and a request whose segment closed, or whose stream
ended or stopped, before its first part (`Ending.UNSTARTED`: the protocol passes it on, and the
origin's route says what became of the stream, or waits once more and answers 503).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from townhall.api.admission import Admission, RequestClass
from townhall.delivery.fanout import Ended, Ending, SegmentFanout
from townhall.delivery.origin import LiveStream, MediaLookup
from townhall.telemetry.requests import RequestStats

# /live/{space}/{stream}/s{msn}.m4s, the origin's segment names (delivery/origin.py `_OBJECT`):
# the Space, the stream and the segment's number.
SEGMENT_PATH = rb"/live/([a-z0-9]{10})/([A-Za-z0-9_-]{1,64})/s(\d{1,9})\.m4s"
_SEGMENT_PATH = re.compile(SEGMENT_PATH.decode())
# The route the framework's path records these requests under (/metrics).
SEGMENT_ROUTE = "/live/{space}/{stream}/{name}"


@dataclass(frozen=True, slots=True)
class OpenSegment:
    """A request `OpenSegmentFront` answers: the stream and its open segment's number."""

    media: LiveStream
    msn: int


class OpenSegmentFront:
    """See the module docstring. `public(space_id)`: whether the Space runs here and is served at
    its plain path (not private)."""

    def __init__(
        self,
        lookup: MediaLookup,
        fanout: SegmentFanout,
        public: Callable[[str], bool],
        admission: Admission,
        stats: RequestStats,
    ) -> None:
        self.lookup = lookup
        self.fanout = fanout
        self.public = public
        self.admission = admission
        self.stats = stats

    def target(self, path: str) -> OpenSegment | None:
        """The open segment `path` asks for, if it is one this answers; None leaves the request
        to the framework. The caller passes only plain GETs of a whole object: no query string,
        no body, no Range."""
        match = _SEGMENT_PATH.fullmatch(path)
        if match is None:
            return None
        return self.open_segment(match.group(1), match.group(2), int(match.group(3)))

    def open_segment(self, space_id: str, stream: str, msn: int) -> OpenSegment | None:
        """`target` for a path already matched against `SEGMENT_PATH`."""
        media = self.lookup(space_id)
        if media is None or media.packager.stream_id != stream or not self.public(space_id):
            return None
        so_far = media.packager.segment_so_far(msn)
        if so_far is None or so_far[1]:
            return None  # complete, older or not yet open: a plain answer, the framework's
        return OpenSegment(media, msn)

    def admit(self) -> bool:
        """Take the media class's place in flight, as the framework's admission would; False:
        refused (answer 503 + Retry-After, and `refused`)."""
        return self.admission.enter(RequestClass.MEDIA)

    def refused(self, started: float) -> None:
        self.stats.record(SEGMENT_ROUTE, "GET", 503, time.perf_counter() - started)

    def stream(
        self,
        segment: OpenSegment,
        transport: asyncio.Transport,
        head: bytes,
        started: float,
        ended: Ended,
    ) -> None:
        """Stream an admitted request's segment to `transport`, `head` first (with the first
        part); `ended` as the fan-out calls it, once the request has left its place in flight
        and, if anything was sent, been counted."""

        def over(how: Ending) -> None:
            self.admission.leave(RequestClass.MEDIA)
            if how is not Ending.UNSTARTED:  # else the framework answers, and counts, it
                self.stats.record(SEGMENT_ROUTE, "GET", 200, time.perf_counter() - started)
            ended(how)

        self.fanout.stream(segment.media, segment.msn, transport, head, over)
