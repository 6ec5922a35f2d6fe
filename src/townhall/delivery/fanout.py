"""Segment fan-out: each part of a segment in production written once, in one loop, straight to
the connection of every listener streaming that segment.

A listener page asks for each segment once and the origin streams the segment's parts into that
open chunked response as the packager writes them (`origin._GrowingSegment`). Done per response,
every part woke every listener's task, which then re-read the segment and passed the part through
the whole ASGI `send` chain (the /live lane's middleware, uvicorn's cycle) to its transport: the
same work a thousand times for the same bytes. Here the work per part is done once per stream
and only the socket write is per listener.

Theory of operation:

* A listener's plain GET of the open segment is answered by the server's protocol itself
  (delivery/segment_front.py, api/listener_protocol.py): it `stream`s the segment to the
  connection's transport with the response head still to write; the head goes out with the
  segment's first part, so a request for the next segment waits here, as a subscriber, for that
  part. Everything else that streams the open segment (the origin's route, behind the framework)
  has sent its head through ASGI and `subscribe`s with the transport the protocol puts in its
  scope (`TRANSPORT_EXTENSION`). Either way the parts written so far go to the transport at once,
  framed as HTTP chunks exactly as uvicorn frames a body message, and it joins the segment's
  subscribers — with no await in between, so it misses no part and gets none twice.
* One pump task per stream (only while it has subscribers) waits for the packager to move, frames
  each new part once and writes it to every subscriber's transport. When the segment closes
  (complete, also the short last one of an ending stream) each subscriber is told it ended
  (`Ending.COMPLETE`). The response's final, empty chunk goes out in the same write as the last
  part for a request the protocol answers (`stream`): a segment's end then costs a listener no
  write of its own (one in seven of a listener's writes: about 10 of the ~80 µs of CPU a
  listener cost the origin per second at 8,000 listeners, measured). A response streamed
  through ASGI (`subscribe`) ends through ASGI, its owner sending the final chunk.
* A listener that does not read (its transport still holding over `WRITE_BUFFER_MAX` bytes of
  earlier parts when the next one comes) is cut off, as Icecast drops a client past its queue
  limit: the connection is aborted (its buffer
  freed at once), counted in `cut_off`, and its player asks again. The origin's memory per
  listener stays bounded whatever the listener does.
* If no part comes for the blocking timeout (the stream stopped without ending: its process is
  going away) every subscriber is cut off the same way, without the final chunk, so no cache
  stores an incomplete segment as complete. A subscriber still waiting for its first part (its
  head unwritten) is not cut off but told `Ending.UNSTARTED`: nothing was sent, and its owner
  answers the request another way (the origin's route, which says why).

Everything here runs on the event loop; nothing blocks.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.types import Scope

if TYPE_CHECKING:
    from townhall.delivery.origin import LiveStream
    from townhall.media.packager import LlHlsPackager

log = logging.getLogger(__name__)

# The scope extension under which the server's protocol offers the request's transport.
TRANSPORT_EXTENSION = "townhall.transport"
# Bytes of earlier parts still queued in user space for one listener when the next part comes,
# past which it is cut off (so the origin holds at most this plus a part per listener). The
# kernel's socket buffer (hundreds of KB) fills first, so a listener is this far behind only when
# it has stopped reading for many seconds; a segment (~6 parts of ~1.3 KB at 32 kbit/s) is far
# below it.
WRITE_BUFFER_MAX = 64 * 1024
# Subscribers the pump writes to per turn of the event loop (see `_StreamFan._feed`): ~10-20 ms
# of writes, so the loop's other work waits no longer than that for a big audience's.
TURN = 512


def transport_of(scope: Scope) -> asyncio.Transport | None:
    """The request's transport, if the server offers it (api/bounds.py); None otherwise (another
    server, a test client): the response then streams through ASGI as before."""
    offered = scope.get("extensions", {}).get(TRANSPORT_EXTENSION)
    return offered.get("transport") if offered is not None else None


def chunk(data: bytes) -> bytes:
    """`data` framed as one HTTP/1.1 chunk, byte for byte as uvicorn frames a body message."""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"  # the final chunk of a chunked response (no trailers)
_CLOSING = (LAST_CHUNK,)


class Ending(enum.Enum):
    """How a subscriber's stream of a segment ended."""

    COMPLETE = "complete"  # every part written (and the final chunk, if the fan-out closes it)
    CUT = "cut"  # cut off (aborted) or gone: nothing more is to be written
    UNSTARTED = "unstarted"  # nothing written (its head was waiting for the first part)


