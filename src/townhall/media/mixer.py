"""The stage mixer: every 20 ms, one program mix for listeners and a mix-minus for each speaker.

Sans-I/O: the asyncio adapter (`pipeline`) calls `push` whenever a decoded speaker frame arrives and
`tick` every 20 ms from its monotonic clock. The mixer reads no clock: a tick *is* 20 ms of audio,
its number is the timeline. `tick` always returns a frame, silence when nobody talks, so the stream
never stalls because a speaker did (SPEC principle 4).

Theory of operation
-------------------
*Per speaker* a `JitterBuffer` reorders, bounds and paces frames (see `jitter`); each tick it yields
one frame, a concealment frame, or nothing. A muted speaker's buffer is still drained every tick
(so unmuting is instant and nothing piles up) and what it yields is discarded, including the
concealment that would otherwise follow: muted audio never reaches anyone, not even 10 ms of it.

*Contributors.* A speaker contributes this tick if the frame they yield has any nonzero sample
(`frame.any()`, about a microsecond): an exact test, as an all-zero frame adds nothing to any mix.
Low-level noise counts as contributing; that only costs a distinct mix-minus, never correctness.

*Mixes.* Contributors are stacked into a (k, 960) float64 array (int16 sums are exact in float64):
the program is the column sum, and contributor i's mix-minus is that sum minus row i. A speaker who
contributed nothing hears exactly the program, so every such speaker maps to `PROGRAM` and only
contributors get their own key (`minus:<speaker>`): with 13 on stage and one talking, there are two
mixes, and the adapter encodes each distinct mix once.

*Silence* is the shared read-only `SILENCE` frame wherever the mixer can tell without looking:
the program when nobody contributes, and a lone contributor's mix-minus (everyone but them is
nobody), each while its limiter has no reduction to release (`Limiter.silence`). The encoders
downstream recognise it by identity and skip their work.

*Limiting.* Each distinct mix goes through its own `Limiter`, whose envelope persists across ticks:
one for the program, one per speaker while they are on stage. When a speaker starts contributing
after a tick of silence, they were hearing the program until then, so their limiter takes over the
program limiter's envelope first: their return's gain continues instead of resuming from a stale
state.

*Levels and speaking.* A contributor's level is the RMS of their frame (before mixing) in dBFS
relative to a full-scale square wave (a full-scale sine reads −3 dBFS); everyone else reads
`LEVEL_FLOOR_DBFS`, a finite floor so it can go into JSON events. A speaker is *speaking* from the
first tick their level reaches `speaking_threshold_dbfs` until `speaking_hold_s` after the last
such tick: the hold bridges the pauses between words so indicators do not flicker. Muting clears
the flag at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, NewType

import numpy as np

from townhall.media.audio import FRAME_SAMPLES, FRAME_SECONDS, PcmFrame, SpeakerId
from townhall.media.jitter import JitterBuffer, JitterStats
from townhall.media.limiter import Limiter

MixKey = NewType("MixKey", str)

PROGRAM: Final = MixKey("program")
LEVEL_FLOOR_DBFS: Final = -120.0  # levels never read lower; silence reads exactly this
_FULL_SCALE_POWER_DB: Final = 20.0 * math.log10(32768.0)


def minus_key(speaker: SpeakerId) -> MixKey:
    """The key of the mix a contributing speaker hears: everyone but themselves."""
    return MixKey(f"minus:{speaker}")


@dataclass(frozen=True)
class MixerConfig:
    prefill_frames: int = 2  # frames buffered per speaker before their audio plays (absorbs jitter)
    max_buffer_frames: int = 8  # beyond this the oldest are dropped (drift, bursts): latency bound
    limiter_threshold: float = 0.891  # ~ -1 dBFS, as a fraction of full scale
    limiter_release_s: float = 0.25  # time constant of the limiter's gain recovery
    speaking_threshold_dbfs: float = -45.0
    speaking_hold_s: float = 0.3  # speaking stays on this long after the last loud tick
    resync_frames: int = 50  # a pts jump of more than 1 s either way is a restarted sender clock
    trim_window_frames: int = 100  # drop a frame if a buffer kept excess cushion for 2 s; 0 = off

    def __post_init__(self) -> None:
        if not 1 <= self.prefill_frames <= self.max_buffer_frames:
            raise ValueError("need 1 <= prefill_frames <= max_buffer_frames")
        if self.resync_frames < self.max_buffer_frames:
            raise ValueError("resync_frames must be at least max_buffer_frames")
        if self.trim_window_frames < 0:
            raise ValueError("trim_window_frames must be >= 0")
        if not 0.0 < self.limiter_threshold <= 1.0:
            raise ValueError("limiter_threshold must be in (0, 1]")
        if not self.limiter_release_s > 0.0:
            raise ValueError("limiter_release_s must be positive")
        if self.speaking_hold_s < 0.0:
            raise ValueError("speaking_hold_s must be >= 0")


@dataclass(frozen=True)
class MixResult:
    tick: int  # tick counter: 0 for the first tick, +1 (20 ms) per tick
    program: PcmFrame  # what listeners hear: everyone, limited
    mixes: Mapping[MixKey, PcmFrame]  # every distinct mix produced this tick, PROGRAM included
    returns: Mapping[SpeakerId, MixKey]  # which mix each speaker hears (everyone but themselves)
    levels: Mapping[SpeakerId, float]  # dBFS of each speaker's contribution; floor if none
    speaking: frozenset[SpeakerId]  # level ≥ speaking_threshold_dbfs within last speaking_hold_s


@dataclass(frozen=True)
class MixerStats:
    ticks: int
    speakers: Mapping[SpeakerId, JitterStats]  # those on stage now
    total: JitterStats  # everyone ever on stage, removed speakers included
    frames_ignored_unknown: int  # pushed for a speaker not on stage
    frames_rejected: int  # not a (960,) int16 array

    @property
    def frames_played(self) -> int:
        return self.total.frames_played

    @property
    def frames_dropped_late(self) -> int:
        return self.total.frames_dropped_late

    @property
    def frames_dropped_overflow(self) -> int:
        return self.total.frames_dropped_overflow

    @property
    def gaps_filled(self) -> int:
        return self.total.gaps_filled


class _Speaker:
    __slots__ = ("buffer", "key", "limiter", "muted")

    def __init__(self, speaker: SpeakerId, config: MixerConfig, muted: bool) -> None:
        self.buffer = JitterBuffer(
            prefill_frames=config.prefill_frames,
            max_frames=config.max_buffer_frames,
            resync_frames=config.resync_frames,
            trim_window=config.trim_window_frames,
        )
        self.key = minus_key(speaker)
        self.limiter = Limiter(config.limiter_threshold, config.limiter_release_s)
        self.muted = muted


class Mixer:
    """Mixes the stage once per tick; see the module docstring."""

    def __init__(self, config: MixerConfig = MixerConfig()) -> None:
        self.config = config
        self._speakers: dict[SpeakerId, _Speaker] = {}
        self._program_limiter = Limiter(config.limiter_threshold, config.limiter_release_s)
        self._contributed: set[SpeakerId] = set()  # contributors of the previous tick
        self._speaking_until: dict[SpeakerId, int] = {}  # last tick each speaker's flag holds
        self._hold_ticks = round(config.speaking_hold_s / FRAME_SECONDS)
        self._tick = 0
        self._retired = JitterStats()
        self._ignored_unknown = 0
        self._rejected = 0

    # -- stage -------------------------------------------------------------------------------------
    @property
    def speakers(self) -> frozenset[SpeakerId]:
        return frozenset(self._speakers)

    def is_muted(self, speaker: SpeakerId) -> bool:
        return self._speakers[speaker].muted

    def add_speaker(self, speaker: SpeakerId, *, muted: bool = False) -> None:
        """Put a speaker on the mix. Adding one already there starts them over (new connection)."""
        self.remove_speaker(speaker)
        self._speakers[speaker] = _Speaker(speaker, self.config, muted)

    def remove_speaker(self, speaker: SpeakerId) -> None:
        """Take a speaker off the mix, discarding their buffered audio. Unknown speaker: no-op."""
        entry = self._speakers.pop(speaker, None)
        if entry is None:
            return
        entry.buffer.clear()
        self._retired = self._retired + entry.buffer.stats
        self._contributed.discard(speaker)
        self._speaking_until.pop(speaker, None)

    def set_muted(self, speaker: SpeakerId, muted: bool) -> None:
        """Mute or unmute; takes effect from the next tick. Raises KeyError for a speaker not on
        stage, so that a mute can never be lost silently."""
        entry = self._speakers[speaker]
        entry.muted = muted
        entry.buffer.forget_last()  # never conceal with audio from the other side of the switch
        if muted:
            self._speaking_until.pop(speaker, None)

    # -- audio -------------------------------------------------------------------------------------
    def push(self, speaker: SpeakerId, frame: PcmFrame, pts: int | None = None) -> None:
        """A decoded frame from a speaker; `pts` in 1/48000 s (RTP-based) or None for arrival order.

        Unknown speakers (e.g. frames still in flight after removal) and malformed frames are
        ignored and counted. The frame is copied, so the caller may reuse its array.
        """
        entry = self._speakers.get(speaker)
        if entry is None:
            self._ignored_unknown += 1
            return
        if (
            not isinstance(frame, np.ndarray)
            or frame.shape != (FRAME_SAMPLES,)
            or frame.dtype != np.int16
        ):
            self._rejected += 1
            return
        entry.buffer.push(frame.copy(), pts)

    def tick(self) -> MixResult:
        """Produce this tick's 20 ms: always a program frame, one mix per distinct return."""
        now = self._tick
        self._tick += 1

        ids: list[SpeakerId] = []
        frames: list[PcmFrame] = []
        for speaker, entry in self._speakers.items():
            frame = entry.buffer.next_frame()  # drained even when muted
            if frame is not None and not entry.muted and frame.any():
                ids.append(speaker)
                frames.append(frame)

        returns: dict[SpeakerId, MixKey] = dict.fromkeys(self._speakers, PROGRAM)
        levels: dict[SpeakerId, float] = dict.fromkeys(self._speakers, LEVEL_FLOOR_DBFS)
        mixes: dict[MixKey, PcmFrame]
        if frames:
            stack = np.array(frames, dtype=np.float64)
            total = stack.sum(axis=0)
            power = np.einsum("ij,ij->i", stack, stack) / FRAME_SAMPLES
            dbfs = 10.0 * np.log10(power) - _FULL_SCALE_POWER_DB  # power > 0: frames are nonzero
            threshold = self.config.speaking_threshold_dbfs
            entries = [self._speakers[speaker] for speaker in ids]
            for speaker, entry, level_db in zip(ids, entries, dbfs.tolist(), strict=True):
                if speaker not in self._contributed:  # was hearing the program until now
                    entry.limiter.take_over(self._program_limiter)
                returns[speaker] = entry.key
                levels[speaker] = level = max(level_db, LEVEL_FLOOR_DBFS)
                if level >= threshold:
                    self._speaking_until[speaker] = now + self._hold_ticks
            mixes = {PROGRAM: self._program_limiter.process(total)}
            if len(entries) == 1:  # a lone voice's mix-minus is exactly silence
                mixes[entries[0].key] = entries[0].limiter.silence()
            else:
                for i, entry in enumerate(entries):
                    mixes[entry.key] = entry.limiter.process(total - stack[i])
        else:
            mixes = {PROGRAM: self._program_limiter.silence()}
        self._contributed = set(ids)

        for speaker in [s for s, until in self._speaking_until.items() if until < now]:
            del self._speaking_until[speaker]
        return MixResult(
            tick=now,
            program=mixes[PROGRAM],
            mixes=mixes,
            returns=returns,
            levels=levels,
            speaking=frozenset(self._speaking_until),
        )

    # -- counters ----------------------------------------------------------------------------------
    @property
    def stats(self) -> MixerStats:
        speakers = {s: e.buffer.stats for s, e in self._speakers.items()}
        total = self._retired
        for one in speakers.values():
            total = total + one
        return MixerStats(
            ticks=self._tick,
            speakers=speakers,
            total=total,
            frames_ignored_unknown=self._ignored_unknown,
            frames_rejected=self._rejected,
        )
