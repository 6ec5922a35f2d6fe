"""Captions kept with the recording: one append-only file per Space, read back for replays and
the `.vtt` download.

    <recordings_dir>/<space_id>/captions.jsonl   one JSON object per cue, in the order transcribed:
        {"start": media s, "end": media s, "pdt": UNIX s of its start, "text": "..."}

Across runs (restarts, take-overs) the file continues, like the recording beside it; `pdt` places
each cue on the wall clock, which is what a replay (several runs back to back) and a download
(starting at 0 with the recording) need. A torn last line (a crash mid-write) is skipped.
Appends are small (one line per phrase) and go through `os.write` on an O_APPEND descriptor, so
writers on two nodes during a hand-over cannot interleave within a line.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from townhall.captions.vtt import Cue, document

__all__ = ["CAPTIONS_NAME", "CaptionStore", "StoredCue", "read_cues", "timed_from"]

log = logging.getLogger(__name__)

CAPTIONS_NAME = "captions.jsonl"


@dataclass(frozen=True, slots=True)
class StoredCue:
    cue: Cue
    pdt: float  # UNIX seconds of the cue's start


class CaptionStore:
    def __init__(self, space_dir: Path) -> None:
        self.path = space_dir / CAPTIONS_NAME
        self._fd: int | None = None
        self.error: str | None = None

    def append(self, cue: Cue, pdt: float) -> None:
        """Keep one cue (never raises: a full disk stops the captions' recording, not the Space)."""
        if self.error is not None:
            return
        line = json.dumps(
            {
                "start": round(cue.start, 3),
                "end": round(cue.end, 3),
                "pdt": round(pdt, 3),
                "text": cue.text,
            },
            ensure_ascii=False,
        )
        try:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.write(self._fd, (line + "\n").encode())
        except OSError as exc:
            self.error = f"captions stopped being recorded: {exc}"
            log.warning("%s: %s", self.path, self.error)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_cues(space_dir: Path) -> list[StoredCue]:
    """The cues kept for a Space (blocking file read: call it off the event loop)."""
    try:
        data = (space_dir / CAPTIONS_NAME).read_bytes()
    except OSError:
        return []
    cues = []
    for raw in data.split(b"\n"):
        try:
            item = json.loads(raw)
            cue = Cue(float(item["start"]), float(item["end"]), str(item["text"]))
            cues.append(StoredCue(cue, float(item["pdt"])))
        except (ValueError, KeyError, TypeError):
            continue  # a torn line
    cues.sort(key=lambda c: c.pdt)
    return cues


def timed_from(kept: list[StoredCue], start: float, seconds: float | None = None) -> str | None:
    """The kept cues on air from wall-clock `start` (for `seconds`, or to the end) as one WebVTT
    file timed from 0: the download (from the recording's start) and a clip's captions. None if
    no cue falls in that time."""
    end = math.inf if seconds is None else start + seconds
    cues = []
    for item in kept:
        begin, until = item.pdt, item.pdt + (item.cue.end - item.cue.start)
        if until <= start or begin >= end:
            continue
        cues.append(Cue(max(begin, start) - start, min(until, end) - start, item.cue.text))
    return document(cues) if cues else None
