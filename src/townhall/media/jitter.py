"""One speaker's jitter buffer: frames that arrive late, early, out of order, in bursts or not at
all become exactly one frame (or nothing) per 20 ms mixer tick.

aiortc's own receive buffer is small and conceals nothing (MEDIA-NOTES), so timing, gaps and clock
drift are owned here. The buffer is sans-I/O: `push` is fed frames with the sender's pts and
`next_frame` is called once per tick; neither reads a clock.

Theory of operation
-------------------
*Slots.* Every frame is given an integer slot: the tick-sized place it occupies in the sender's
timeline. With a pts (1/48000 s, RTP-timestamp based) the slot is the pts difference to a reference
on the stream's 960-sample grid, in frames, rounded (so pts jitter of under half a frame never
accumulates); the difference is taken modulo 2**32 and the reference follows the newest frame, so
an RTP timestamp wrapping around (every ~25 h, from a random start) is just the next frame. Without
a pts a frame takes the slot after the newest one: arrival order. (Do not mix both on one stream.)

*States.* The buffer is either *prefilling* or *playing*.

- Prefilling: frames are collected and nothing plays. Playback starts, from the oldest slot held,
  once `prefill_frames` are held (the cushion that absorbs arrival jitter), or once the first of
  them has waited `max_frames` ticks, so a lone frame is never stranded.
- Playing: each tick plays the next slot. If that slot is missing but later frames are waiting, it
  is a *gap* (a lost or very late frame): the tick gets concealment/silence and playback moves on.
  If nothing at all is waiting, the buffer has *underrun* (the speaker paused, or the network
  stalled): the tick gets concealment/silence, the slot is not consumed, and the buffer goes back to
  prefilling, so a speaker whose jitter grew gets a larger cushion instead of a gap every tick.

*Late.* A frame whose slot was already played, skipped or dropped (or that duplicates one held) is
late: dropped and counted, never played out of order.

*Bounded latency.* The span from the slot to play next to the newest slot held never exceeds
`max_frames`; when a burst or a fast sender clock pushes past it, the oldest slots are dropped
(counted) on arrival. So no frame ever waits more than `max_frames` ticks, and memory is bounded.
The bound alone would let latency sit at its maximum forever after one burst, so the buffer also
*trims*: if during a whole window of `trim_window` ticks the buffer never held fewer than
`prefill_frames + 1` frames at play time, the cushion is larger than needed and one frame is
dropped, with a 2.5 ms cross-fade across the splice. That also absorbs a sender clock that runs
fast.

*Resync.* A pts more than `resync_frames` away from the newest frame (either way) means the sender
restarted its clock (a reconnect, a new encoder): its frame is placed right after the newest one and
the timeline continues from there, rather than waiting for a far-future slot or dropping a new
timeline as late forever.

*Concealment.* The first missing tick after a played frame is not a hard cut to zero (a click) but
that frame mirrored in time (continuous at the splice) under a 10 ms raised-cosine fade; further
missing ticks are silence (`None`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

import numpy as np
import numpy.typing as npt

from townhall.media.audio import FRAME_SAMPLES, PcmFrame

PTS_MODULUS: Final = 1 << 32  # RTP timestamps are 32-bit
CONCEAL_SAMPLES: Final = 480  # 10 ms fade-out after the last played frame
SPLICE_SAMPLES: Final = 120  # 2.5 ms cross-fade where a trimmed frame was cut out

# Raised-cosine fade from just under 1 down to exactly 0 at the last sample.
_CONCEAL_FADE: Final[npt.NDArray[np.float64]] = 0.5 + 0.5 * np.cos(
    np.pi * np.arange(1, CONCEAL_SAMPLES + 1) / CONCEAL_SAMPLES
)
_SPLICE_RAMP: Final[npt.NDArray[np.float64]] = np.arange(1, SPLICE_SAMPLES + 1) / (
    SPLICE_SAMPLES + 1
)


@dataclass(frozen=True)
class JitterStats:
    """Counters of one speaker's buffer (or, summed with `+`, of several).

    Every received frame ends in exactly one of: played, dropped late, dropped overflow, dropped
    drift, discarded (on `clear`), or is still buffered.
    """

    frames_received: int = 0
    frames_played: int = 0
    frames_dropped_late: int = 0  # slot already played/skipped, or a duplicate
    frames_dropped_overflow: int = 0  # oldest dropped to keep latency ≤ max_frames
    frames_dropped_drift: int = 0  # trimmed because the cushion stayed larger than needed
    frames_discarded: int = 0  # still buffered when the buffer was cleared (speaker removed)
    gaps_filled: int = 0  # ticks with a missing frame while later frames were waiting
    underruns: int = 0  # times the buffer ran dry while playing and went back to prefilling
    resyncs: int = 0  # pts jumps treated as a restarted sender clock

    def __add__(self, other: JitterStats) -> JitterStats:
        return JitterStats(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )


def _wrapped(delta: int) -> int:
    """A pts difference folded into [-2**31, 2**31): a wrapped RTP timestamp is a small step."""
    return (delta + PTS_MODULUS // 2) % PTS_MODULUS - PTS_MODULUS // 2


class JitterBuffer:
    """Reorders, bounds and paces one speaker's frames; see the module docstring."""

    def __init__(
        self,
        *,
        prefill_frames: int = 2,
        max_frames: int = 8,
        resync_frames: int = 50,
        trim_window: int = 100,
    ) -> None:
        if not 1 <= prefill_frames <= max_frames:
            raise ValueError("need 1 <= prefill_frames <= max_frames")
        if resync_frames < max_frames:
            raise ValueError("resync_frames must be at least max_frames")
        if trim_window < 0:
            raise ValueError("trim_window must be >= 0 (0 disables trimming)")
        self.prefill_frames = prefill_frames
        self.max_frames = max_frames
        self.resync_frames = resync_frames
        self.trim_window = trim_window
        self._counts: dict[str, int] = dict.fromkeys((f.name for f in fields(JitterStats)), 0)
        self._reset()

    def _reset(self) -> None:
        self._frames: dict[int, PcmFrame] = {}
        self._playing = False
        self._next = 0  # slot to play at the next tick (while playing)
        self._done: int | None = None  # highest slot played, skipped or dropped; ≤ it is late
        self._newest: int | None = None  # highest slot ever accepted
        self._anchor: tuple[int, int] | None = None  # (pts, slot) of the newest frame with a pts
        self._waited = 0  # ticks spent prefilling with something buffered
        self._last: PcmFrame | None = None  # last played frame, for concealment
        self._window_ticks = 0
        self._window_min = 0

    # -- inspection ------------------------------------------------------------------------------
    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def buffered(self) -> int:
        """Frames held now."""
        return len(self._frames)

    @property
    def latency_frames(self) -> int:
        """Ticks until the newest frame held will play (0 when empty)."""
        if not self._frames or self._newest is None:
            return 0
        start = self._next if self._playing else min(self._frames)
        return self._newest - start + 1

    @property
    def stats(self) -> JitterStats:
        return JitterStats(**self._counts)

    # -- input -----------------------------------------------------------------------------------
    def push(self, frame: PcmFrame, pts: int | None = None) -> bool:
        """Offer a frame; returns whether it was kept (False: late or duplicate, and counted).

        The buffer keeps a reference to `frame`: do not modify it afterwards.
        """
        self._counts["frames_received"] += 1
        slot = self._slot_for(pts)
        if (self._done is not None and slot <= self._done) or slot in self._frames:
            self._counts["frames_dropped_late"] += 1
            return False
        self._frames[slot] = frame
        if self._newest is None or slot > self._newest:
            self._newest = slot
        self._bound_latency()
        return True

    def _slot_for(self, pts: int | None) -> int:
        expected = 0 if self._newest is None else self._newest + 1
        if pts is None:
            return expected
        if self._anchor is None:
            slot = expected
        else:
            anchor_pts, anchor_slot = self._anchor
            delta = _wrapped(pts - anchor_pts)
            slot = anchor_slot + (delta + FRAME_SAMPLES // 2) // FRAME_SAMPLES
            if abs(slot - expected) > self.resync_frames:
                self._counts["resyncs"] += 1
                slot = expected
            elif slot >= expected:
                # Move the reference along its own grid (not to this frame's possibly jittered pts)
                # so that differences stay small across an RTP timestamp wrap.
                pts = (anchor_pts + (slot - anchor_slot) * FRAME_SAMPLES) % PTS_MODULUS
        if slot >= expected:
            self._anchor = (pts, slot)
        return slot

    def _bound_latency(self) -> None:
        assert self._newest is not None
        start = self._next if self._playing else min(self._frames)
        if self._newest - start + 1 <= self.max_frames:
            return
        cut = self._newest - self.max_frames + 1
        for slot in [s for s in self._frames if s < cut]:
            del self._frames[slot]
            self._counts["frames_dropped_overflow"] += 1
        self._done = cut - 1
        if self._playing:
            self._next = cut

    # -- output ----------------------------------------------------------------------------------
    def next_frame(self) -> PcmFrame | None:
        """The frame for this tick: a played frame, a concealment frame, or None (silence)."""
        frames = self._frames
        if not self._playing:
            if not frames:
                return self._conceal()
            self._waited += 1
            if len(frames) < self.prefill_frames and self._waited < self.max_frames:
                return self._conceal()
            self._playing = True
            self._next = min(frames)
            self._done = self._next - 1
            self._window_ticks = 0
            self._window_min = len(frames)

        spliced: PcmFrame | None = None
        if self.trim_window:
            spliced = self._trim()

        frame = frames.pop(self._next, None)
        self._done = self._next
        if frame is not None:
            self._counts["frames_played"] += 1
            self._next += 1
            if spliced is not None:
                frame = _splice(spliced, frame)
            self._last = frame
            return frame
        if frames:
            self._counts["gaps_filled"] += 1
            self._next += 1
            return self._conceal()
        # Ran dry: the slot stays unplayed (its frame may still come) and the cushion is rebuilt.
        self._counts["underruns"] += 1
        self._done = self._next - 1
        self._playing = False
        self._waited = 0
        return self._conceal()

    def _trim(self) -> PcmFrame | None:
        """Once per window: drop one frame if the cushion never shrank to `prefill_frames`."""
        self._window_min = min(self._window_min, len(self._frames))
        self._window_ticks += 1
        if self._window_ticks < self.trim_window:
            return None
        excess = self._window_min > self.prefill_frames
        self._window_ticks = 0
        self._window_min = len(self._frames)
        if not (excess and self._next in self._frames and self._next + 1 in self._frames):
            return None
        dropped = self._frames.pop(self._next)
        self._counts["frames_dropped_drift"] += 1
        self._next += 1
        return dropped

    def _conceal(self) -> PcmFrame | None:
        last, self._last = self._last, None
        if last is None:
            return None
        out = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        mirrored = last[-2 : -2 - CONCEAL_SAMPLES : -1].astype(np.float64)
        out[:CONCEAL_SAMPLES] = np.rint(mirrored * _CONCEAL_FADE)
        return out

    # -- control ---------------------------------------------------------------------------------
    def forget_last(self) -> None:
        """Do not conceal from the frame played last (e.g. it was heard while muted)."""
        self._last = None

    def clear(self) -> None:
        """Discard everything buffered (counted) and start a new timeline."""
        self._counts["frames_discarded"] += len(self._frames)
        self._reset()


def _splice(dropped: PcmFrame, following: PcmFrame) -> PcmFrame:
    """`following`, starting as `dropped` did and cross-fading into itself, so a cut is no click."""
    out = following.copy()
    head = dropped[:SPLICE_SAMPLES].astype(np.float64)
    tail = following[:SPLICE_SAMPLES].astype(np.float64)
    out[:SPLICE_SAMPLES] = np.rint(head + (tail - head) * _SPLICE_RAMP)
    return out
