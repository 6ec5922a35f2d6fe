"""The live subtitle rendition: timed cues in; a WebVTT media playlist and its segments out.

Sans-I/O, like the packager beside it. Theory of operation:

* Subtitle segments are the audio's segments: segment `msn` covers the same media time as the
  audio segment `msn` (`origin` + k × `segment_s`), has the same EXTINF, media sequence number and
  PROGRAM-DATE-TIME, so a player lines the two renditions up by number or by date and an HTTP
  cache sees the same shape of names.
* A segment is *published* (listed, and its `.vtt` served) only once the transcription is done
  through its end (`advance`): the transcriber answered for every window of speech before it, or
  dropped them. From then on its bytes never change (cached as immutable), so a cue that arrives
  for published time is clipped to start where the published time ends; it cannot happen in order
  (the adapter only advances past windows that were answered) and is counted if it does.
* The subtitle playlist therefore trails the audio by the transcription delay, which varies: an
  answer that comes late publishes many segments at once. So a segment stays listed for a whole
  window's time *after it was published* (measured on the program's media time, `now`), not just
  while it is among the newest `window`: a player reloading every target duration sees every
  segment, however they were bunched.
* It is a plain live
  playlist (no parts, no blocking reload): a player reloads it every target duration, which costs a
  listener who turned captions on about one request per segment, and nothing for the others.
* A cue that spans a segment boundary is written into every segment it overlaps (RFC 8216bis
  §3.5 allows it; players drop the repeats).
* Memory is bounded: cues and segments older than `retained` segments are forgotten (the recording
  keeps them, see `store`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from townhall.captions.vtt import Cue, document
from townhall.media.packager import HLS_VERSION, iso8601_ms

__all__ = ["CaptionTrack", "TrackShape", "vod_playlist"]


@dataclass(frozen=True)
class TrackShape:
    """Where the audio's segments lie: what the subtitle segments must match."""

    stream_id: str
    first_msn: int
    origin: float  # media seconds where segment `first_msn` starts
    segment_s: float  # every segment's duration (the audio's are all equal but the last)
    start_time: float  # UNIX seconds of segment `first_msn` (its PROGRAM-DATE-TIME)
    target_duration: int
    window: int  # segments listed
    retained: int  # segments kept downloadable
    discontinuity_sequence: int | None = None


class CaptionTrack:
    def __init__(self, shape: TrackShape) -> None:
        self.shape = shape
        self._cues: deque[Cue] = deque()
        self._published = shape.first_msn  # segments before this msn are published
        self._now = shape.origin  # the program's media time at the latest `advance`
        # (first msn of a publication, the program's media time then), oldest first
        self._publications: deque[tuple[int, float]] = deque()
        self._listed_from: int | None = None  # the first msn of the playlist as last rendered
        self._ended = False
        self._last_end: float | None = None  # an ended stream's last, short segment ends here
        self.late_cues = 0  # cues that arrived for time already published (clipped or dropped)
        self._playlist: str | None = None

    # -- feeding ---------------------------------------------------------------------------------
    def segment_start(self, msn: int) -> float:
        return self.shape.origin + (msn - self.shape.first_msn) * self.shape.segment_s

    @property
    def published_until(self) -> float:
        """Media time up to which subtitle segments are final."""
        return self.segment_start(self._published)

    def add(self, cue: Cue) -> None:
        """A cue from the transcriber (in media time order, mostly)."""
        if self._ended:
            return
        horizon = self.published_until
        if cue.start < horizon:
            self.late_cues += 1
            if cue.end <= horizon + 0.05:
                return
            cue = Cue(horizon, cue.end, cue.text)
        self._cues.append(cue)
        self._playlist = None

    def advance(self, done: float, now: float | None = None) -> None:
        """Transcription is final for media time before `done`, and the program is at `now`
        (default: `done`): publish the segments `done` covers."""
        if self._ended:
            return
        self._now = max(self._now, done if now is None else now)
        published = self._published
        while self.segment_start(published + 1) <= done + 1e-6:
            published += 1
        if published != self._published:
            self._publications.append((self._published, self._now))
            self._published = published
            self._forget()
            self._playlist = None
        elif self._publications and self._first_listed() != self._listed_from:
            self._playlist = None

    def _first_listed(self) -> int:
        """The oldest segment listed: the newest `window`, and all published within a window's
        time of `now` (never one no longer held)."""
        shape = self.shape
        first = self._published - shape.window
        horizon = self._now - shape.window * shape.segment_s
        for msn, when in self._publications:
            if when >= horizon:
                first = min(first, msn)
                break
        return max(shape.first_msn, first, self._published - shape.retained)

    def end(self, done: float) -> None:
        """The stream ended at media time `done`: publish through it (a last, short segment)."""
        if self._ended:
            return
        self.advance(done)
        if done > self.published_until + 1e-6:
            self._last_end = done
            self._published += 1
        self._ended = True
        self._playlist = None

    def _forget(self) -> None:
        while (
            self._publications and self._publications[0][0] < self._published - self.shape.retained
        ):
            self._publications.popleft()
        oldest = self.segment_start(self._published - self.shape.retained)
        while self._cues and self._cues[0].end <= oldest:
            self._cues.popleft()

    # -- reading ---------------------------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def published(self) -> int:
        """The number of the first segment not yet published."""
        return self._published

    def _end_of(self, msn: int) -> float:
        end = self.segment_start(msn + 1)
        if self._ended and msn == self._published - 1 and self._last_end is not None:
            end = self._last_end
        return end

    def segment(self, msn: int) -> str | None:
        """Segment `msn` as WebVTT, or None if not published or no longer held."""
        if not (self._published - self.shape.retained <= msn < self._published):
            return None
        if msn < self.shape.first_msn:
            return None
        start, end = self.segment_start(msn), self._end_of(msn)
        cues = [c for c in self._cues if c.start < end and c.end > start]
        return document(cues, mapped_at=start)

    def media_playlist(self) -> str:
        if self._playlist is None:
            self._playlist = self._render()
        return self._playlist

    def _render(self) -> str:
        shape = self.shape
        first = self._listed_from = self._first_listed()
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{HLS_VERSION}",
            f"#EXT-X-TARGETDURATION:{shape.target_duration}",
            f"#EXT-X-MEDIA-SEQUENCE:{first}",
        ]
        if shape.discontinuity_sequence is not None:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{shape.discontinuity_sequence}")
        if first < self._published:
            pdt = shape.start_time + (first - shape.first_msn) * shape.segment_s
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{iso8601_ms(pdt)}")
        for msn in range(first, self._published):
            duration = self._end_of(msn) - self.segment_start(msn)
            lines.append(f"#EXTINF:{duration:.5f},")  # as the audio's are written
            lines.append(f"{shape.stream_id}/c{msn}.vtt")
        if self._ended:
            lines.append("#EXT-X-ENDLIST")
        lines.append("")
        return "\n".join(lines)


def vod_playlist(duration: float, uri: str) -> str:
    """A replay's subtitle playlist: every kept caption in one WebVTT segment as long as the
    replay (the cues carry media time, which runs on across the recording's runs)."""
    return "\n".join(
        [
            "#EXTM3U",
            f"#EXT-X-VERSION:{HLS_VERSION}",
            f"#EXT-X-TARGETDURATION:{max(1, math.ceil(duration))}",
            "#EXT-X-PLAYLIST-TYPE:VOD",
            f"#EXTINF:{duration:.5f},",
            uri,
            "#EXT-X-ENDLIST",
            "",
        ]
    )
