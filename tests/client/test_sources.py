"""Bot sources run in real time even while no connection reads them (a reconnecting bot)."""

from __future__ import annotations

import time

import numpy as np

from townhall.client.sources import MAX_LATE_S, ToneTrack
from townhall.media.audio import FRAME_SAMPLES, SAMPLE_RATE


async def test_a_tone_nobody_read_for_a_while_skips_the_gap_instead_of_bursting_it() -> None:
    tone = ToneTrack(440)
    first = await tone.recv()
    assert first.pts == 0
    tone._start = time.monotonic() - 5.0  # as if nobody had pulled a frame for 5 s
    resumed = await tone.recv()
    assert resumed.pts is not None
    assert resumed.pts >= (5.0 - MAX_LATE_S) * SAMPLE_RATE, "the gap's frames were skipped"
    # …and the tone goes on where real time is, in phase: the samples are those of that moment.
    t = np.arange(resumed.pts, resumed.pts + FRAME_SAMPLES) / SAMPLE_RATE
    expected = (np.sin(2 * np.pi * 440 * t) * 0.3 * 32767).astype(np.int16)
    assert np.array_equal(resumed.to_ndarray().reshape(-1), expected)
