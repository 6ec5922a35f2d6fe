"""LL-HLS origin: serves what the packager holds, with headers that let HTTP caches do the fan-out.

Hot path rules: no database, no state writes, no per-listener bookkeeping — a request reads the
packager and, for blocking reloads and the preload-hinted part, waits on the Space's "new part"
condition. Every media object lives under a per-stream id, so parts, segments and the init section
are immutable for their whole cache lifetime; playlists are fresh for less than a part.

URLs (relative to /live/{space}/):
    index.m3u8                       multivariant playlist
    media.m3u8[?_HLS_msn=N[&_HLS_part=P]]   live media playlist, blocking reloads per RFC 8216bis
    {stream}/init.mp4 | s{msn}.m4s | p{msn}.{part}.m4s
    captions.m3u8                    live captions: WebVTT subtitle playlist (captioned Spaces)
    {stream}/c{msn}.vtt              its segments, aligned with the audio's (captions.track)
    captions.vtt                     every caption kept with the recording, as one file from 0

A captioned Space's multivariant playlist names the subtitle rendition (EXT-X-MEDIA TYPE=SUBTITLES);
an uncaptioned one's is unchanged. Subtitle segments are published once final (immutable).

A segment is requestable from the moment it opens, not only once complete: the playlist lists its
parts as byte ranges of it. A GET of the whole segment while it is produced is answered at once
with a chunked 200 that carries each part as the packager writes it and ends when the segment
closes, so a player makes one request per segment instead of a playlist reload and a part per
part. The response is the segment's final bytes exactly (Cache-Control immutable, like any
segment); if the stream stops before the segment is complete, the response is cut off without
its last chunk, so no HTTP cache stores it as complete. A ranged GET of a segment in production
waits until the bytes asked for exist (a closed range: all of them; an open-ended range, as the
preload hint asks: the first part there) and answers 206 with them. The segment after the last
one of an ended stream answers 204 (no content, not stored): a player that follows the stream
segment by segment learns of the end without an error and reads the playlist (EXT-X-ENDLIST).

Once a recorded Space has ended, the same URLs serve its replay (see `replay`): index.m3u8 names
media.m3u8, which becomes a VOD playlist of whole segments over every run of the Space, and
`{stream}/init.mp4`, `{stream}/s{msn}.m4s` are read from the recording, the same bytes the live
stream served under those names. Replays come from the `replays` lookup (the media host: any ended
Space, also after a restart) or, without one, from the recordings directory of an ended stream
still held in memory. A recording deleted by retention (the `expired` check: one stat, made only
for Spaces that are not live) answers 410 `recording_expired` on all of them.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from townhall.captions.track import CaptionTrack, vod_playlist
from townhall.delivery.byteranges import requested_range
from townhall.delivery.fanout import SegmentFanout, transport_of
from townhall.delivery.replay import Replay, open_replay
from townhall.media.packager import LlHlsPackager, Verdict

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
VTT_TYPE = "text/vtt; charset=utf-8"
MEDIA_TYPE = "audio/mp4"

IMMUTABLE = "public, max-age=31536000, immutable"
# A plain reload: browsers revalidate every time, a shared cache may answer for one second (HTTP's
# smallest lifetime) so that a join storm collapses into one origin request per second.
LIVE_PLAYLIST = "public, max-age=0, s-maxage=1"
# A blocking reload's answer holds the part it asked for and is correct for anyone asking the same
# question later, so caches may keep it.
BLOCKING_PLAYLIST = "public, max-age=30"
MULTIVARIANT = "public, max-age=10"
# A replay's playlist only changes if the recording is deleted (retention), so caches may keep it
# a while; its media objects are the live stream's immutable ones.
REPLAY_PLAYLIST = "public, max-age=300"
# Rewind (DVR) of a live recorded Space: everything recorded so far as one VOD playlist, rebuilt
# at most every DVR_REFRESH_S. Only rewinding listeners load it, once; live listeners never do, so
# what a live listener fetches per minute stays the same however long the Space runs.
DVR_REFRESH_S = 10
DVR_PLAYLIST = f"public, max-age={DVR_REFRESH_S}"
NO_STORE = "no-store"

CORS = {"Access-Control-Allow-Origin": "*", "Timing-Allow-Origin": "*"}
# Every media object: immutable under its stream id, and addressable by byte range (parts).
MEDIA_HEADERS = {**CORS, "Cache-Control": IMMUTABLE, "Accept-Ranges": "bytes"}

_OBJECT = re.compile(r"^(?:init\.mp4|s(\d{1,9})\.m4s|p(\d{1,9})\.(\d{1,3})\.m4s)$")
_NUMBER = re.compile(r"^\d{1,9}$")
_CAPTION_SEGMENT = re.compile(r"^c(\d{1,9})\.vtt$")


class LiveStream(Protocol):
    """What the origin needs of a Space's running stream (media.pipeline.LiveStream is one)."""

    @property
    def space_id(self) -> str: ...

    @property
    def packager(self) -> LlHlsPackager: ...

    @property
    def recordings_dir(self) -> Path | None: ...

    async def wait_for(self, predicate: Callable[[], bool], within: float) -> bool:
        """Hold until the packager satisfies `predicate` (True) or `within` seconds pass."""
        ...


