"""Export: a recording, or a range of it, as one `.m4a` file — by remuxing, never re-encoding.

Used for the host's download (the whole recording) and for clips (a range of at most a minute).
The AAC packets listeners got are copied as they are: no generation loss, and the cost is reading
and rewriting bytes, not encoding.

Theory of operation:

* The recording's timeline is its runs back to back, each run as long as its parts' durations (the
  same timeline the replay playlist plays; a restart's gap is not in it).
* For each run, the parts that overlap the wanted range are a contiguous byte range of its media
  file (parts are appended in order). The demuxer reads the run's init section followed by that
  range through `_RunReader`, a seekable view that never loads the run into memory.
* A packet's place on the timeline is the start of the first selected part plus its distance (in
  the stream's time base) from the first packet demuxed; packets starting inside the range are
  kept. That trims to the AAC frame (21 ms), finer than the part.
* The output's timestamps are rewritten to run on without a gap across runs, and the file is
  written with `+faststart` (the index first), so a browser plays it while downloading.

Blocking (files and PyAV): call it on a worker thread.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from townhall.delivery.recording import IndexEntry, RecordedRun

__all__ = [
    "MAX_EXPORT_BYTES",
    "ExportError",
    "Exported",
    "NothingToExport",
    "TooLarge",
    "Unreadable",
    "recorded_seconds",
    "remux",
    "wall_clock_at",
]

# An export reads at most this much media: about 37 hours at the default 64 kbit/s.
MAX_EXPORT_BYTES = 1 << 30
_EPSILON = 1e-6


class ExportError(Exception):
    """The export cannot be made.

    ExportError
    ├── NothingToExport   the range holds no recorded audio
    ├── TooLarge          the range holds more media than an export may read
    └── Unreadable        FFmpeg could not read the recording or write the file
    """


class NothingToExport(ExportError):
    pass


class TooLarge(ExportError):
    pass


class Unreadable(ExportError):
    pass


@dataclass(frozen=True, slots=True)
class Exported:
    path: Path
    seconds: float  # the audio written
    size: int  # bytes of the file


def recorded_seconds(runs: Sequence[RecordedRun]) -> float:
    """The length of the recording's timeline (runs back to back)."""
    return math.fsum(r.duration for r in runs)


def wall_clock_at(runs: Sequence[RecordedRun], timeline_s: float) -> float | None:
    """When the audio at `timeline_s` of the recording was on air (UNIX seconds, from the parts'
    program date-times), or None if the timeline does not reach that far."""
    at = 0.0
    for run in runs:
        for entry in run.entries:
            if at + entry.duration > timeline_s:
                return entry.pdt + max(0.0, timeline_s - at)
            at += entry.duration
    return None


@dataclass(frozen=True, slots=True)
class _Slice:
    run: RecordedRun
    entries: tuple[IndexEntry, ...]
    start: float  # timeline seconds at the first entry's first sample

    @property
    def offset(self) -> int:
        return self.entries[0].offset

    @property
    def length(self) -> int:
        return self.entries[-1].end - self.entries[0].offset


def _slices(runs: Sequence[RecordedRun], start_s: float, end_s: float) -> list[_Slice]:
    out: list[_Slice] = []
    at = 0.0
    for run in runs:
        chosen: list[IndexEntry] = []
        first_at = 0.0
        for entry in run.entries:
            if at < end_s - _EPSILON and at + entry.duration > start_s + _EPSILON:
                if not chosen:
                    first_at = at
                chosen.append(entry)
            at += entry.duration
        if chosen:
            out.append(_Slice(run, tuple(chosen), first_at))
    return out


class _RunReader(io.RawIOBase):
    """A read-only, seekable view of `init` followed by `length` bytes of `path` from `offset`."""

    def __init__(self, init: bytes, path: Path, offset: int, length: int) -> None:
        super().__init__()
        self._init = init
        self._fd = os.open(path, os.O_RDONLY)
        self._offset = offset
        self._size = len(init) + length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._size - self._pos)
        if want <= 0:
            return 0
        head = len(self._init)
        if self._pos < head:
            n = min(want, head - self._pos)
            view[:n] = self._init[self._pos : self._pos + n]
        else:
            data = os.pread(self._fd, want, self._offset + self._pos - head)
            n = len(data)
            view[:n] = data
        self._pos += n
        return n

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def remux(
    runs: Sequence[RecordedRun],
    out: Path,
    *,
    start_s: float = 0.0,
    end_s: float | None = None,
    max_bytes: int = MAX_EXPORT_BYTES,
) -> Exported:
    """Write the recording's audio in [start_s, end_s) of its timeline to `out` as an .m4a.

    Raises ExportError (see its tree) or OSError (the disk); `out` is removed on failure.
    """
    try:
        return _remux(runs, out, start_s, end_s, max_bytes)
    except av.FFmpegError as exc:
        out.unlink(missing_ok=True)
        raise Unreadable(str(exc)) from exc
    except OSError:
        out.unlink(missing_ok=True)
        raise


def _remux(
    runs: Sequence[RecordedRun],
    out: Path,
    start_s: float,
    end_s: float | None,
    max_bytes: int,
) -> Exported:
    end = recorded_seconds(runs) if end_s is None else end_s
    slices = _slices(runs, start_s, end)
    if not slices:
        raise NothingToExport("no recorded audio in that range")
    if sum(s.length for s in slices) > max_bytes:
        raise TooLarge(f"more than {max_bytes} bytes of media to export")
    written = 0  # output pts, in the output stream's input time base (samples)
    base: Fraction | None = None
    with av.open(str(out), "w", format="ipod", options={"movflags": "+faststart"}) as output:
        stream: Any = None
        for piece in slices:
            init = piece.run.init_path.read_bytes()
            reader = _RunReader(init, piece.run.media_path, piece.offset, piece.length)
            with reader, av.open(reader, "r", format="mp4") as source:
                audio = source.streams.audio[0]
                if stream is None:
                    stream = output.add_stream_from_template(audio)
                    base = audio.time_base
                first_pts: int | None = None
                for packet in source.demux(audio):
                    if packet.pts is None or packet.size == 0:
                        continue  # the demuxer's end-of-stream marker
                    tb = packet.time_base
                    if first_pts is None:
                        first_pts = packet.pts
                    at = piece.start + float((packet.pts - first_pts) * tb)
                    if at < start_s - _EPSILON or at >= end - _EPSILON:
                        continue
                    duration = packet.duration or 1024
                    assert base is not None
                    if tb != base:  # every run comes from the same encoder settings
                        duration = round(duration * tb / base)
                    packet.pts = packet.dts = written
                    packet.time_base = base
                    packet.stream = stream
                    output.mux(packet)
                    written += duration
    if written == 0:
        out.unlink(missing_ok=True)
        raise NothingToExport("no recorded audio in that range")
    assert base is not None
    return Exported(out, float(written * base), out.stat().st_size)
