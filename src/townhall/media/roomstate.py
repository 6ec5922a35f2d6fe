"""Room state in the stream: what listeners see (on air, stage, speaking, reactions, listener
count, the end), carried in the listener stream itself so it reaches them with the audio it
describes, through the same broadcast delay line, and costs no request of its own.

Sans-I/O: no clock, no asyncio. The media pipeline feeds it one call per 20 ms tick and asks it for
one message per LL-HLS part; the message travels in an `emsg` box (DASH event message, version 1,
ISO/IEC 23009-1 §5.10.3.3) written in front of the part's `moof` (see `fmp4.emsg_box`).

Theory of operation
-------------------
*Two sides of the room.* What the stage does (who is on it, who speaks, whether the Space is on
air) is sampled where the mix is made, as a `Cue` per tick, and enters the delay line *with the
program frame of that tick* (`delay.ProgramGate.process(frame, cue)`): it leaves the line exactly
when that audio airs. So with a 30 s delay the indicator lights 30 s after the words were spoken,
when listeners hear them; a dump replaces the line's frames with silence and the cues' speaking
flags go with them (a cue comes out "spoken" only with a frame that airs, see `aired`), so what
is dumped never shows. What the audience does (reactions, the listener count) is already on the
listeners' time — they react to what they heard — so it is sampled at the line's output, when the
part is made: delaying it again would put it a delay late.

*The timeline* keeps, in input sample positions, the points where the aired view (on air,
speaking, stage) changed; each tick is FRAME_SAMPLES after the last. A part covers input samples
[start, end) (its `tfdt` less the encoder's shift, see `encoder.AacFmp4Encoder.timeline_shift`);
its message gives the view at `start` and every change inside, as offsets in seconds from the
part's presentation time. Changes before the part are folded into its first view and forgotten,
so memory is bounded by the encoder's lag (and by MAX_PENDING_CHANGES in any case).

*Key parts.* The stage (names, roles, mutes) and the audience numbers are the bulky fields: a
part carries them when they changed since the previous part, and always when `key` is set (the
pipeline sets it on the first part of every segment). A listener's loader starts at a segment's
first byte, so the first message it reads is a key part and it never needs the snapshot for them.

Message (UTF-8 JSON, `SCHEME_ID_URI`):
    {"v": 1,
     "views": [[offset_s, {"on_air": bool, "speaking": [user_id…], "stage": [seat…]?}], …],
     "audience": {"reactions": {emoji: n}, "window_s": 10, "listeners": n, "presence_sample": r,
                  "revision": seq (a newer one: read the snapshot again for title and link),
                  "moderation": [{"user_id", "action", "at"}…]}?,
     "ended": true?}
A view without "stage" keeps the previous one's; a seat is {"user_id", "display_name", "role",
"muted"}.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from townhall.media.audio import FRAME_SAMPLES, SAMPLE_RATE

__all__ = [
    "SCHEME_ID_URI",
    "Audience",
    "Cue",
    "RoomTimeline",
    "Seat",
]

SCHEME_ID_URI: Final = "urn:townhall:room:1"  # the emsg scheme the listener page looks for
MAX_PENDING_CHANGES: Final = 4096  # changes not yet sent (the encoder lags by < 0.1 s of them)


@dataclass(frozen=True, slots=True)
class Seat:
    """One member of the stage as listeners see them."""

    user_id: str
    display_name: str
    role: str
    muted: bool


@dataclass(frozen=True, slots=True)
class Cue:
    """The stage side of the room in one tick; rides the delay line beside that tick's frame.

    The pipeline reuses one Cue while nothing changes, so a 30 s line holds references, not
    1500 copies."""

    on_air: bool
    speaking: frozenset[str]
    stage: tuple[Seat, ...]


@dataclass(frozen=True, slots=True)
class Audience:
    """The audience side: reaction totals of the last `window_s` seconds, the listener count, and
    who was removed or banned lately ((user_id, "removed" | "banned", at), for their own page)."""

    reactions: tuple[tuple[str, int], ...] = ()
    listeners: int = 0
    window_s: int = 10
    moderation: tuple[tuple[str, str, float], ...] = ()
    presence_sample: float = 1.0  # the share of listeners asked to beacon (`spaces.audience`)
    revision: int = 0  # the log's last event that changed what only the snapshot says (title, link)


@dataclass(frozen=True, slots=True)
class _View:
    on_air: bool
    speaking: frozenset[str]
    stage: tuple[Seat, ...]


_OFF: Final = _View(False, frozenset(), ())


class RoomTimeline:
    """Aired room views by input sample position in; one message per part out (module docstring)."""

    def __init__(self, start_sample: int = 0) -> None:
        self._next = start_sample  # input position of the next tick's first sample
        self._view = _OFF  # the view at the newest tick
        self._first = _OFF  # the view in force before the oldest pending change
        self._changes: deque[tuple[int, _View]] = deque()
        self._audience: Audience | None = None
        self._sent_stage: tuple[Seat, ...] | None = None
        self._sent_audience: Audience | None = None
        self.changes_dropped = 0  # pending changes forgotten because no part came for them

    def aired(self, cue: Cue | None, program: bool) -> None:
        """One tick: the cue that left the delay line with this tick's frame (None: silence the
        line inserted, which changes nothing) and whether that frame is program that airs (False:
        off air, dumped or inserted silence: nobody is shown speaking)."""
        position = self._next
        self._next += FRAME_SAMPLES
        if cue is None:
            view = _View(self._view.on_air, frozenset(), self._view.stage)
        else:
            view = _View(cue.on_air, cue.speaking if program else frozenset(), cue.stage)
        if view != self._view:
            self._view = view
            if len(self._changes) == MAX_PENDING_CHANGES:
                self._first = self._changes.popleft()[1]
                self.changes_dropped += 1
            self._changes.append((position, view))

    def set_audience(self, audience: Audience) -> None:
        """The audience as it is now: sent with the next part (sampled at the line's output)."""
        self._audience = audience

    def message(self, start: int, samples: int, *, key: bool, ended: bool = False) -> bytes:
        """The message of the part covering input samples [start, start + samples)."""
        while self._changes and self._changes[0][0] <= start:
            self._first = self._changes.popleft()[1]
        views: list[list[Any]] = [[0.0, self._first]]
        end = start + samples
        for position, view in self._changes:
            if position >= end:
                break
            views.append([round((position - start) / SAMPLE_RATE, 3), view])
        body: dict[str, Any] = {"v": 1, "views": []}
        stage = None if key else self._sent_stage
        for entry in views:
            view = entry[1]
            shown: dict[str, Any] = {"on_air": view.on_air, "speaking": sorted(view.speaking)}
            if view.stage != stage:
                shown["stage"] = [_seat_json(seat) for seat in view.stage]
                stage = view.stage
            body["views"].append([entry[0], shown])
        self._sent_stage = stage
        audience = self._audience
        if audience is not None and (key or audience != self._sent_audience):
            body["audience"] = {
                "reactions": dict(audience.reactions),
                "window_s": audience.window_s,
                "listeners": audience.listeners,
                "presence_sample": audience.presence_sample,
                "revision": audience.revision,
                "moderation": [
                    {"user_id": user, "action": action, "at": at}
                    for user, action, at in audience.moderation
                ],
            }
            self._sent_audience = audience
        if ended:
            body["ended"] = True
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _seat_json(seat: Seat) -> Mapping[str, Any]:
    return {
        "user_id": seat.user_id,
        "display_name": seat.display_name,
        "role": seat.role,
        "muted": seat.muted,
    }