MediaLookup = Callable[[str], LiveStream | None]
ReplayLookup = Callable[[str], Awaitable[Replay | None]]
ExpiredLookup = Callable[[str], bool]  # space id → its recording was deleted by retention
CaptionLookup = Callable[[str], CaptionTrack | None]  # space id → its live subtitle track
# space id → every kept caption as one WebVTT file (None: none kept): from 0 for the download, on
# the media timeline for a replay's subtitle rendition
CaptionFileLookup = Callable[[str], Awaitable[str | None]]
REPLAYS_KEPT = 50  # replays found through an ended stream's recordings directory (no lookup)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status, headers={**CORS, **(headers or {})}
    )


def _media(request: Request, data: bytes) -> Response:
    """A complete media object, or the single byte range of it the request asks for."""
    headers = dict(MEDIA_HEADERS)
    wanted = requested_range(request.headers.get("range"))
    if wanted is None:
        return Response(data, 200, headers, MEDIA_TYPE)
    selected = wanted.within(len(data))
    if selected is None:
        return _error(
            416,
            "range_not_satisfiable",
            "the range asked for lies beyond the end of the object",
            {"Content-Range": f"bytes */{len(data)}"},
        )
    start, end = selected
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
    return Response(data[start:end], 206, headers, MEDIA_TYPE)


def _growing_segment_headers() -> list[tuple[bytes, bytes]]:
    response = Response(None, 200, MEDIA_HEADERS, MEDIA_TYPE)
    del response.headers["content-length"]  # the length is known only when the segment closes
    return response.raw_headers


# The head of a segment streamed while it is produced (chunked: no Content-Length).
GROWING_SEGMENT_HEADERS = _growing_segment_headers()


class _GrowingSegment(Response):
    """A segment still being produced, sent part by part as the packager writes them (chunked).

    Ends when the segment closes (an ending stream closes its last segment short, and that is
    complete too). If no part comes for the blocking timeout (the stream stopped without ending:
    its process is going away), the response is cut off without its final chunk: a cache must not
    store it, and the client sees a failed transfer and asks again.

    Where the server offers the connection's transport (api/bounds.py), the parts are written to
    it by the stream's fan-out (`fanout`: once per part for every listener of the segment) and
    this response only waits for the segment's end; elsewhere each part goes through ASGI.
    """

    def __init__(self, media: LiveStream, msn: int, fanout: SegmentFanout) -> None:
        super().__init__()  # its head is GROWING_SEGMENT_HEADERS, sent by `__call__`
        self._media = media
        self._msn = msn
        self._fanout = fanout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": GROWING_SEGMENT_HEADERS}
        )
        if scope.get("method") == "HEAD":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        transport = transport_of(scope)
        if transport is not None:
            # The fan-out writes the parts as uvicorn would frame them, uvicorn the last chunk;
            # a response cut off (or gone) is closed without it.
            if await self._fanout.subscribe(self._media, self._msn, transport):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        packager, msn, sent = self._media.packager, self._msn, 0
        while True:
            so_far = packager.segment_so_far(msn)
            if so_far is None:
                return  # no longer held (cannot happen within a segment's life): cut off
            parts, complete = so_far
            for part in parts[sent:]:
                await send({"type": "http.response.body", "body": part, "more_body": True})
            sent = len(parts)
            if complete:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return

            def moved(count: int = sent) -> bool:
                now = packager.segment_so_far(msn)
                return now is None or now[1] or len(now[0]) > count

            if not await self._media.wait_for(moved, packager.blocking_timeout):
                return  # the stream stopped mid-segment (its process is ending): cut off


