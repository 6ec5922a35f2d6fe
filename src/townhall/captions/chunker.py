"""Chunking the program for transcription: 20 ms frames in, windows of speech cut at pauses out.

Sans-I/O: `push(frame)` once per media tick with the frame listeners hear (None: the delay line
gave silence — off air, dumped or inserted — which is never transcribed), returns a `Window` when
one is complete. Positions are program samples (48 kHz) on the run's timeline, counted from the
`start` given, one frame per push, so a window's place in media time is exact whatever the clock
did.

Theory of operation: a frame is *voiced* when its RMS level is above `threshold_dbfs`. A window
opens at the first voiced frame (with a little pre-roll, so a word's soft onset is kept) and
closes after `pause_s` of unvoiced frames (a pause between phrases: cutting there keeps words
whole, and the transcriber sees whole phrases), or when it reaches `max_window_s` (someone who
never pauses still gets captions every few seconds). A window with less than `min_voiced_s` of
voiced frames is discarded (a cough, a click): Whisper invents words for near-silence.

`done_through` is the position before which nothing more will come out of the chunker: everything
earlier has been emitted or was silence. The caption track publishes subtitle segments up to it
(once the transcriber has answered for the windows before it).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from townhall.media.audio import FRAME_SAMPLES, SAMPLE_RATE, PcmFrame

__all__ = ["Chunker", "ChunkerConfig", "Window", "level_dbfs"]

FRAME_S = FRAME_SAMPLES / SAMPLE_RATE


@dataclass(frozen=True)
class ChunkerConfig:
    max_window_s: float = 5.0  # a window never exceeds this (Whisper is best on short phrases)
    pause_s: float = 0.4  # unvoiced time that closes a window
    pre_roll_s: float = 0.1  # kept before the first voiced frame
    min_voiced_s: float = 0.25  # shorter bursts are not speech worth captioning
    threshold_dbfs: float = -45.0

    def frames(self, seconds: float) -> int:
        return max(1, round(seconds / FRAME_S))


@dataclass(frozen=True, slots=True)
class Window:
    """Program audio to transcribe: 48 kHz mono int16 from program sample `start`."""

    start: int
    pcm: npt.NDArray[np.int16]

    @property
    def end(self) -> int:
        return self.start + len(self.pcm)


def level_dbfs(frame: PcmFrame) -> float:
    """RMS level of a frame in dBFS (-inf for digital silence)."""
    if not frame.any():
        return -math.inf
    rms = math.sqrt(float(np.mean(np.square(frame, dtype=np.float64)))) / 32768.0
    return 20 * math.log10(rms)


class Chunker:
    def __init__(self, start: int = 0, config: ChunkerConfig | None = None) -> None:
        self.config = config or ChunkerConfig()
        self._next = start  # position of the next frame pushed
        self._max = self.config.frames(self.config.max_window_s)
        self._pause = self.config.frames(self.config.pause_s)
        self._min_voiced = self.config.frames(self.config.min_voiced_s)
        self._pre: deque[tuple[int, PcmFrame]] = deque(
            maxlen=self.config.frames(self.config.pre_roll_s)
        )
        self._frames: list[PcmFrame] = []  # the open window's frames
        self._start = start  # the open window's first position
        self._voiced = 0  # voiced frames in the open window
        self._quiet = 0  # unvoiced frames at the end of the open window
        self.discarded = 0  # windows too short to be speech

    @property
    def position(self) -> int:
        return self._next

    @property
    def done_through(self) -> int:
        """Nothing before this position will be emitted any more."""
        if self._frames:
            return self._start
        return self._pre[0][0] if self._pre else self._next

    def push(self, frame: PcmFrame | None) -> Window | None:
        """One tick's program frame (None: silence from the delay line); a window if one closed."""
        position = self._next
        self._next += FRAME_SAMPLES
        voiced = frame is not None and level_dbfs(frame) > self.config.threshold_dbfs
        if not self._frames:
            if not voiced:
                if frame is not None:
                    self._pre.append((position, frame))
                else:
                    self._pre.clear()  # a dump or off air: nothing before it joins a window
                return None
            self._start = self._pre[0][0] if self._pre else position
            self._frames = [f for _, f in self._pre]
            self._pre.clear()
            self._voiced = self._quiet = 0
        if frame is None:  # a dump or off air cuts the phrase here: none of it is program
            return self._close()
        self._frames.append(frame)
        if voiced:
            self._voiced += 1
            self._quiet = 0
        else:
            self._quiet += 1
        if self._quiet >= self._pause or len(self._frames) >= self._max:
            return self._close()
        return None

    def flush(self) -> Window | None:
        """Close the open window now (the stream ends)."""
        return self._close() if self._frames else None

    def _close(self) -> Window | None:
        keep = len(self._frames) - max(0, self._quiet - 1)  # trailing pause, but one frame
        frames, start, voiced = self._frames[:keep], self._start, self._voiced
        self._frames, self._voiced, self._quiet = [], 0, 0
        if voiced < self._min_voiced:
            self.discarded += 1
            return None
        return Window(start, np.concatenate(frames))
