"""A listener that asks the server what the real listener page asks, at the page's pace.

`townhall loadtest` and the capacity benches use this one listener, so a rehearsal measures what an
audience of browsers would cost. What the page does (web/static/listen.js, segments.js) and so
what this does:

- join: the page (`GET /s/{id}`), the Space's snapshot, `GET /api/auth/me`, a presence beacon if
  this listener's random draw is inside the snapshot's `presence_sample`;
- play: the multivariant and media playlists once, the init section, the newest complete segment
  (first audio), then the segment being produced, streamed from its first byte while the origin
  writes its parts, and at once the next segment (`s{msn+1}.m4s`), which the origin holds until
  its first part exists: one request per segment. The playlists are read again only when a next
  segment is not there (204: the Space ended; 404: a new run of the stream; 503: late);
- meanwhile: the snapshot about once a second until the stream brings the room state (`emsg`
  boxes in its parts), then every 15 s; a sampled presence beacon every 30 s, and, when
  asked by the audience (`Actions`), a reaction or a raised hand (a guest sign-in first, as the
  page does on the first click).

What it measures (`PageStats`): requests by kind and answer, time to first audio (arrival → the
first segment's bytes in hand), and per part of the live stream its *lateness*: the arrival wall
time minus the part's media end on the server's clock (the playlist's PROGRAM-DATE-TIME plus the
durations read from the parts themselves). A *stall* is a part later than its media end +
PART-HOLD-BACK: a player holding the playlist's recommended buffer would have run dry. The parts
already written when a listener joins arrive in a burst and are not counted as late: they are the
buffer the page starts with.

Failures are handled as the page does: a 429/503 is retried after its Retry-After (with jitter, so
a refused crowd does not come back in step), anything else after a short backoff, and the player
starts again at the live edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlencode, urljoin, urlsplit

from townhall.loadtest.http import Client, HTTPFailure, Response, Sink
from townhall.loadtest.llhls import PlayerStats, parse_playlist
from townhall.media.fmp4 import Fmp4Error, find_box, moof_sample_count

SNAPSHOT_S = 1.0  # listen.js SNAPSHOT_MS: before the stream plays, or one without room state
SNAPSHOT_STREAMED_S = 15.0  # listen.js SNAPSHOT_STREAMED_MS: while the stream brings the room
PRESENCE_S = 30.0  # listen.js PRESENCE_MS
MAX_MISSES = 3  # segments.js: the next segment missing this often in a row → start again
AAC_FRAME = 1024  # samples per AAC-LC access unit
BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0


@dataclass
class PageStats(PlayerStats):
    """PlayerStats (requests, parts, stalls, joins, errors, lateness) and what a page adds."""

    sent: Counter[str] = field(default_factory=Counter)  # requests sent, by kind
    answers: Counter[str] = field(default_factory=Counter)  # "kind status", e.g. "segment 200"
    first_audio: list[float] = field(default_factory=list)  # s from arrival to first audio
    retry_after_honoured: int = 0
    reactions: int = 0
    hands: int = 0
    playing: int = 0  # listeners whose stream is flowing now

    def merge(self, other: PlayerStats) -> None:
        super().merge(other)
        if isinstance(other, PageStats):
            self.sent.update(other.sent)
            self.answers.update(other.answers)
            self.first_audio.extend(other.first_audio)
            self.retry_after_honoured += other.retry_after_honoured
            self.reactions += other.reactions
            self.hands += other.hands
            self.playing += other.playing


@dataclass(frozen=True)
class SpaceTarget:
    """Where a Space is: the server's base URL, its id and, for a private Space, its invite code."""

    base: str  # scheme://host:port
    space_id: str
    code: str | None = None

    @classmethod
    def parse(cls, url: str) -> SpaceTarget:
        """A Space link as people share it: http://host[:port]/s/{id}[?code=…]."""
        parts = urlsplit(url)
        path = parts.path.rstrip("/").split("/")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) link: {url!r}")
        if parts.scheme == "https":
            raise ValueError("https links are not supported yet: point it at the HTTP edge/origin")
        if len(path) < 3 or path[-2] != "s" or not path[-1]:
            raise ValueError(f"not a Space link (…/s/SPACE_ID): {url!r}")
        code = None
        for pair in parts.query.split("&"):
            name, _, value = pair.partition("=")
            if name == "code" and value:
                code = value
        return cls(f"{parts.scheme}://{parts.netloc}", path[-1], code)

    def query(self) -> str:
        return f"?{urlencode({'code': self.code})}" if self.code else ""

    @property
    def page(self) -> str:
        return f"/s/{self.space_id}{self.query()}"

    @property
    def snapshot(self) -> str:
        return f"/api/spaces/{self.space_id}/snapshot{self.query()}"

    def playlist(self, media: str | None = None) -> str:
        """The live playlist under `media`, where the snapshot says the Space's audio is (a private
        Space's capability path), or the public path before the snapshot was read."""
        return f"{media or f'/live/{self.space_id}'}/index.m3u8"


