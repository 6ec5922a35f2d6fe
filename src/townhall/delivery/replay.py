"""Replay: a recorded Space as a VOD playlist over the files the recorder left.

Each run's parts are grouped back into the segments the live playlist had (same msn, same bytes,
same URI `{stream}/s{msn}.m4s`), so a segment a cache stored while the Space was live is the very
object the replay names. Runs follow each other oldest first with `#EXT-X-DISCONTINUITY` (and their
own `EXT-X-MAP`) between them: a restart starts a new encoder with a new timeline.

The playlist lists whole segments only, no EXT-X-PART: hls.js in low-latency mode stalls at the
first segment end of an *ended* LL-HLS playlist (see MEDIA-NOTES), and a VOD has no use for parts.
`#EXT-X-PLAYLIST-TYPE:VOD` and `#EXT-X-ENDLIST` tell players it is complete and seekable.

Media bytes are read with positioned reads (`os.pread`) from each run's append-only media file;
the playlist text is built once, from an immutable snapshot of the index.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from townhall.delivery.recording import IndexEntry, RecordedRun, load_runs
from townhall.media.packager import HLS_VERSION, multivariant_playlist

__all__ = ["Replay", "ReplaySegment", "open_replay"]


@dataclass(frozen=True, slots=True)
class ReplaySegment:
    stream_id: str
    msn: int
    duration: float
    pdt: float
    offset: int
    length: int


@dataclass(frozen=True)
class _Run:
    run: RecordedRun
    segments: tuple[ReplaySegment, ...]
    by_msn: dict[int, ReplaySegment]
    parts: dict[tuple[int, int], IndexEntry]


def _segments(run: RecordedRun) -> tuple[ReplaySegment, ...]:
    out: list[ReplaySegment] = []
    group: list[IndexEntry] = []

    def close() -> None:
        if group:
            out.append(
                ReplaySegment(
                    run.stream_id,
                    group[0].msn,
                    math.fsum(e.duration for e in group),
                    group[0].pdt,
                    group[0].offset,
                    group[-1].end - group[0].offset,
                )
            )

    for entry in run.entries:  # entries are contiguous in the media file (parse_index)
        if group and entry.msn != group[0].msn:
            close()
            group = []
        group.append(entry)
    close()
    return tuple(out)


class Replay:
    """A finished recording: VOD playlists, init sections and segments, by the live URIs."""

    def __init__(self, runs: list[RecordedRun]) -> None:
        if not runs:
            raise ValueError("a replay needs at least one recorded run")
        self._runs: dict[str, _Run] = {}
        for run in runs:
            segments = _segments(run)
            parts = {(e.msn, e.index): e for e in run.entries}
            self._runs[run.stream_id] = _Run(run, segments, {s.msn: s for s in segments}, parts)
        self.codecs = runs[-1].codecs
        self.bandwidth = max(r.bandwidth for r in runs)
        self._playlist = self._render()

    @property
    def stream_ids(self) -> list[str]:
        return list(self._runs)

    @property
    def segments(self) -> list[ReplaySegment]:
        return [s for r in self._runs.values() for s in r.segments]

    @property
    def duration(self) -> float:
        return math.fsum(s.duration for s in self.segments)

    def media_playlist(self) -> str:
        return self._playlist

    def multivariant_playlist(self, media_uri: str, subtitles_uri: str | None = None) -> str:
        return multivariant_playlist(media_uri, self.bandwidth, self.codecs, subtitles_uri)

    def init_section(self, stream_id: str) -> bytes | None:
        run = self._runs.get(stream_id)
        if run is None:
            return None
        try:
            return run.run.init_path.read_bytes()
        except OSError:
            return None

    def segment(self, stream_id: str, msn: int) -> bytes | None:
        """The segment's bytes (blocking file read: call it off the event loop)."""
        run = self._runs.get(stream_id)
        segment = run.by_msn.get(msn) if run is not None else None
        if run is None or segment is None:
            return None
        return _read(run.run.media_path, segment.offset, segment.length)

    def part(self, stream_id: str, msn: int, index: int) -> bytes | None:
        """One recorded part's bytes, the same the live stream served under its name (blocking
        file read). A stream whose node died leaves listeners holding a playlist that names
        parts its node produced; the node that took the Space over serves them from here."""
        run = self._runs.get(stream_id)
        entry = run.parts.get((msn, index)) if run is not None else None
        if run is None or entry is None:
            return None
        return _read(run.run.media_path, entry.offset, entry.length)

    def _render(self) -> str:
        segments = self.segments
        # §4.4.3.1: every EXTINF rounded to the nearest integer must be ≤ TARGETDURATION.
        target = max(1, max(math.ceil(s.duration - 1e-6) for s in segments))
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{HLS_VERSION}",
            f"#EXT-X-TARGETDURATION:{target}",
            "#EXT-X-PLAYLIST-TYPE:VOD",
            "#EXT-X-MEDIA-SEQUENCE:0",
            "#EXT-X-INDEPENDENT-SEGMENTS",
        ]
        for n, run in enumerate(self._runs.values()):
            if n:
                lines.append("#EXT-X-DISCONTINUITY")
            sid = run.run.stream_id
            lines.append(f'#EXT-X-MAP:URI="{sid}/init.mp4"')
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_iso8601_ms(run.segments[0].pdt)}")
            for segment in run.segments:
                lines.append(f"#EXTINF:{segment.duration:.5f},")
                lines.append(f"{sid}/s{segment.msn}.m4s")
        lines.append("#EXT-X-ENDLIST")
        lines.append("")
        return "\n".join(lines)


def _read(path: Path, offset: int, length: int) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.pread(fd, length, offset)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) == length else None


def _iso8601_ms(unix_seconds: float) -> str:
    """ISO 8601 UTC with milliseconds, as the live playlist writes its PROGRAM-DATE-TIME."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=round(unix_seconds * 1000))
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def open_replay(space_dir: Path) -> Replay | None:
    """The replay of what is recorded under `space_dir`; None if nothing playable is there."""
    runs = load_runs(space_dir)
    return Replay(runs) if runs else None
