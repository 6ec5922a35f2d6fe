"""LL-HLS packager: encoded parts in; live media playlist, parts, segments and reload verdicts out.

Sans-I/O: no sockets, clocks, files or tasks. The encoder hands over one `EncodedPart` (a moof+mdat
pair) at a time; the HTTP origin asks for playlist text, media bytes and whether a blocking playlist
reload can be answered yet. Every answer depends only on what was fed in, so the origin can call it
from any number of requests and the tests can drive it part by part.

Theory of operation (section numbers are draft-pantos-hls-rfc8216bis, "HLS 2nd edition"):

* Parts arrive in order. Part `i` of the open segment gets the address `(msn, i)`; after
  `parts_per_segment` parts the segment closes: it gets an `EXTINF` (the sum of its parts'
  durations) and the next segment opens. A segment's URI (`s{msn}.m4s`) names its parts
  concatenated, and is requestable from its first part on: the playlist lists each part as a byte
  range of it (`EXT-X-PART:...,URI="s{msn}.m4s",BYTERANGE="len@off"`, §4.4.4.9) and hints the next
  part by where it will start (`EXT-X-PRELOAD-HINT:...,BYTERANGE-START=off`, §4.4.5.3), so a player
  can fetch each segment once while it is produced and take its parts as they are written (the
  origin streams it), and a part-by-part player still asks for exactly one part at a time. Every
  part also keeps a name of its own (`p{msn}.{i}.m4s`), which recordings and older playlists use. Media sequence
  numbers therefore advance by exactly one per segment and every segment but the last (after
  `end()`) has exactly `parts_per_segment` parts, which is what lets a part address map to a
  position on one line (`msn * parts_per_segment + index`) for the reload limits below.
* Three nested horizons, newest first, all counted in segments so memory is bounded:
  1. EXT-X-PART tags are listed for the open segment and for complete segments that end within
     three target durations of the playlist's end (§6.2.2: parts further back SHOULD be removed,
     and always in playlist order, so we drop them a whole segment at a time).
  2. The live window lists `window_size` complete segments (`window_segments`, raised if needed so
     the playlist never gets shorter than three target durations, §6.2.2).
  3. Segments (with their parts) stay downloadable for `retained_segments` segments: a segment that
     leaves the playlist must stay available for its Availability Duration, and a part whose tag
     was removed for another three target durations (§6.2.2). Older ones are forgotten.
* Numbers written once never change: EXT-X-TARGETDURATION is fixed from the configuration
  (§6.2.1 forbids changing it), PART-TARGET is the configured part length rounded *up* so no part
  ever exceeds it (§4.4.3.7), and the program date-time of every segment is `start_time` plus the
  durations before it, so a listener sees the same mapping however the window has slid.
* Blocking reloads (§6.2.5.2) are a pure function of the request and of what has been produced:
  READY (answer now), WAIT (the origin holds the request until a new part arrives, or its timeout,
  3 target durations, passes) or BAD_REQUEST (malformed, or too far in the future to wait for).
"""

from __future__ import annotations

import enum
import math
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["EncodedPart", "LlHlsPackager", "PackagedPart", "PackagerConfig", "Verdict"]

# The lowest version that covers what we write: EXT-X-MAP in a non-I-frame playlist needs 6 (RFC
# 8216 §7), and §6.2.1 says the version SHOULD NOT be higher than the tags need. The LL-HLS tags
# (EXT-X-PART, EXT-X-PRELOAD-HINT, EXT-X-SERVER-CONTROL) are not tied to a version; only delta
# updates (EXT-X-SKIP, not written here) would need 9.
HLS_VERSION = 6

# Durations are written with 5 decimals; PART-TARGET is kept as an integer count of these units so
# that the written value, TARGETDURATION and PART-HOLD-BACK follow from it exactly.
_UNITS_PER_SECOND = 100_000

