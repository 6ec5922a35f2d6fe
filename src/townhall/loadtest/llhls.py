"""A lean asyncio LL-HLS player for benchmarks: it asks what hls.js in low-latency mode asks.

It loads the media playlist, the init section and the newest complete part (first audio), then
follows the live edge: for each next part it sends, at the same time, a blocking playlist reload
(`_HLS_msn`/`_HLS_part`, RFC 8216bis §6.2.5.2) and a GET of the part the playlist's
EXT-X-PRELOAD-HINT names (§6.2.6), so a part arrives as soon as the origin has it. Parts listed as
byte ranges of their segment are asked for with `Range` (the hint: an open-ended one). No media is
decoded unless a caller asks for the bytes (`on_part`).

What it measures, per listener (`PlayerStats`):
- requests, bytes, errors by kind (`http_503`, `http_503_no_retry_after`, `http_429`, `timeout`,
  `connect`, …); on an error it backs off (Retry-After, else 0.5 s, with jitter) and re-joins;
- per part, *lateness* = arrival (wall clock) − the part's media end, with media time taken from
  EXT-X-PROGRAM-DATE-TIME plus the durations that follow it. That is how far behind the server's
  clock the part reached the player; the listener hears it PART-HOLD-BACK or more later still;
- a *stall* when a part arrives later than its media end + PART-HOLD-BACK: a player holding the
  playlist's recommended buffer would have run dry before it.

Each listener owns a `townhall.loadtest.http.Client` (HTTP/1.1 keep-alive, two connections: one for the
blocking reload, one for the hinted part). Not one shared `httpx.AsyncClient`: httpcore's pool
rescans all its connections on every request, so its cost per request grows with the audience
(see townhall/loadtest/http.py for the profile). Other benches import `run_listener`/`PlayerStats`; on its
own it plays a Space with N listeners for S seconds:

    .venv/bin/python -m townhall.loadtest.llhls http://127.0.0.1:8080/live/SPACE/media.m3u8 --listeners 20 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import random
import re
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urljoin

from townhall.loadtest.http import Client, HTTPFailure, Response

_PART = re.compile(r'#EXT-X-PART:DURATION=([\d.]+),URI="([^"]+)"(?:,BYTERANGE="(\d+)@(\d+)")?')
_HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"(?:,BYTERANGE-START=(\d+))?')
_PHB = re.compile(r"PART-HOLD-BACK=([\d.]+)")
_PART_TARGET = re.compile(r"#EXT-X-PART-INF:PART-TARGET=([\d.]+)")


@dataclass(frozen=True)
class PartRef:
    """One part of the media playlist, placed on the server's clock (UNIX seconds)."""

    msn: int
    index: int
    uri: str  # absolute
    start: float
    duration: float
    byte_range: str | None = None  # "first-last" of its segment (the hint: "first-"); None: all

    @property
    def end(self) -> float:
        return self.start + self.duration


@dataclass(frozen=True)
class Playlist:
    media_sequence: int
    init_uri: str
    part_target: float
    part_hold_back: float
    parts: list[PartRef]  # listed parts, playlist order
    hint: PartRef | None  # the preload-hinted part (duration = PART-TARGET, an estimate)


