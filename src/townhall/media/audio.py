"""The one PCM format every part of the audio path speaks: 48 kHz mono signed 16-bit, 20 ms frames.

Everything upstream of the mixer is converted to this on arrival and everything downstream starts
from it, so no module needs to know what a browser or a file sent.
"""

from __future__ import annotations

from typing import Any, Final, NewType

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 48_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 960
FRAME_SECONDS = FRAME_MS / 1000

PcmFrame = npt.NDArray[np.int16]
"""One 20 ms frame: shape (FRAME_SAMPLES,), dtype int16, mono."""

SpeakerId = NewType("SpeakerId", str)


def silence() -> PcmFrame:
    return np.zeros(FRAME_SAMPLES, dtype=np.int16)


SILENCE: Final = silence()
"""The one shared frame of silence: read-only (nobody may write into it), so a stage that says
nothing passes this same object along, and `frame is SILENCE` tells later stages (the encoders)
that there is nothing to work on without looking at a sample."""
SILENCE.flags.writeable = False


def downmix_interleaved(samples: npt.NDArray[Any], channels: int) -> PcmFrame:
    """Average interleaved channels into mono (aiortc hands Opus out as packed stereo even for a mono mic)."""
    if channels == 1:
        mono: PcmFrame = samples.reshape(-1).astype(np.int16, copy=False)
        return mono
    wide = samples.reshape(-1, channels).astype(np.int32)
    averaged: PcmFrame = (wide.sum(axis=1) // channels).astype(np.int16)
    return averaged