_STREAM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PackagerConfig:
    part_target: float  # seconds; exact duration of a full part (e.g. 15 AAC frames = 0.32 s)
    parts_per_segment: int = 6  # a segment = this many consecutive parts
    window_segments: int = 6  # complete segments listed in the live playlist (sliding window)
    codecs: str = "mp4a.40.2"  # for the multivariant playlist
    bandwidth: int = 72_000  # bits/s for the multivariant playlist

    def __post_init__(self) -> None:
        # Written with 5 decimals; anything under a millisecond is a unit mistake, not a part.
        if not (math.isfinite(self.part_target) and self.part_target >= 0.001):
            raise ValueError(f"part_target must be at least 0.001 seconds: {self.part_target}")
        if self.parts_per_segment < 1:
            raise ValueError("parts_per_segment must be at least 1")
        if self.window_segments < 1:
            raise ValueError("window_segments must be at least 1")
        if self.bandwidth < 1:
            raise ValueError("bandwidth must be positive")
        if not self.codecs or not self.codecs.isprintable() or '"' in self.codecs:
            raise ValueError(f"codecs must be a printable string without quotes: {self.codecs!r}")


@dataclass(frozen=True)
class EncodedPart:  # what the encoder hands over: one moof+mdat
    data: bytes
    duration: float  # seconds
    independent: bool = True  # AAC: every part starts with a sync sample


@dataclass(frozen=True, slots=True)
class PackagedPart:
    """A part as the packager numbered it, for observers such as the recorder."""

    stream_id: str
    init_section: bytes
    msn: int
    index: int
    part: EncodedPart
    pdt: float  # UNIX seconds of the part's first sample (the playlist's PROGRAM-DATE-TIME)
    on_air: bool  # the gate was on air when the part was delivered


class Verdict(enum.Enum):
    """Answer to a blocking playlist reload (`_HLS_msn` / `_HLS_part`)."""

    READY = "ready"  # answer with the current playlist now
    WAIT = "wait"  # hold the request until the packager has more (or the origin times out: 503)
    BAD_REQUEST = "bad_request"  # answer 400 at once


@dataclass(frozen=True, slots=True)
class _Segment:
    msn: int
    start: float  # seconds since start_time
    duration: float  # sum of its parts' durations
    parts: tuple[EncodedPart, ...]
    data: bytes  # the parts concatenated: the segment's own URI serves this

    @property
    def end(self) -> float:
        return self.start + self.duration