@functools.lru_cache(maxsize=64)
def parse_playlist(text: str, url: str) -> Playlist:
    """The parts of a live LL-HLS media playlist with their media times (needs a PDT).

    Memoised per process on (text, url): a thousand listeners in one load generator receive the
    same few playlist versions, and parsing each once instead of once per listener is what lets
    one generator core keep thousands of players at the live edge. The result is shared: callers
    must not change it."""
    media_sequence = 0
    init_uri = ""
    part_target = 0.0
    part_hold_back = 0.0
    clock: float | None = None
    msn: int | None = None
    index = 0
    parts: list[PartRef] = []
    hint: PartRef | None = None
    for line in text.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            media_sequence = int(line.split(":", 1)[1])
            msn = media_sequence
        elif line.startswith("#EXT-X-MAP:"):
            init_uri = urljoin(url, line.split('URI="', 1)[1].split('"', 1)[0])
        elif line.startswith("#EXT-X-SERVER-CONTROL:"):
            found = _PHB.search(line)
            part_hold_back = float(found.group(1)) if found else 0.0
        elif line.startswith("#EXT-X-PART-INF:"):
            found = _PART_TARGET.search(line)
            part_target = float(found.group(1)) if found else 0.0
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:") and clock is None:
            clock = datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00")).timestamp()
        elif line.startswith("#EXT-X-PART:") and clock is not None and msn is not None:
            found = _PART.match(line)
            if found:
                duration = float(found.group(1))
                uri = urljoin(url, found.group(2))
                length, offset = found.group(3), found.group(4)
                span = f"{offset}-{int(offset) + int(length) - 1}" if length and offset else None
                parts.append(PartRef(msn, index, uri, clock, duration, span))
                clock += duration
                index += 1
        elif line.startswith("#EXTINF:") and clock is not None and msn is not None:
            if index == 0:  # a segment whose parts have left the playlist: advance by its length
                clock += float(line.split(":", 1)[1].split(",", 1)[0])
        elif line and not line.startswith("#") and msn is not None:
            msn += 1  # a segment URI closes the segment
            index = 0
        elif line.startswith("#EXT-X-PRELOAD-HINT:") and clock is not None and msn is not None:
            found = _HINT.match(line)
            if found:
                span = f"{found.group(2)}-" if found.group(2) is not None else None
                hint = PartRef(msn, index, urljoin(url, found.group(1)), clock, part_target, span)
    return Playlist(media_sequence, init_uri, part_target, part_hold_back, parts, hint)


@dataclass
class PlayerStats:
    """What one or many listeners saw; `merge` adds another's counts."""

    requests: int = 0
    bytes: int = 0
    parts: int = 0
    stalls: int = 0
    joins: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    lateness: list[float] = field(default_factory=list)  # arrival − media end, per part (s)
    part_times: list[float] = field(default_factory=list)  # arrival (monotonic), per part

    def merge(self, other: PlayerStats) -> None:
        self.requests += other.requests
        self.bytes += other.bytes
        self.parts += other.parts
        self.stalls += other.stalls
        self.joins += other.joins
        self.errors.update(other.errors)
        self.lateness.extend(other.lateness)
        self.part_times.extend(other.part_times)

    def summary(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "bytes": self.bytes,
            "parts": self.parts,
            "stalls": self.stalls,
            "joins": self.joins,
            "errors": dict(self.errors),
            "lateness_p50_s": percentile(self.lateness, 50),
            "lateness_p95_s": percentile(self.lateness, 95),
        }


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no data."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