Ended = Callable[[Ending], None]


class _Subscriber:
    __slots__ = ("closes", "ended", "head", "sent", "transport")

    def __init__(
        self, transport: asyncio.Transport, ended: Ended, head: bytes, closes: bool
    ) -> None:
        self.transport = transport
        self.ended: Ended | None = ended  # called once, then forgotten
        self.head = head  # the response head, until it is written with the first part
        self.sent = 0  # parts written to it
        # Whether the fan-out writes the response's final chunk (with the last part), or its
        # owner does (a response streamed through ASGI).
        self.closes = closes

    def end(self, how: Ending) -> None:
        ended, self.ended = self.ended, None
        if ended is None:
            return
        try:
            ended(how)
        except Exception:  # its owner's bug must not stop the stream for everyone else
            log.exception("a segment subscriber's end failed")


class _Segment:
    """The subscribers of one segment in production and its parts, framed once."""

    __slots__ = ("chunks", "subscribers", "waiting")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.subscribers: list[_Subscriber] = []
        # While the pump feeds a big audience in turns (`_StreamFan._feed`): the subscribers it
        # has yet to reach this turn; None otherwise.
        self.waiting: list[_Subscriber] | None = None


def _frame(segment: _Segment, parts: list[bytes]) -> bool:
    """Frame the parts `segment` has not framed yet; whether there were any."""
    new = parts[len(segment.chunks) :]
    segment.chunks.extend(chunk(part) for part in new)
    return bool(new)


def _end_complete(subscribers: list[_Subscriber]) -> None:
    """Tell the subscribers of a complete segment it is over (each is told once), writing the
    final chunk of those the fan-out closes that did not get it with the last part. A head still
    unwritten cannot be — a segment closes with a part — but would be sent nothing."""
    for subscriber in subscribers:
        if subscriber.head:
            subscriber.end(Ending.UNSTARTED)
        elif subscriber.ended is not None:
            if subscriber.closes and not subscriber.transport.is_closing():
                subscriber.transport.write(LAST_CHUNK)
            subscriber.end(Ending.COMPLETE)


