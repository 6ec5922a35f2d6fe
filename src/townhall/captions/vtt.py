"""WebVTT: timed caption cues as text, for HLS subtitle segments and the `.vtt` download.

Times are seconds of the stream's media timeline (the fMP4 decode times divided by the sample
rate), the same clock the listener page compares `currentTime` and the room messages against.
An HLS WebVTT segment carries an `X-TIMESTAMP-MAP` header (RFC 8216bis §3.5) that ties its cue
times to the media's timestamps; ours maps LOCAL t to MPEGTS t × 90 kHz, so the cue times *are*
media time, written at the segment's own start so the 33-bit MPEGTS value stays in range.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Cue", "document", "parse", "timestamp"]

MPEGTS_HZ = 90_000
MPEGTS_WRAP = 1 << 33  # MPEG-2 timestamps are 33 bits


@dataclass(frozen=True, slots=True)
class Cue:
    """One caption: text shown from `start` to `end` (seconds of media time)."""

    start: float
    end: float
    text: str

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and math.isfinite(self.end) and self.start >= 0):
            raise ValueError(f"cue times must be finite and not negative: {self.start}, {self.end}")
        if self.end <= self.start:
            raise ValueError(f"a cue must end after it starts: {self.start} → {self.end}")


def timestamp(seconds: float) -> str:
    """A WebVTT timestamp, hours always written (they may exceed 99): `01:02:03.456`."""
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def _escape(text: str) -> str:
    """Cue payload text: `&` and `<` are markup in WebVTT, `-->` would end a timing line, and a
    blank line would end the cue; so entities for the first two and `>`, spaces for line breaks."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(text.split())


def document(cues: Iterable[Cue], *, mapped_at: float | None = None, offset: float = 0.0) -> str:
    """A WebVTT file of `cues`, times shifted by `-offset` (a download starts at 0).

    `mapped_at`: write an X-TIMESTAMP-MAP for an HLS segment starting at that media time.
    """
    lines = ["WEBVTT"]
    if mapped_at is not None:
        mpegts = round(mapped_at * MPEGTS_HZ) % MPEGTS_WRAP
        lines.append(f"X-TIMESTAMP-MAP=MPEGTS:{mpegts},LOCAL:{timestamp(mapped_at)}")
    lines.append("")
    for cue in cues:
        text = _escape(cue.text)
        if not text:
            continue
        start = max(0.0, cue.start - offset)
        end = max(start + 0.001, cue.end - offset)
        lines += [f"{timestamp(start)} --> {timestamp(end)}", text, ""]
    return "\n".join(lines) + ("\n" if lines[-1] else "")


_TIME = r"(\d+):(\d\d):(\d\d\.\d{3})"
_TIMING = re.compile(rf"^{_TIME} --> {_TIME}")
_MAP = re.compile(rf"^X-TIMESTAMP-MAP=MPEGTS:(\d+),LOCAL:{_TIME}$")


def _seconds(h: str, m: str, s: str) -> float:
    return int(h) * 3600 + int(m) * 60 + float(s)


def parse(text: str) -> tuple[float | None, list[Cue]]:
    """What a listener reads back from one of our WebVTT files (tests, benches, tools): the
    segment's mapped start (None without an X-TIMESTAMP-MAP) and its cues."""
    lines = text.splitlines()
    mapped_at = None
    cues = []
    for i, line in enumerate(lines):
        mapping = _MAP.match(line)
        if mapping is not None:
            mapped_at = _seconds(*mapping.groups()[1:])
        timing = _TIMING.match(line)
        if timing is not None and i + 1 < len(lines):
            values = timing.groups()
            cues.append(Cue(_seconds(*values[:3]), _seconds(*values[3:]), lines[i + 1]))
    return mapped_at, cues
