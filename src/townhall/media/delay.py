"""The listener program path between the mixer and the AAC encoder: the on-air gate and the
broadcast delay line with its dump button.

Sans-I/O: `process(program)` is called once per 20 ms mixer tick with the program mix and returns
exactly one frame for the encoder; `set_on_air`, `set_delay` and `dump` are commands applied between
ticks. No clock is read: a tick *is* 20 ms, and the delay is counted in frames.

Only the listener program passes through here. The stage's mix-minus returns leave the mixer on
their own path, so the stage always hears itself live and untouched, on air or not, delayed or not.

Theory of operation
-------------------
*Ordering: the gate acts before the delay.* Whether audio may reach listeners is decided at the
moment it is spoken: while OFF AIR (the green room) the program is replaced by silence as it
*enters* the delay line. Consequences, all intended:

- Going live with a delay of D starts the delayed program at the moment of Go live: the line holds
  only silence from the green room, so listeners hear D seconds of silence and then what was said
  from Go live on. Nothing said before Go live can leak out through the line (a gate after the
  delay would release the last D seconds of the green room the instant the host pressed Go live).
- Going OFF AIR again (the lifecycle has no such step, but the gate allows it) silences everything
  said from then on at once; what was said on air and is still in the line plays out. To cut that
  too, `dump()`.

*The line* holds exactly `delay_frames` entries between ticks (0 to `MAX_DELAY_FRAMES`, 30 s =
1500 frames, ~2.9 MB at most): each tick appends the gated program and pops the oldest entry, so
there is always exactly one frame out per tick and memory is bounded by the delay. An entry is a
frame of on-air program or `None` for silence (off air, inserted, dumped), so silence costs nothing.
With a delay of 0 the program passes through in the same tick.

*`set_delay` while running* keeps the listener timeline continuous (one frame per tick, always):

- Growing from D1 to D2 appends D2 − D1 of silence at the cut, i.e. at the input end: everything
  already in the line still airs at the time it was due, then listeners hear the inserted silence,
  then what is said from now on, D2 late.
- Shrinking drops the oldest D1 − D2 of the line (the audio due to air next): the change is
  immediate and the listeners' timeline jumps forward. That audio, spoken on air, is never heard;
  it is counted in `frames_dropped_by_shrink`. (Playing it out faster, or shrinking only across
  silence, would keep it but make the new delay take effect at an unpredictable time.)

*`dump()`* replaces everything in the line with silence and keeps its length, so the delay stays
what it was: listeners hear silence where the dumped audio would have been, then what is said after
the dump. It returns the seconds of on-air program discarded (0 if only silence was left).

*Room state rides the line.* Each entry holds the tick's frame and the `roomstate.Cue` the
mixer's side of the room had in that tick (who is on stage, who speaks, on air or not): after a
tick, `aired` says which cue left the line with the frame listeners hear and whether that frame is
program. A dump silences the frames and keeps the cues, so what was dumped shows as nobody
speaking (the stage and on-air state stay as they were); silence inserted by a longer delay has no
cue (the room looks as it did); entries dropped by a shorter delay never come out at all.

*END stops immediately.* When a Space ends, the media pipeline stops ticking and dumps the line:
whatever was still in the delay buffer never reaches listeners or the recording. The stage presses
END believing the Space is over; up to 30 s more of program after that would be the surprise the
delay exists to prevent. A control plane that wants radio-style play-out can set OFF AIR, wait
`delay_s`, then end.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Final

from townhall.media.audio import FRAME_SECONDS, SILENCE, PcmFrame
from townhall.media.roomstate import Cue

__all__ = ["MAX_DELAY_FRAMES", "MAX_DELAY_S", "ProgramGate", "ProgramStats"]

MAX_DELAY_S: Final = 30.0
MAX_DELAY_FRAMES: Final = round(MAX_DELAY_S / FRAME_SECONDS)  # 1500


@dataclass(frozen=True)
class ProgramStats:
    on_air: bool
    delay_frames: int  # the current delay, in 20 ms frames
    ticks: int  # frames processed (one in and one out per tick)
    frames_off_air: int  # program frames replaced by silence because the Space was off air
    frames_dumped: int  # on-air program discarded by `dump()` (END included)
    dumps: int  # calls of `dump()`
    frames_dropped_by_shrink: int  # on-air program discarded because the delay was shortened
    frames_silence_inserted: int  # silence added because the delay was lengthened

    @property
    def delay_s(self) -> float:
        return self.delay_frames * FRAME_SECONDS


class ProgramGate:
    """On-air gate followed by a broadcast delay line; see the module docstring.

    Starts OFF AIR (the green room) with no delay unless told otherwise: a Space is silent to
    listeners until someone decides it is not.
    """

    def __init__(self, *, on_air: bool = False, delay_s: float = 0.0) -> None:
        self._on_air = on_air
        self._line: deque[tuple[PcmFrame | None, Cue | None]] = deque()
        self._aired: tuple[PcmFrame | None, Cue | None] = (None, None)
        self._ticks = 0
        self._off_air = 0
        self._dumped = 0
        self._dumps = 0
        self._dropped_by_shrink = 0
        self._inserted = 0
        self.set_delay(delay_s)
        self._inserted = 0  # the initial fill is not an insertion at a cut

    # -- commands ----------------------------------------------------------------------------------
    @property
    def on_air(self) -> bool:
        return self._on_air

    def set_on_air(self, on_air: bool) -> None:
        """Open or close the gate; takes effect from the next tick's program frame."""
        self._on_air = on_air

    @property
    def delay_frames(self) -> int:
        return len(self._line)

    @property
    def delay_s(self) -> float:
        """The current delay, rounded to whole 20 ms frames."""
        return len(self._line) * FRAME_SECONDS

    def set_delay(self, seconds: float) -> None:
        """Change the delay to `seconds` (0 to 30, rounded to 20 ms) from the next tick on.

        Growing inserts silence at the cut; shrinking drops the oldest buffered audio.
        Raises ValueError outside 0–30 s (or for NaN), changing nothing.
        """
        if not (math.isfinite(seconds) and 0.0 <= seconds <= MAX_DELAY_S):
            raise ValueError(f"delay must be between 0 and {MAX_DELAY_S:g} seconds: {seconds!r}")
        frames = min(round(seconds / FRAME_SECONDS), MAX_DELAY_FRAMES)
        change = frames - len(self._line)
        if change > 0:
            self._line.extend([(None, None)] * change)
            self._inserted += change
        for _ in range(-change):
            if self._line.popleft()[0] is not None:
                self._dropped_by_shrink += 1

    def dump(self) -> float:
        """Discard what is still in the delay line (it airs as silence); the delay is unchanged.

        Returns the seconds of on-air program discarded.
        """
        discarded = sum(1 for frame, _ in self._line if frame is not None)
        if discarded:
            self._line = deque((None, cue) for _, cue in self._line)
        self._dumped += discarded
        self._dumps += 1
        return discarded * FRAME_SECONDS

    # -- audio -------------------------------------------------------------------------------------
    def process(self, program: PcmFrame, cue: Cue | None = None) -> PcmFrame:
        """One tick: the mixer's program frame (and the room's cue) in, the frame listeners hear
        now out; `aired` tells which cue came out with it.

        Neither the frame passed in nor the one returned is written to: the program frame may be
        shared with a speaker's return mix, and silence is one shared read-only frame.
        """
        self._ticks += 1
        entering: tuple[PcmFrame | None, Cue | None] = (program, cue)
        if not self._on_air:
            entering = (None, cue)
            self._off_air += 1
        if self._line:
            self._line.append(entering)
            leaving = self._line.popleft()
        else:
            leaving = entering
        self._aired = leaving
        return SILENCE if leaving[0] is None else leaving[0]

    @property
    def aired(self) -> tuple[Cue | None, bool]:
        """The last tick's output: the cue that left the line with its frame (None: silence the
        line inserted) and whether that frame is program (False: off air, dumped or inserted)."""
        return self._aired[1], self._aired[0] is not None

    # -- counters ----------------------------------------------------------------------------------
    @property
    def stats(self) -> ProgramStats:
        return ProgramStats(
            on_air=self._on_air,
            delay_frames=len(self._line),
            ticks=self._ticks,
            frames_off_air=self._off_air,
            frames_dumped=self._dumped,
            dumps=self._dumps,
            frames_dropped_by_shrink=self._dropped_by_shrink,
            frames_silence_inserted=self._inserted,
        )