class _StreamFan:
    """The fan-out of one live stream: its segments' subscribers and the pump that feeds them."""

    def __init__(self, media: LiveStream, fanout: SegmentFanout) -> None:
        self.media = media
        self.fanout = fanout
        self.segments: dict[int, _Segment] = {}
        self.pump: asyncio.Task[None] | None = None

    def subscribe(
        self, msn: int, transport: asyncio.Transport, head: bytes, ended: Ended, closes: bool
    ) -> None:
        segment = self.segments.get(msn)
        if segment is None:
            segment = self.segments[msn] = _Segment()
        # Bring the segment's subscribers up to date first, so that all of them and the new one
        # have every part the packager holds: no part skipped, none written twice.
        subscriber = _Subscriber(transport, ended, head, closes)
        # (While the pump feeds the segment in turns it has framed every part the packager held,
        # and checks for more when it is done: writing those is all a newcomer needs.)
        if segment.waiting is not None or self._advance(msn, segment):
            if self._send(subscriber, segment.chunks):
                segment.subscribers.append(subscriber)
        else:  # closed or gone meanwhile (the caller checked it was open: cannot happen)
            self._cut(subscriber)
        if self.pump is None and self.segments:
            self.pump = asyncio.get_running_loop().create_task(self._run())

    def _advance(self, msn: int, segment: _Segment) -> bool:
        """Write the segment's new parts to its subscribers; False once it is over (complete:
        each subscriber's future says True; no longer held: cut off)."""
        so_far = self.media.packager.segment_so_far(msn)
        if so_far is None:
            for subscriber in segment.subscribers:
                self._cut(subscriber)
            del self.segments[msn]
            return False
        parts, complete = so_far
        if _frame(segment, parts):  # else nothing to write (most subscriptions)
            chunks = segment.chunks
            segment.subscribers = [
                s for s in segment.subscribers if self._send(s, chunks, complete)
            ]
        if complete:
            _end_complete(segment.subscribers)
            del self.segments[msn]
            return False
        return True

    def _send(self, subscriber: _Subscriber, chunks: list[bytes], complete: bool = False) -> bool:
        """Write the chunks `subscriber` lacks (`complete`: they are the segment's last, so the
        final chunk too, if the fan-out closes its response); False if it is gone or too slow
        (dropped)."""
        transport = subscriber.transport
        if transport.is_closing():  # the listener went away
            subscriber.end(Ending.UNSTARTED if subscriber.head else Ending.CUT)
            return False
        if subscriber.sent < len(chunks):
            closing = _CLOSING if complete and subscriber.closes else ()
            if subscriber.head:
                transport.writelines((subscriber.head, *chunks[subscriber.sent :], *closing))
                subscriber.head = b""
            elif transport.get_write_buffer_size() > WRITE_BUFFER_MAX:
                # Still holding that much of what it was sent before: it is not reading.
                self.fanout.cut_off += 1
                self._cut(subscriber)
                return False
            elif len(chunks) - subscriber.sent == 1 and not closing:
                transport.write(chunks[-1])
            else:
                transport.writelines((*chunks[subscriber.sent :], *closing))
            subscriber.sent = len(chunks)
            if closing:
                subscriber.end(Ending.COMPLETE)
        return True

    async def _feed(self, msn: int, segment: _Segment) -> None:
        """The pump's `_advance`: the same writes (and, when the segment completes, the same
        ends), but to `TURN` subscribers per turn of the event loop.

        Done in one go, a part for 6,000 listeners was ~0.1 s of writes, and its segment's end
        was worse: every listener asks for the next segment the moment its response ends, so
        6,000 requests came back in one batch, and the loop ran 0.5 s without a break — the
        admission's lag probe then refused the room-state requests of whoever asked meanwhile,
        and every other Space's mixer in the process ticked late. In turns, the writes and the
        requests they set off interleave with the rest of the loop; the work is the same."""
        if len(segment.subscribers) <= TURN:
            self._advance(msn, segment)
            return
        so_far = self.media.packager.segment_so_far(msn)
        if so_far is None:
            self._advance(msn, segment)  # no longer held: cut everyone off, as always
            return
        parts, complete = so_far
        _frame(segment, parts)
        chunks = segment.chunks
        segment.waiting, segment.subscribers = segment.subscribers, []
        try:
            while segment.waiting:
                turn, segment.waiting = segment.waiting[:TURN], segment.waiting[TURN:]
                segment.subscribers.extend(s for s in turn if self._send(s, chunks, complete))
                if complete:
                    _end_complete(turn)
                if segment.waiting:
                    await asyncio.sleep(0)
        finally:
            # Cancelled mid-way (shutdown): those not reached yet are ended with the rest.
            segment.subscribers.extend(segment.waiting or ())
            segment.waiting = None
        if complete:
            _end_complete(segment.subscribers)  # those who came during the turns
            self.segments.pop(msn, None)

    @staticmethod
    def _cut(subscriber: _Subscriber) -> None:
        """End a response without its final chunk: abort (what it has not read is dropped). One
        whose head is unwritten has been sent nothing: its owner answers it another way."""
        if subscriber.ended is None:
            return  # over already
        if subscriber.head:
            subscriber.end(Ending.UNSTARTED)
            return
        subscriber.transport.abort()
        subscriber.end(Ending.CUT)

    async def _run(self) -> None:
        packager = self.media.packager
        try:
            await self._pump(packager)
        except Exception:  # a bug here must not leave listeners waiting for parts that never come
            log.exception(
                "space %s: segment fan-out failed; its listeners are cut off", self.media.space_id
            )
        finally:
            # Whatever is left (the stream stopped, the pump failed or was cancelled at shutdown)
            # ends cut off: each waiting request then returns, and its player asks again.
            for segment in self.segments.values():
                for subscriber in segment.subscribers:
                    self._cut(subscriber)
            self.segments.clear()
            self.pump = None
            self.fanout.idle(self)

    async def _pump(self, packager: LlHlsPackager) -> None:
        while True:
            # What the packager held before this round: a part published while a big audience
            # is fed in turns wakes the next round at once.
            seen = (packager.next_part, packager.ended)
            # First, and after every wake: a part published between a subscription and this
            # task's first run is written now, not with the part after it.
            for msn, segment in list(self.segments.items()):
                if self.segments.get(msn) is segment:  # not ended meanwhile, while one was fed
                    await self._feed(msn, segment)
            if not self.segments:
                return

            def moved(seen: tuple[Any, ...] = seen) -> bool:
                return (packager.next_part, packager.ended) != seen

            if not await self.media.wait_for(moved, packager.blocking_timeout):
                return  # the stream stopped mid-segment (its process is ending): all cut off


