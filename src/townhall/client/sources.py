"""Audio sources a speaker bot can publish: a steady tone, or a file (looped or once)."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from townhall.media.audio import FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE

TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
MAX_LATE_S = 0.2  # further behind than this (nobody pulled: a reconnect), skip instead of bursting


class PacedTrack(MediaStreamTrack):
    """An audio track that hands out one 20 ms frame per 20 ms of wall clock, like a microphone.

    Like a microphone it goes on in real time while nobody reads it (between two connections of
    a reconnecting bot): the frames of that gap are skipped, not sent late in a burst."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._pts = 0

    def next_samples(self) -> np.ndarray | None:
        raise NotImplementedError

    def skip(self, frames: int) -> bool:
        """Move the source on by `frames` frames unheard; False if it ran out meanwhile."""
        return all(self.next_samples() is not None for _ in range(frames))

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self._pts / SAMPLE_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -MAX_LATE_S:
                missed = int(-wait * SAMPLE_RATE) // FRAME_SAMPLES
                self._pts += missed * FRAME_SAMPLES
                if not self.skip(missed):
                    self.stop()
                    raise MediaStreamError
        samples = self.next_samples()
        if samples is None:
            self.stop()
            raise MediaStreamError
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = TIME_BASE
        self._pts += FRAME_SAMPLES
        return frame


class ToneTrack(PacedTrack):
    def __init__(self, frequency: float, amplitude: float = 0.3) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self._n = 0

    def next_samples(self) -> np.ndarray:
        t = (np.arange(self._n, self._n + FRAME_SAMPLES)) / SAMPLE_RATE
        self._n += FRAME_SAMPLES
        return (np.sin(2 * np.pi * self.frequency * t) * self.amplitude * 32767).astype(np.int16)

    def skip(self, frames: int) -> bool:
        self._n += frames * FRAME_SAMPLES
        return True


class FileTrack(PacedTrack):
    """Decodes a whole audio file up front (bots play short clips) and plays it, looping if asked."""

    MAX_SECONDS = 600

    def __init__(self, path: str, loop: bool = False) -> None:
        super().__init__()
        self.loop = loop
        self._pcm = decode_file(path, self.MAX_SECONDS)
        self._pos = 0

    def next_samples(self) -> np.ndarray | None:
        if self._pos >= len(self._pcm):
            if not self.loop or len(self._pcm) == 0:
                return None
            self._pos = 0
        chunk = self._pcm[self._pos : self._pos + FRAME_SAMPLES]
        self._pos += FRAME_SAMPLES
        if len(chunk) < FRAME_SAMPLES:
            chunk = np.concatenate([chunk, np.zeros(FRAME_SAMPLES - len(chunk), dtype=np.int16)])
        return chunk

    def skip(self, frames: int) -> bool:
        self._pos += frames * FRAME_SAMPLES
        if self._pos < len(self._pcm):
            return True
        if not self.loop or len(self._pcm) == 0:
            return False
        self._pos %= len(self._pcm)
        return True


def decode_file(path: str, max_seconds: float) -> np.ndarray:
    """Any file FFmpeg reads → 48 kHz mono int16, at most max_seconds long."""
    limit = int(max_seconds * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    total = 0
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    with av.open(path) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunk = out.to_ndarray().reshape(-1)
                chunks.append(chunk)
                total += len(chunk)
            if total >= limit:
                break
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    return pcm[:limit].astype(np.int16, copy=False)


__all__ = ["FRAME_SECONDS", "FileTrack", "PacedTrack", "ToneTrack", "decode_file"]