class RequestFailed(Exception):
    def __init__(self, kind: str, retry_after: float | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.retry_after = retry_after


def error_kind(response: Response) -> RequestFailed:
    status = response.status
    raw = response.headers.get("retry-after")
    try:
        retry = float(raw) if raw is not None else None
    except ValueError:
        retry = None
    kind = f"http_{status}" if status not in (429, 503) or raw else f"http_{status}_no_retry_after"
    return RequestFailed(kind, retry)


async def get(
    http: Client, url: str, stats: PlayerStats, byte_range: str | None = None, **params: int
) -> bytes:
    """One GET, counted; raises RequestFailed with the kind of failure."""
    stats.requests += 1
    try:
        response = await http.get(url, params or None, byte_range)
    except HTTPFailure as failure:
        raise RequestFailed(failure.kind) from None
    if response.status != (200 if byte_range is None else 206):
        raise error_kind(response)
    stats.bytes += len(response.content)
    return response.content


PartCallback = Callable[[PartRef, bytes, float], Awaitable[None] | None]


async def run_listener(
    media_url: str,
    until: float,
    stats: PlayerStats,
    on_part: PartCallback | None = None,
    on_init: Callable[[bytes], None] | None = None,
) -> None:
    """Play `media_url` until the monotonic deadline `until`, adding to `stats`."""
    http = Client(media_url, timeout=10.0)
    try:
        while time.monotonic() < until:
            try:
                await _play(http, media_url, until, stats, on_part, on_init)
            except RequestFailed as failed:
                stats.errors[failed.kind] += 1
                pause = failed.retry_after if failed.retry_after is not None else 0.5
                pause *= (
                    1 + random.random() * 0.5
                )  # jitter: a refused crowd must not come back in step
                await asyncio.sleep(max(0.0, min(pause, until - time.monotonic())))
    finally:
        http.close()


async def _play(
    http: Client,
    media_url: str,
    until: float,
    stats: PlayerStats,
    on_part: PartCallback | None,
    on_init: Callable[[bytes], None] | None,
) -> None:
    async def arrived(part: PartRef, data: bytes) -> None:
        wall = time.time()
        stats.parts += 1
        stats.part_times.append(time.monotonic())
        late = wall - part.end
        stats.lateness.append(late)
        if late > playlist.part_hold_back:
            stats.stalls += 1
        if on_part is not None:
            result = on_part(part, data, wall)
            if result is not None:
                await result

    playlist = parse_playlist((await get(http, media_url, stats)).decode(), media_url)
    init = await get(http, playlist.init_uri, stats)
    if on_init is not None:
        on_init(init)
    if playlist.parts:  # first audio: the newest complete part
        newest = playlist.parts[-1]
        await arrived(newest, await get(http, newest.uri, stats, newest.byte_range))
    stats.joins += 1
    while time.monotonic() < until:
        hint = playlist.hint
        if hint is None:  # no hint: the Space ended or the playlist is not low-latency
            raise RequestFailed("no_preload_hint", 1.0)
        data, text = await asyncio.gather(
            get(http, hint.uri, stats, hint.byte_range),
            get(http, media_url, stats, _HLS_msn=hint.msn, _HLS_part=hint.index),
            return_exceptions=True,
        )
        for outcome in (data, text):
            if isinstance(outcome, BaseException):
                raise outcome
        assert isinstance(data, bytes)
        assert isinstance(text, bytes)
        playlist = parse_playlist(text.decode(), media_url)
        # The reload lists the part with its real duration and start: measure against that.
        listed = next(  # the hinted part is at the end of the list: search from there
            (p for p in reversed(playlist.parts) if (p.msn, p.index) == (hint.msn, hint.index)),
            hint,
        )
        await arrived(listed, data)


async def audience(media_url: str, listeners: int, seconds: float) -> PlayerStats:
    total = PlayerStats()
    until = time.monotonic() + seconds
    each = [PlayerStats() for _ in range(listeners)]
    await asyncio.gather(*(run_listener(media_url, until, s) for s in each))
    for stats in each:
        total.merge(stats)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("media_url", help="…/live/{space}/media.m3u8 (origin or edge, loopback)")
    parser.add_argument("--listeners", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if not 1 <= args.listeners <= 20_000 or not 0 < args.seconds <= 3600:
        parser.error("--listeners 1..20000, --seconds 0..3600")
    started = time.process_time()
    stats = asyncio.run(audience(args.media_url, args.listeners, args.seconds))
    cpu = time.process_time() - started
    late = stats.lateness
    print(f"{'listeners':>10} {'requests/s':>11} {'parts':>7} {'stalls':>7} {'late p50':>9} ")
    print(
        f"{args.listeners:>10} {stats.requests / args.seconds:>11.1f} {stats.parts:>7}"
        f" {stats.stalls:>7} {_ms(percentile(late, 50)):>9} late p95 {_ms(percentile(late, 95))}"
        f" errors {dict(stats.errors) or 'none'}"
    )
    print(f"player CPU: {cpu / args.seconds * 100:.1f}% of a core for {args.listeners} listeners")
    if late:
        print(f"lateness mean {statistics.fmean(late) * 1000:.0f} ms (arrival − part media end)")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


if __name__ == "__main__":
    main()