def _after_the_end() -> Response:
    return Response(None, 204, {**CORS, "Cache-Control": NO_STORE})


def _media_or_404(lookup: MediaLookup, request: Request) -> LiveStream | Response:
    media = lookup(request.path_params["space"])
    if media is None:
        return _error(404, "not_found", "no such live Space")
    return media


def build_origin(
    lookup: MediaLookup,
    replays: ReplayLookup | None = None,
    expired: ExpiredLookup | None = None,
    captions: CaptionLookup | None = None,
    caption_file: CaptionFileLookup | None = None,
    replay_captions: CaptionFileLookup | None = None,
    fanout: SegmentFanout | None = None,
) -> Starlette:
    """The origin's app; `fanout` streams segments in production to listeners (one per process,
    shared with /metrics; a fresh one if not given)."""
    fan = fanout if fanout is not None else SegmentFanout()
    found: OrderedDict[str, Replay] = OrderedDict()
    # space → (refresh bucket, when it was read, replay)
    rewinds: OrderedDict[str, tuple[int, float, Replay]] = OrderedDict()

    async def dvr_of(media: LiveStream | None, max_age_s: float | None = None) -> Replay | None:
        """What a live recorded Space has recorded so far (None: not live, or not recorded);
        re-read if older than `max_age_s` (an object of an earlier run asked for)."""
        root = media.recordings_dir if media is not None else None
        if media is None or root is None or media.packager.ended:
            return None
        now = time.time()
        bucket = int(now // DVR_REFRESH_S)
        cached = rewinds.get(media.space_id)
        if (
            cached is None
            or cached[0] != bucket
            or (max_age_s is not None and now - cached[1] > max_age_s)
        ):
            replay = await asyncio.to_thread(open_replay, root / media.space_id)
            if replay is None:
                return None
            cached = rewinds[media.space_id] = (bucket, now, replay)
            while len(rewinds) > REPLAYS_KEPT:
                rewinds.popitem(last=False)
        return cached[2]

    async def replay_of(space: str, media: LiveStream | None) -> Replay | Response | None:
        """The replay, for a Space whose stream is not running (ended, or gone from memory); a 410
        if retention deleted it."""
        if media is not None and not media.packager.ended:
            return None  # live: the packager answers
        if expired is not None and expired(space):
            found.pop(space, None)
            return _error(
                410,
                "recording_expired",
                "this Space's recording was deleted after the retention period",
                {"Cache-Control": REPLAY_PLAYLIST},
            )
        if replays is not None:
            return await replays(space)
        root = media.recordings_dir if media is not None else None
        if media is None or root is None:
            return None
        cached = found.get(space)
        if cached is None:
            # The host closes the recorder before it keeps the ended stream, so this is final.
            cached = await asyncio.to_thread(open_replay, root / media.space_id)
            if cached is None:
                return None
            found[space] = cached
            while len(found) > REPLAYS_KEPT:
                found.popitem(last=False)
        return cached

    async def multivariant(request: Request) -> Response:
        space = request.path_params["space"]
        replay = await replay_of(space, lookup(space))
        if isinstance(replay, Response):
            return replay
        if replay is not None:
            kept = await replay_captions(space) if replay_captions is not None else None
            body = replay.multivariant_playlist(
                "media.m3u8", "captions.m3u8" if kept is not None else None
            )
            return Response(body, 200, {**CORS, "Cache-Control": MULTIVARIANT}, PLAYLIST_TYPE)
        media = _media_or_404(lookup, request)
        if isinstance(media, Response):
            return media
        track = captions(space) if captions is not None else None
        body = media.packager.multivariant_playlist(
            "media.m3u8", "captions.m3u8" if track is not None else None
        )
        return Response(body, 200, {**CORS, "Cache-Control": MULTIVARIANT}, PLAYLIST_TYPE)

    def caption_track(request: Request) -> CaptionTrack | Response:
        track = captions(request.path_params["space"]) if captions is not None else None
        if track is None:
            return _error(404, "not_found", "this Space has no live captions")
        return track

    async def replay_caption_text(space: str) -> tuple[Replay, str] | None:
        """An ended recorded Space's replay and its kept captions (on the media timeline)."""
        replay = await replay_of(space, lookup(space))
        if not isinstance(replay, Replay) or replay_captions is None:
            return None
        text = await replay_captions(space)
        return (replay, text) if text is not None else None

    async def caption_playlist(request: Request) -> Response:
        track = caption_track(request)
        if isinstance(track, Response) or track.ended:  # over: the replay's, once there is one
            kept = await replay_caption_text(request.path_params["space"])
            if kept is not None:
                body = vod_playlist(kept[0].duration, "captions-replay.vtt")
                headers = {**CORS, "Cache-Control": REPLAY_PLAYLIST}
                return Response(body, 200, headers, PLAYLIST_TYPE)
        if isinstance(track, Response):
            return track
        return Response(
            track.media_playlist(), 200, {**CORS, "Cache-Control": LIVE_PLAYLIST}, PLAYLIST_TYPE
        )

    async def replay_caption_segment(request: Request) -> Response:
        kept = await replay_caption_text(request.path_params["space"])
        if kept is None:
            return _error(404, "not_found", "no captions were kept for this Space's replay")
        return Response(kept[1], 200, {**CORS, "Cache-Control": REPLAY_PLAYLIST}, VTT_TYPE)

    async def caption_download(request: Request) -> Response:
        space = request.path_params["space"]
        body = await caption_file(space) if caption_file is not None else None
        if body is None:
            return _error(404, "not_found", "no captions were kept for this Space")
        headers = {
            **CORS,
            "Cache-Control": LIVE_PLAYLIST,
            "Content-Disposition": f'attachment; filename="{space}.vtt"',
        }
        return Response(body, 200, headers, VTT_TYPE)

    async def media_playlist(request: Request) -> Response:
        space = request.path_params["space"]
        replay = await replay_of(space, lookup(space))
        if isinstance(replay, Response):
            return replay
        if replay is not None:  # a VOD: blocking-reload directives do not apply
            return Response(
                replay.media_playlist(),
                200,
                {**CORS, "Cache-Control": REPLAY_PLAYLIST},
                PLAYLIST_TYPE,
            )
        media = _media_or_404(lookup, request)
        if isinstance(media, Response):
            return media
        raw_msn = request.query_params.get("_HLS_msn")
        raw_part = request.query_params.get("_HLS_part")
        for name, raw in (("_HLS_msn", raw_msn), ("_HLS_part", raw_part)):
            if raw is not None and not _NUMBER.fullmatch(raw):
                return _error(400, "bad_request", f"{name} must be a non-negative integer")
        msn = int(raw_msn) if raw_msn is not None else None
        part = int(raw_part) if raw_part is not None else None
        packager = media.packager
        verdict, reason = packager.verdict(msn, part)
        if verdict is Verdict.BAD_REQUEST:
            return _error(400, "bad_request", reason)
        if verdict is Verdict.WAIT:
            ready = await media.wait_for(
                lambda: packager.verdict(msn, part)[0] is not Verdict.WAIT,
                packager.blocking_timeout,
            )
            if not ready:
                return _error(
                    503,
                    "not_ready",
                    "the requested part is late",
                    {"Retry-After": "1", "Cache-Control": NO_STORE},
                )
        # Only an answer that holds what was asked for is right for later askers of the same
        # question; one that sends an old question back to the live edge is a plain reload.
        cache = BLOCKING_PLAYLIST if packager.answers(msn, part) else LIVE_PLAYLIST
        return Response(
            packager.media_playlist(), 200, {**CORS, "Cache-Control": cache}, PLAYLIST_TYPE
        )

    async def dvr_playlist(request: Request) -> Response:
        replay = await dvr_of(lookup(request.path_params["space"]))
        if replay is None or not replay.segments:
            return _error(
                404, "dvr_unavailable", "only a live Space that is being recorded can be rewound"
            )
        return Response(
            replay.media_playlist(), 200, {**CORS, "Cache-Control": DVR_PLAYLIST}, PLAYLIST_TYPE
        )

    async def recorded_object(replay: Replay | None, stream: str, name: str) -> bytes | None:
        """A segment, part or init section read back from a recording (replay or DVR)."""
        match = _OBJECT.fullmatch(name)
        if replay is None or stream not in replay.stream_ids or match is None:
            return None
        seg, part_msn, part_index = match.groups()
        if seg is not None:
            data = await asyncio.to_thread(replay.segment, stream, int(seg))
        elif part_msn is not None:
            data = await asyncio.to_thread(replay.part, stream, int(part_msn), int(part_index))
        else:
            data = replay.init_section(stream)
        return data

    async def rewound_object(media: LiveStream, stream: str, name: str) -> bytes | None:
        """What left the live window of a live recorded Space, from its recording (DVR); also
        what an earlier run of the Space produced just before its node died (listeners' last
        playlist named it), read again from the recording if the DVR's view predates it."""
        found = await recorded_object(await dvr_of(media), stream, name)
        if found is None and stream != media.packager.stream_id:
            found = await recorded_object(await dvr_of(media, max_age_s=1.0), stream, name)
        return found

    async def media_object(request: Request) -> Response:
        space, stream = request.path_params["space"], request.path_params["stream"]
        caption = _CAPTION_SEGMENT.fullmatch(request.path_params["name"])
        if caption is not None:
            return caption_segment(request, stream, int(caption.group(1)))
        replay = await replay_of(space, lookup(space))
        if isinstance(replay, Response):
            return replay
        recorded = await recorded_object(replay, stream, request.path_params["name"])
        if recorded is not None:  # the replay (parts: the ended stream's, below)
            return _media(request, recorded)
        media = _media_or_404(lookup, request)
        if isinstance(media, Response):
            return media
        packager = media.packager
        if request.path_params["stream"] != packager.stream_id:
            rewound = await rewound_object(
                media, request.path_params["stream"], request.path_params["name"]
            )
            if rewound is not None:  # an earlier run of this Space, rewound to
                return _media(request, rewound)
            return _error(
                404, "not_found", "no such stream (the Space was restarted; reload the playlist)"
            )
        match = _OBJECT.fullmatch(request.path_params["name"])
        if match is None:
            return _error(404, "not_found", "no such media object")
        seg, part_msn, part_index = match.groups()
        data: bytes | None
        if seg is not None:
            so_far = packager.segment_so_far(int(seg))
            if so_far is not None and not so_far[1]:
                return await growing_segment(request, media, int(seg))
            if packager.ended and int(seg) == packager.next_part[0]:
                return _after_the_end()
            data = packager.segment(int(seg))
        elif part_msn is not None:
            msn, index = int(part_msn), int(part_index)
            if packager.is_future(msn, index):
                # The preload hint named this part: answer as soon as it exists (RFC 8216bis 6.2.6).
                await media.wait_for(
                    lambda: not packager.is_future(msn, index), packager.blocking_timeout
                )
            data = packager.part(msn, index)
        else:
            data = packager.init_section()
        if data is None:
            rewound = await rewound_object(media, packager.stream_id, request.path_params["name"])
            if rewound is not None:  # left the live window, still in the recording (DVR)
                return _media(request, rewound)
            return _error(
                404, "not_found", "no such media object (not produced yet, or no longer held)"
            )
        return _media(request, data)

    def caption_segment(request: Request, stream: str, msn: int) -> Response:
        track = caption_track(request)
        if isinstance(track, Response):
            return track
        text = track.segment(msn) if stream == track.shape.stream_id else None
        if text is None:
            return _error(
                404, "not_found", "no such caption segment (not final yet, or no longer held)"
            )
        return Response(text, 200, {**CORS, "Cache-Control": IMMUTABLE}, VTT_TYPE)

    async def growing_segment(request: Request, media: LiveStream, msn: int) -> Response:
        """The segment being produced: streamed whole, or the byte range asked for once written."""
        packager = media.packager
        wanted = requested_range(request.headers.get("range"))

        def written() -> tuple[int, bool] | None:
            so_far = packager.segment_so_far(msn)
            return None if so_far is None else (sum(len(p) for p in so_far[0]), so_far[1])

        def arrived() -> bool:
            now = written()
            if now is None or now[1]:
                return True  # complete (or gone): answered below as any other segment
            if wanted is None:
                return now[0] > 0  # the first part, so a stream never starts empty
            if wanted.first is None:
                return False  # the last N bytes: only known once complete
            # A closed range: every byte of it; an open end (the preload hint): its first part.
            return now[0] > (wanted.first if wanted.last is None else wanted.last)

        if not await media.wait_for(arrived, packager.blocking_timeout):
            return _error(
                503,
                "not_ready",
                "the requested part is late",
                {"Retry-After": "1", "Cache-Control": NO_STORE},
            )
        so_far = packager.segment_so_far(msn)
        if so_far is None:  # the stream ended before this segment had a part
            return _after_the_end()
        parts, complete = so_far
        if complete:
            return _media(request, b"".join(parts))
        if wanted is None:
            return _GrowingSegment(media, msn, fan)
        data = b"".join(parts)
        first = wanted.first or 0  # never None here: a suffix range waits for completion
        end = len(data) if wanted.last is None else wanted.last + 1
        # The segment's length is not known yet (RFC 9110 §14.4: complete-length "*"); the bytes
        # are the final ones all the same, so caches may keep them like any part.
        headers = {**MEDIA_HEADERS, "Content-Range": f"bytes {first}-{end - 1}/*"}
        return Response(data[first:end], 206, headers, MEDIA_TYPE)

    async def preflight(_: Request) -> Response:
        return Response(
            None,
            204,
            {
                **CORS,
                "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
                "Access-Control-Allow-Headers": "Range",
                "Access-Control-Max-Age": "86400",
            },
        )

    async def unknown(_: Request) -> Response:
        return _error(404, "not_found", "no such listener resource")

    return Starlette(
        routes=[
            Route("/{space}/index.m3u8", multivariant, methods=["GET", "HEAD"]),
            Route("/{space}/media.m3u8", media_playlist, methods=["GET", "HEAD"]),
            Route("/{space}/dvr.m3u8", dvr_playlist, methods=["GET", "HEAD"]),
            Route("/{space}/captions.m3u8", caption_playlist, methods=["GET", "HEAD"]),
            Route("/{space}/captions.vtt", caption_download, methods=["GET", "HEAD"]),
            Route("/{space}/captions-replay.vtt", replay_caption_segment, methods=["GET", "HEAD"]),
            Route("/{space}/{stream}/{name}", media_object, methods=["GET", "HEAD"]),
            Route("/{path:path}", preflight, methods=["OPTIONS"]),
            Route("/{path:path}", unknown, methods=["GET", "HEAD"]),
        ]
    )