@dataclass
class Actions:
    """What this listener should do besides listening, shared by all listeners of a worker: the
    audience asks for reactions and hands at a rate, and whichever listener comes next does one."""

    reactions: asyncio.Queue[None] = field(default_factory=asyncio.Queue)
    hands: asyncio.Queue[None] = field(default_factory=asyncio.Queue)


class _Failed(Exception):
    def __init__(self, kind: str, retry_after: float | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.retry_after = retry_after


def _retry_after(response: Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def audio_timescale(init: bytes) -> int:
    """The audio track's timescale (its sample rate) from the init section's `mdhd`."""
    box = find_box(init, ["moov", "trak", "mdia", "mdhd"])
    if box is None:
        raise Fmp4Error("the init section has no mdhd")
    version = init[box.start + 8]
    offset = box.start + 12 + (16 if version == 1 else 8)
    (timescale,) = struct.unpack_from(">I", init, offset)
    if timescale <= 0:
        raise Fmp4Error("mdhd timescale 0")
    return int(timescale)


class PartClock:
    """Cuts a streamed segment into its parts as the bytes arrive and places each part on the
    server's clock: the first part starts at `start` (UNIX s), each lasts its samples.

    It reads box headers as they pass and keeps only each `moof` (to count its samples): an
    `mdat` or `emsg` body is skipped by its length, never copied or walked. A part ends with the
    last byte of its `mdat`. This is per-part work for every simulated listener, so it must cost
    little: a load generator that spends its core parsing media measures itself."""

    def __init__(self, start: float, timescale: int) -> None:
        self.end = start
        self.timescale = timescale
        self._head = bytearray()  # a box header cut between two reads
        self._kind = b""  # the box being read
        self._left = 0  # bytes of its body still to come
        self._moof: bytearray | None = None
        self._samples = 0  # of the last complete moof, waiting for its mdat
        self.room_seen = False  # the parts carry room state (emsg): the page stops polling

    def feed(self, data: bytes) -> list[float]:
        """The media end (UNIX s) of every part completed by `data`."""
        ended: list[float] = []
        pos, size = 0, len(data)
        while pos < size:
            if self._left == 0 and not self._kind:
                if not self._head and size - pos >= 16:
                    # The usual case: a box that starts here and ends in this read too is
                    # taken whole, without a copy.
                    box_size, kind = struct.unpack_from(">I4s", data, pos)
                    end = pos + box_size
                    if box_size >= 8 and end <= size and kind in (b"moof", b"mdat", b"emsg"):
                        if kind == b"moof":
                            self._samples = moof_sample_count(data, pos, end)
                        elif kind == b"emsg":
                            self.room_seen = True
                        elif self._samples:
                            self._part_ended(ended)
                        pos = end
                        continue
                pos = self._header(data, pos)
                if not self._kind:
                    break  # the rest of the header comes with the next read
            take = min(self._left, size - pos)
            if self._moof is not None:
                self._moof += data[pos : pos + take]
            pos += take
            self._left -= take
            if self._left == 0:
                self._box_done(ended)
        return ended

    def _header(self, data: bytes, pos: int) -> int:
        """Read a box header at `pos` (or complete one begun earlier); return the new position."""
        need = 8 if len(self._head) < 8 else 16
        taken = data[pos : pos + need - len(self._head)]
        self._head += taken
        pos += len(taken)
        if len(self._head) < 8:
            return pos
        size, kind = struct.unpack_from(">I4s", self._head)
        header = 8
        if size == 1:  # a 64-bit size follows
            if len(self._head) < 16:
                return self._header(data, pos) if pos < len(data) else pos
            (size,) = struct.unpack_from(">Q", self._head, 8)
            header = 16
        if size < header:  # 0 ("to the end of the file") never comes in a stream
            raise Fmp4Error(f"box {kind!r} has impossible size {size}")
        self._kind = kind
        self._left = size - header
        if kind == b"emsg":
            self.room_seen = True
        elif kind == b"moof":
            self._moof = bytearray(self._head)
        self._head.clear()
        return pos

    def _box_done(self, ended: list[float]) -> None:
        if self._moof is not None:
            self._samples = moof_sample_count(bytes(self._moof))
            self._moof = None
        elif self._kind == b"mdat" and self._samples:
            self._part_ended(ended)
        self._kind = b""

    def _part_ended(self, ended: list[float]) -> None:
        self.end += self._samples * AAC_FRAME / self.timescale
        ended.append(self.end)
        self._samples = 0


class PageListener:
    """One listener page; `run` until the monotonic deadline."""

    def __init__(
        self,
        target: SpaceTarget,
        stats: PageStats,
        actions: Actions | None = None,
        *,
        timeout: float = 10.0,
        guest_name: str = "Rehearsal listener",
        client: type[Client] = Client,
    ) -> None:
        self.target = target
        self.stats = stats
        self.actions = actions
        # `client`: the streams client, or the lean one (loadtest/wire.py) for big audiences.
        self.http = client(target.base, timeout=timeout)
        self.api = client(target.base, timeout=timeout)  # the page's API calls: own connection
        self.guest_name = guest_name
        self.token: str | None = None
        self.presence_sample = 1.0
        self.media: str | None = None  # where the audio is (the snapshot's space.media)
        self.key = "".join(random.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=22))
        self.part_hold_back = 3.0
        self.arrived = time.monotonic()
        self.room_in_stream = False

    # -- requests ---------------------------------------------------------------------------------

    async def _request(
        self,
        kind: str,
        client: Client,
        method: str,
        path: str,
        *,
        body: object = None,
        ok: tuple[int, ...] = (200,),
        sink: Sink | None = None,
    ) -> Response:
        headers = {"Accept": "application/json"} if kind not in ("page", "media") else {}
        if self.token is not None and client is self.api:
            headers["Authorization"] = f"Bearer {self.token}"
        data = b""
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.stats.requests += 1
        self.stats.sent[kind] += 1
        try:
            response = await client.request(
                method,
                path,
                headers=headers,
                body=data,
                sink=sink,
            )
        except HTTPFailure as failure:
            self.stats.answers[f"{kind} {failure.kind}"] += 1
            self.stats.errors[failure.kind] += 1
            raise _Failed(failure.kind) from None
        self.stats.answers[f"{kind} {response.status}"] += 1
        self.stats.bytes += len(response.content)
        if response.status not in ok:
            kind_of = f"http_{response.status}"
            if response.status in (429, 503) and "retry-after" not in response.headers:
                kind_of += "_no_retry_after"
            raise _Failed(kind_of, _retry_after(response))
        return response

    # -- the page ---------------------------------------------------------------------------------

    async def run(self, until: float) -> None:
        self.arrived = time.monotonic()
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._join(until)
            tasks.append(asyncio.create_task(self._follow_snapshot(until)))
            tasks.append(asyncio.create_task(self._beacon(until)))
            if self.actions is not None:
                tasks.append(asyncio.create_task(self._act(until)))
            await self._play(until)
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            self.http.close()
            self.api.close()

    async def _join(self, until: float) -> None:
        failures = 0
        while time.monotonic() < until:
            try:
                await self._request("page", self.http, "GET", self.target.page)
                await self._snapshot()
                await self._request("me", self.api, "GET", "/api/auth/me")
                return
            except _Failed as failed:
                failures += 1
                await self._pause(failed, failures, until)

    async def _snapshot(self) -> None:
        response = await self._request("snapshot", self.api, "GET", self.target.snapshot)
        try:
            snapshot = json.loads(response.content)
            sample = float(snapshot["listeners"]["presence_sample"])
            media = snapshot["space"].get("media")
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        self.presence_sample = min(1.0, max(0.0, sample))
        if isinstance(media, str) and media.startswith("/live/"):
            self.media = media

    async def _follow_snapshot(self, until: float) -> None:
        failures = 0
        while time.monotonic() < until:
            try:
                await self._snapshot()
                failures = 0
                every = SNAPSHOT_STREAMED_S if self.room_in_stream else SNAPSHOT_S
                await _sleep_until(time.monotonic() + every, until)
            except _Failed as failed:
                failures += 1
                await self._pause(failed, failures, until)

    async def _beacon(self, until: float) -> None:
        while time.monotonic() < until:
            if random.random() < self.presence_sample:
                # The page ignores a lost beacon: the count is an estimate.
                with contextlib.suppress(_Failed):
                    await self._request(
                        "presence",
                        self.api,
                        "POST",
                        f"/api/spaces/{self.target.space_id}/presence{self.target.query()}",
                        body={"key": self.key},
                        ok=(204,),
                    )
            await _sleep_until(time.monotonic() + PRESENCE_S, until)

    async def _signed_in(self) -> None:
        if self.token is None:
            response = await self._request(
                "guest",
                self.api,
                "POST",
                "/api/auth/guest",
                body={"display_name": self.guest_name},
                ok=(200, 201),
            )
            self.token = str(json.loads(response.content)["token"])

    async def _act(self, until: float) -> None:
        assert self.actions is not None
        reactions = asyncio.ensure_future(self.actions.reactions.get())
        hands = asyncio.ensure_future(self.actions.hands.get())
        try:
            while time.monotonic() < until:
                done, _ = await asyncio.wait(
                    {reactions, hands},
                    timeout=max(0.0, until - time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                try:
                    if reactions in done:
                        reactions = asyncio.ensure_future(self.actions.reactions.get())
                        await self._signed_in()
                        await self._request(
                            "reaction",
                            self.api,
                            "POST",
                            f"/api/spaces/{self.target.space_id}/reactions{self.target.query()}",
                            body={"emoji": "👏"},
                            ok=(200, 201, 202, 204),
                        )
                        self.stats.reactions += 1
                    if hands in done:
                        hands = asyncio.ensure_future(self.actions.hands.get())
                        await self._signed_in()
                        path = f"/api/spaces/{self.target.space_id}/hand{self.target.query()}"
                        await self._request("hand", self.api, "POST", path, ok=(200, 201, 204))
                        self.stats.hands += 1
                        await self._request("hand", self.api, "DELETE", path, ok=(200, 204))
                except _Failed as failed:
                    await self._pause(failed, 1, until)
        finally:
            reactions.cancel()
            hands.cancel()

    async def _pause(self, failed: _Failed, failures: int, until: float) -> None:
        """Wait as the page does after a failure: Retry-After if given, else an exponential
        backoff; with full jitter either way so a refused crowd does not return in step."""
        if failed.retry_after is not None:
            self.stats.retry_after_honoured += 1
            wait = failed.retry_after * (1 + random.random() * 0.5)
        else:
            wait = random.uniform(BACKOFF_S, min(MAX_BACKOFF_S, BACKOFF_S * 2**failures))
        await _sleep_until(time.monotonic() + wait, until)

    # -- the live player ---------------------------------------------------------------------------

    async def _play(self, until: float) -> None:
        failures = 0
        first = True
        while time.monotonic() < until:
            try:
                await self._play_run(until, first)
                return  # the Space ended
            except _Failed as failed:
                failures += 1
                first = False
                await self._pause(failed, failures, until)
            except Fmp4Error:
                self.stats.errors["bad_media"] += 1
                return

    async def _play_run(self, until: float, first: bool) -> None:
        base = self.target.base
        playlist_path = self.target.playlist(self.media)
        index = await self._request("playlist", self.http, "GET", playlist_path)
        media_uri = next(
            (line for line in index.content.decode().splitlines() if line and line[0] != "#"),
            None,
        )
        if media_uri is None:
            raise _Failed("bad_playlist")
        media_url = urljoin(base + playlist_path, media_uri)
        text = (await self._request("playlist", self.http, "GET", media_url)).content.decode()
        playlist = parse_playlist(text, media_url)
        self.part_hold_back = playlist.part_hold_back or self.part_hold_back
        hint = playlist.hint
        if "#EXT-X-ENDLIST" in text or hint is None:
            return
        init = (await self._request("media", self.http, "GET", playlist.init_uri)).content
        timescale = audio_timescale(init)
        newest = [p for p in playlist.parts if p.msn < hint.msn]
        if newest:  # the newest complete segment: the page's starting buffer
            segment_uri = _segment_uri(hint.uri, newest[-1].msn)
            await self._request("media", self.http, "GET", segment_uri)
        if first:
            self.stats.first_audio.append(time.monotonic() - self.arrived)
        self.stats.joins += 1
        msn = hint.msn
        start = hint.start - sum(p.duration for p in playlist.parts if p.msn == msn)
        clock = PartClock(start, timescale)
        joined_at = time.time()
        misses = 0
        self.stats.playing += 1
        try:
            while time.monotonic() < until:
                uri = _segment_uri(hint.uri, msn)

                def arrived(data: bytes, clock: PartClock = clock) -> None:
                    now = time.time()
                    ends = clock.feed(data)
                    self.room_in_stream = clock.room_seen
                    for end in ends:
                        self.stats.parts += 1
                        if end < joined_at:
                            continue  # written before this listener came: its starting buffer
                        late = now - end
                        self.stats.lateness.append(late)
                        if late > self.part_hold_back:
                            self.stats.stalls += 1

                try:
                    response = await self._request(
                        "segment", self.http, "GET", uri, ok=(200, 204), sink=arrived
                    )
                except _Failed as failed:
                    # 503: late, ask again; 404: a new run of the stream (a restart or a
                    # take-over): the playlist says where it continues, as in segments.js.
                    if failed.kind.startswith("http_503") and misses + 1 < MAX_MISSES:
                        misses += 1
                        await self._pause(failed, misses, until)
                        continue
                    raise
                if response.status == 204:
                    return  # the stream ended
                misses = 0
                msn += 1
                clock = PartClock(clock.end, timescale)
        finally:
            self.stats.playing -= 1
            self.room_in_stream = False  # the page reads the snapshot every second again


def _segment_uri(of: str, msn: int) -> str:
    """The URL of segment `msn` in the same stream directory as `of` (a part or segment URL)."""
    head, _, _ = of.rpartition("/")
    return f"{head}/s{msn}.m4s"


async def _sleep_until(when: float, until: float) -> None:
    await asyncio.sleep(max(0.0, min(when, until) - time.monotonic()))