class LlHlsPackager:
    """One live rendition: numbering, sliding window, playlist text and blocking-reload verdicts."""

    def __init__(
        self,
        config: PackagerConfig,
        *,
        stream_id: str,
        init_section: bytes,
        start_time: float,
        first_msn: int = 0,
        discontinuity_sequence: int | None = None,
    ) -> None:
        if not _STREAM_ID.fullmatch(stream_id):
            raise ValueError(
                f"stream_id must be 1-64 URL-safe characters [A-Za-z0-9_-]: {stream_id!r}"
            )
        if not init_section:
            raise ValueError("init_section is empty")
        if not math.isfinite(start_time):
            raise ValueError("start_time must be finite")
        if first_msn < 0:
            raise ValueError("first_msn must not be negative")
        if discontinuity_sequence is not None and discontinuity_sequence < 0:
            raise ValueError("discontinuity_sequence must not be negative")
        # A run that continues an earlier stream of the same playlist URL (a restart, a
        # take-over) starts a new discontinuity sequence (§4.4.3.3), so a player that reloads
        # across the break knows the timestamps and init section changed. Constant within a run.
        self._discontinuity_sequence = discontinuity_sequence
        self.config = config
        self._stream_id = stream_id
        self._init = init_section
        self._start_time = start_time
        pps = config.parts_per_segment

        # PART-TARGET rounded up to the written precision: every part must be at most PART-TARGET
        # (§4.4.3.7), and 1024-sample AAC parts (0.21333… s) would otherwise round below their own
        # duration.
        self._pt_units = max(1, math.ceil(config.part_target * _UNITS_PER_SECOND - 1e-6))
        segment_units = pps * self._pt_units
        # Fixed for the stream's life (§6.2.1: TARGETDURATION MUST NOT change). No part may exceed
        # PART-TARGET, so no segment exceeds parts_per_segment of them and every EXTINF rounds to
        # at most this (§6.2.1: segment duration rounded to whole seconds ≤ target duration).
        self._target_duration = max(1, -(-segment_units // _UNITS_PER_SECOND))
        # The counts below use a full segment's duration as written, less its rounding (written
        # EXTINFs may sum to a hair under the real durations), so they err towards more segments.
        segment = pps * config.part_target - 1e-5
        target = self._target_duration
        # §6.2.2: a segment MUST NOT leave a live playlist if that leaves it shorter than three
        # target durations, so a window configured too short for that is raised to the minimum.
        self._window = max(config.window_segments, math.ceil(3 * target / segment))
        # How long media stays downloadable, in segments (nominal durations):
        # * a segment removed from the playlist stays available for its Availability Duration
        #   (its own duration + the longest playlist holding it ≈ window + open segment) after it
        #   first appeared (§6.2.2): window + 2 segments;
        # * a part whose EXT-X-PART tag was removed (≤ 3 target durations + 1 part after its segment
        #   closed) stays downloadable for 3 more target durations (§6.2.2).
        self._retained = max(
            self._window + 2, math.ceil((6 * target + config.part_target) / segment)
        )
        # §6.2.5.2: the Advance Part Limit is 3 / PART-TARGET below one second, 3 otherwise.
        self._advance_part_limit = 3 / config.part_target if config.part_target < 1 else 3.0

        self._held: deque[_Segment] = deque()  # complete segments still downloadable, oldest first
        self._open_msn = first_msn
        self._open_start = 0.0
        self._open_parts: list[EncodedPart] = []
        self._open_duration = 0.0
        self._last_part: tuple[int, int] | None = None
        self._ended = False
        self._playlist: str | None = None  # cached text; every change clears it

    # -- feeding ------------------------------------------------------------------------------
    def add_part(self, part: EncodedPart) -> tuple[int, int]:
        """Append the next part; returns its (media sequence number, part index)."""
        if self._ended:
            raise RuntimeError("the stream has ended; no more parts can be added")
        if not part.data:
            raise ValueError("a part must carry data")
        if not (math.isfinite(part.duration) and part.duration > 0):
            raise ValueError(f"part duration must be positive: {part.duration}")
        if part.duration > self.part_target + 1e-9:
            # PART-TARGET is a maximum (§4.4.3.7) and was written at the start; a longer part
            # would make the playlist lie about it and could push a segment past TARGETDURATION.
            raise ValueError(
                f"part of {part.duration:.6f} s exceeds PART-TARGET {self.part_target:.5f} s"
            )
        address = (self._open_msn, len(self._open_parts))
        self._open_parts.append(part)
        self._open_duration += part.duration
        self._last_part = address
        if len(self._open_parts) == self.config.parts_per_segment:
            self._close_open_segment()
        self._playlist = None
        return address

    def end(self) -> None:
        """Close the open segment (if it has parts) and mark the playlist ended (EXT-X-ENDLIST)."""
        if self._ended:
            raise RuntimeError("the stream has already ended")
        if self._open_parts:
            self._close_open_segment()
        self._ended = True
        self._playlist = None

    def _close_open_segment(self) -> None:
        parts = tuple(self._open_parts)
        duration = math.fsum(p.duration for p in parts)
        segment = _Segment(
            self._open_msn, self._open_start, duration, parts, b"".join(p.data for p in parts)
        )
        self._held.append(segment)
        while len(self._held) > self._retained:
            self._held.popleft()
        self._open_msn += 1
        self._open_start = segment.end
        self._open_parts = []
        self._open_duration = 0.0

    # -- state ----------------------------------------------------------------------------------
    @property
    def stream_id(self) -> str:
        return self._stream_id

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def next_part(self) -> tuple[int, int]:
        """The part that will be produced next: the one the preload hint names."""
        return (self._open_msn, len(self._open_parts))

    @property
    def target_duration(self) -> int:
        """EXT-X-TARGETDURATION, seconds; fixed for the stream's life."""
        return self._target_duration

    @property
    def part_target(self) -> float:
        """PART-TARGET as written in the playlist (the configured part length, rounded up)."""
        return self._pt_units / _UNITS_PER_SECOND

    @property
    def part_hold_back(self) -> float:
        """PART-HOLD-BACK as written: a little over 3 × PART-TARGET (§4.4.3.8 asks for ≥ 3×)."""
        return self._part_hold_back_ms() / 1000

    @property
    def blocking_timeout(self) -> float:
        """How long the origin may hold a blocking reload before answering 503 (§6.2.5.2)."""
        return 3.0 * self._target_duration

    @property
    def advance_part_limit(self) -> float:
        """How many parts ahead of the last one a blocking reload may ask for (§6.2.5.2)."""
        return self._advance_part_limit

    @property
    def window_size(self) -> int:
        """Complete segments the live playlist lists: window_segments, or the §6.2.2 minimum."""
        return self._window

    @property
    def retained_segments(self) -> int:
        """Complete segments kept downloadable (the window plus the spec's availability tail)."""
        return self._retained

    @property
    def media_sequence(self) -> int:
        """EXT-X-MEDIA-SEQUENCE: the msn of the first segment in the playlist."""
        held = self._held
        return held[max(0, len(held) - self._window)].msn if held else self._open_msn

    @property
    def held_parts(self) -> int:
        """Parts currently held in memory (complete segments' and the open segment's)."""
        return sum(len(s.parts) for s in self._held) + len(self._open_parts)

    # -- media objects ---------------------------------------------------------------------------
    def init_section(self) -> bytes:
        return self._init

    def part(self, msn: int, index: int) -> bytes | None:
        """The bytes of part `index` of segment `msn`; None if not (or no longer) held."""
        if index < 0:
            return None
        if msn == self._open_msn:
            return self._open_parts[index].data if index < len(self._open_parts) else None
        segment = self._find(msn)
        if segment is None or index >= len(segment.parts):
            return None
        return segment.parts[index].data

    def segment(self, msn: int) -> bytes | None:
        """The bytes of complete segment `msn` (its parts concatenated); None if not held."""
        segment = self._find(msn)
        return segment.data if segment is not None else None

    def segment_so_far(self, msn: int) -> tuple[list[bytes], bool] | None:
        """Segment `msn` as produced so far: its parts' bytes in order, and whether it is complete.

        The open segment is given with the parts it has (none yet, just after the previous one
        closed); None if `msn` is neither held nor open (or the stream ended before opening it).
        The list is a copy: later parts never change what a caller already holds."""
        if msn == self._open_msn and not self._ended:
            return [p.data for p in self._open_parts], False
        segment = self._find(msn)
        if segment is None:
            return None
        return [p.data for p in segment.parts], True

    def answers(self, msn: int | None, part: int | None) -> bool:
        """Whether the current playlist holds what a blocking reload asked for (so the answer
        stays right for everyone asking the same question later), as opposed to a READY verdict
        that hands a client back the live edge (it asked for something older than the window,
        or of an earlier run of the stream)."""
        return (
            msn is not None
            and msn >= self.media_sequence
            and self.verdict(msn, part)[0] is (Verdict.READY)
        )

    def is_future(self, msn: int, index: int) -> bool:
        """True if (msn, index) is the preload-hinted next part, which the origin may wait for."""
        return not self._ended and (msn, index) == self.next_part

    def _find(self, msn: int) -> _Segment | None:
        if not self._held:
            return None
        offset = msn - self._held[0].msn
        return self._held[offset] if 0 <= offset < len(self._held) else None

    def _listed(self) -> list[_Segment]:
        held = self._held
        return [held[i] for i in range(max(0, len(held) - self._window), len(held))]

    # -- blocking reloads --------------------------------------------------------------------------
    def verdict(self, msn: int | None, part: int | None) -> tuple[Verdict, str]:
        """Can a playlist request with `_HLS_msn=msn` / `_HLS_part=part` be answered now?

        The reason text is empty unless the verdict is BAD_REQUEST.
        """
        ready = (Verdict.READY, "")
        if msn is None:
            if part is not None:
                # §6.2.5.2: _HLS_part without _HLS_msn MUST be answered with Bad Request. Checked
                # before anything else so that a URL's answer does not depend on the stream's state.
                return Verdict.BAD_REQUEST, "_HLS_part requires _HLS_msn"
            return ready  # a plain reload
        if msn < 0 or (part is not None and part < 0):
            return Verdict.BAD_REQUEST, "_HLS_msn and _HLS_part must not be negative"
        if self._ended:
            return ready  # §6.2.5.2: directives MUST be ignored once the playlist has EXT-X-ENDLIST
        last_segment = self._open_msn - 1  # the last complete segment's msn (may not exist yet)
        if self._last_part is None and msn <= last_segment + 2:
            # Nothing produced yet (a stream that just started, e.g. after a take-over): whatever
            # older part was asked for, the first answer worth giving lists the first part.
            return Verdict.WAIT, ""
        if msn < self.media_sequence:
            # Already slid out of the window (or asked of an earlier run of the stream): §6.2.5.2
            # says deliver the whole playlist even if the requested segment is no longer in it;
            # the client resynchronises from it.
            return ready
        if msn > last_segment + 2:
            # §6.2.5.2: more than two segments past the last one SHOULD get Bad Request at once.
            return (
                Verdict.BAD_REQUEST,
                f"_HLS_msn={msn} is more than 2 past the last segment ({last_segment})",
            )
        if part is None:
            # _HLS_msn alone: wait for a complete segment with msn M or later (§6.2.5.2).
            return ready if msn <= last_segment else (Verdict.WAIT, "")
        pps = self.config.parts_per_segment
        last = self._last_part
        last_position = last[0] * pps + last[1] if last is not None else self._open_msn * pps - 1
        if msn * pps + part - last_position > self._advance_part_limit:
            # §6.2.5.2: a part beyond the last one by more than the Advance Part Limit SHOULD get
            # Bad Request; the distance counts the requested index as given, so a huge index on
            # the open segment is refused rather than waited for.
            return (
                Verdict.BAD_REQUEST,
                f"_HLS_part={part} of segment {msn} is more than "
                f"{self._advance_part_limit:g} parts past the last part",
            )
        # §6.2.5.2: an index past the segment's final part means part 0 of the next segment, so
        # (M, N >= parts_per_segment) is satisfied exactly when (M+1, 0) exists. Every segment
        # that is not the last of an ended stream has parts_per_segment parts, so positions on the
        # line msn * pps + index order parts the way the playlist does.
        wanted = msn * pps + min(part, pps)
        return ready if last_position >= wanted else (Verdict.WAIT, "")

    # -- playlists ------------------------------------------------------------------------------
    def media_playlist(self) -> str:
        """The current live media playlist (cached until the next part or `end()`)."""
        if self._playlist is None:
            self._playlist = self._render_media_playlist()
        return self._playlist

    def multivariant_playlist(self, media_uri: str, subtitles_uri: str | None = None) -> str:
        """A multivariant playlist naming the one media playlist, with BANDWIDTH and CODECS, and
        with `subtitles_uri` a WebVTT subtitle rendition (live captions) grouped with it."""
        return multivariant_playlist(
            media_uri, self.config.bandwidth, self.config.codecs, subtitles_uri
        )

    def _part_hold_back_ms(self) -> int:
        # Strictly more than 3 × the written PART-TARGET, in whole milliseconds, so the check
        # PART-HOLD-BACK ≥ 3 × PART-TARGET holds even when a client compares binary floats.
        return 3 * self._pt_units * 1000 // _UNITS_PER_SECOND + 1

    def _uri(self, name: str) -> str:
        return f"{self._stream_id}/{name}"

    def _part_lines(self, msn: int, parts: Sequence[EncodedPart]) -> list[str]:
        """EXT-X-PART tags for `parts` (from the first of segment `msn`): byte ranges of it."""
        lines = []
        offset = 0
        for part in parts:
            independent = ",INDEPENDENT=YES" if part.independent else ""
            # §4.4.4.9: BYTERANGE is a quoted-string "<n>[@<o>]"; the offset is written every time
            # so no client has to carry it over from the previous tag.
            lines.append(
                f"#EXT-X-PART:DURATION={part.duration:.5f},"
                f'URI="{self._uri(f"s{msn}.m4s")}",BYTERANGE="{len(part.data)}@{offset}"'
                f"{independent}"
            )
            offset += len(part.data)
        return lines

    def _render_media_playlist(self) -> str:
        pt = self._pt_units
        phb = self._part_hold_back_ms()
        listed = self._listed()
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{HLS_VERSION}",
            f"#EXT-X-TARGETDURATION:{self._target_duration}",
            f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={_fixed(phb, 1000, 3)}",
            f"#EXT-X-PART-INF:PART-TARGET={_fixed(pt, _UNITS_PER_SECOND, 5)}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
            *(
                [f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuity_sequence}"]
                if self._discontinuity_sequence is not None
                else []
            ),
            f'#EXT-X-MAP:URI="{self._uri("init.mp4")}"',
        ]
        if listed or self._open_parts:
            first_start = listed[0].start if listed else self._open_start
            # One date-time for the first segment maps every later one: segments are contiguous
            # and there are no discontinuities within a run (§4.4.4.6).
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{iso8601_ms(self._start_time + first_start)}")
        playlist_end = self._open_start + self._open_duration
        parts_horizon = 3 * self._target_duration  # §6.2.2: parts further back SHOULD go
        for segment in listed:
            # Drop a segment's part tags only once its last part is beyond the horizon: removal
            # stays in playlist order (§6.2.2) and never removes a tag still within the horizon.
            if playlist_end - segment.end <= parts_horizon + 1e-9:
                lines.extend(self._part_lines(segment.msn, segment.parts))
            lines.append(f"#EXTINF:{segment.duration:.5f},")
            lines.append(self._uri(f"s{segment.msn}.m4s"))
        lines.extend(self._part_lines(self._open_msn, self._open_parts))
        if self._ended:
            lines.append("#EXT-X-ENDLIST")
        else:
            # §6.2.6: the hinted part must be requestable now. It starts where the open segment's
            # bytes end; with no BYTERANGE-LENGTH (unknown until encoded) a client asks for an
            # open-ended range, which the origin holds until the part exists and answers with it.
            start = sum(len(p.data) for p in self._open_parts)
            lines.append(
                f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self._uri(f"s{self._open_msn}.m4s")}",'
                f"BYTERANGE-START={start}"
            )
        lines.append("")
        return "\n".join(lines)