class SegmentFanout:
    """The fan-out of every live stream of this process, and what it counts for /metrics."""

    def __init__(self) -> None:
        self._streams: dict[int, _StreamFan] = {}  # id(media) → its fan, while it has subscribers
        self.cut_off = 0  # responses cut off because their listener did not read

    def stream(
        self,
        media: LiveStream,
        msn: int,
        transport: asyncio.Transport,
        head: bytes,
        ended: Ended,
        closes: bool = True,
    ) -> None:
        """Stream the open segment `msn` of `media` to `transport` as a chunked response: `head`
        (the response head, b"" if it was written already) with its first part, then each part
        as it is written, and the final chunk with the last (unless not `closes`: then it is the
        caller's to write on COMPLETE). `ended` is called once, when the stream is over
        (`Ending`)."""
        fan = self._streams.get(id(media))
        if fan is None:
            fan = self._streams[id(media)] = _StreamFan(media, self)
        fan.subscribe(msn, transport, head, ended, closes)
        if fan.pump is None:  # nothing left to feed (the segment closed meanwhile)
            self.idle(fan)

    def subscribe(
        self, media: LiveStream, msn: int, transport: asyncio.Transport
    ) -> asyncio.Future[bool]:
        """`stream` for a response whose head (chunked) went out through ASGI: the future
        resolves True when the segment is complete and every part is written (send the final
        chunk), False if the response was cut off (send nothing)."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def ended(how: Ending) -> None:
            if not done.done():
                done.set_result(how is Ending.COMPLETE)

        self.stream(media, msn, transport, b"", ended, closes=False)
        return done

    @property
    def streaming(self) -> int:
        """Responses being fed right now (one whose listener has gone is dropped at the next
        part; it is not counted from the moment its connection closes)."""
        return sum(
            not subscriber.transport.is_closing()
            for fan in self._streams.values()
            for segment in fan.segments.values()
            for subscriber in [*segment.subscribers, *(segment.waiting or ())]
        )

    def idle(self, fan: _StreamFan) -> None:
        """A stream's pump stopped with no subscribers left: forget it (it is made again on the
        next subscription), so ended streams leave nothing behind."""
        if not fan.segments and self._streams.get(id(fan.media)) is fan:
            del self._streams[id(fan.media)]