SUBTITLES_GROUP = "cc"


def multivariant_playlist(
    media_uri: str, bandwidth: int, codecs: str, subtitles_uri: str | None = None
) -> str:
    """The multivariant playlist of one audio rendition (and optionally its captions)."""
    for uri in (media_uri, subtitles_uri or "-"):
        if not uri or not uri.isprintable() or any(c.isspace() or c == '"' for c in uri):
            raise ValueError(f"a playlist URI must be printable, without spaces: {uri!r}")
    lines = [
        "#EXTM3U",
        # AAC: every part starts with a sync sample, so every segment decodes on its own.
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    stream_inf = f'#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},CODECS="{codecs}"'
    if subtitles_uri is not None:
        # §4.4.6.1: a SUBTITLES rendition; not the default (captions are the listener's choice,
        # the CC button), AUTOSELECT so a player may pick it for a user who asked for captions.
        lines.append(
            f'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="{SUBTITLES_GROUP}",LANGUAGE="en",'
            'NAME="English (live captions)",DEFAULT=NO,AUTOSELECT=YES,FORCED=NO,'
            f'URI="{subtitles_uri}"'
        )
        stream_inf += f',SUBTITLES="{SUBTITLES_GROUP}"'
    # Every EXT-X-STREAM-INF SHOULD carry CODECS (§4.4.6.2): players pick a decoder (hls.js sets
    # up MSE) from it before fetching any media.
    lines += [stream_inf, media_uri, ""]
    return "\n".join(lines)


def _fixed(units: int, per_second: int, digits: int) -> str:
    """An exact decimal from an integer count of 1/per_second units (no binary-float rounding)."""
    return f"{units // per_second}.{units % per_second:0{digits}d}"


def iso8601_ms(unix_seconds: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2023-05-24T22:00:00.000Z (§4.4.4.6)."""
    moment = _EPOCH + timedelta(milliseconds=round(unix_seconds * 1000))
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"
