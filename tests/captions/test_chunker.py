"""Chunking the program on pauses: windows of speech, never silence, never longer than 5 s."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from townhall.captions.chunker import Chunker, Window
from townhall.media.audio import FRAME_SAMPLES, PcmFrame

SPEECH: PcmFrame = (np.sin(np.arange(FRAME_SAMPLES) / 7) * 8000).astype(np.int16)
QUIET: PcmFrame = np.zeros(FRAME_SAMPLES, np.int16)


def feed(chunker: Chunker, frames: list[PcmFrame | None]) -> list[Window]:
    return [w for f in frames if (w := chunker.push(f)) is not None]


def test_a_phrase_is_one_window_cut_at_the_pause_after_it() -> None:
    chunker = Chunker(start=48_000)
    windows = feed(chunker, [QUIET] * 50 + [SPEECH] * 100 + [QUIET] * 50)
    assert len(windows) == 1
    window = windows[0]
    # Starts a little before the first voiced frame (pre-roll), ends just after the last.
    first_voiced = 48_000 + 50 * FRAME_SAMPLES
    assert first_voiced - 6 * FRAME_SAMPLES <= window.start <= first_voiced
    assert first_voiced + 100 * FRAME_SAMPLES <= window.end <= first_voiced + 102 * FRAME_SAMPLES
    assert chunker.done_through == chunker.position - 5 * FRAME_SAMPLES  # only pre-roll held


def test_someone_who_never_pauses_is_cut_every_five_seconds() -> None:
    windows = feed(Chunker(), [SPEECH] * 1000)  # 20 s
    assert [len(w.pcm) for w in windows] == [250 * FRAME_SAMPLES] * 4


def test_silence_and_dumped_audio_are_never_transcribed() -> None:
    chunker = Chunker()
    assert feed(chunker, [QUIET] * 200 + [None] * 200) == []
    assert chunker.done_through == chunker.position


def test_a_dump_closes_the_open_window_at_once() -> None:
    chunker = Chunker()
    windows = feed(chunker, [SPEECH] * 30 + [None])
    assert len(windows) == 1
    assert windows[0].end == 30 * FRAME_SAMPLES  # nothing of the dumped frame is in it


def test_a_click_is_not_speech() -> None:
    chunker = Chunker()
    assert feed(chunker, [QUIET] * 10 + [SPEECH] * 3 + [QUIET] * 50) == []
    assert chunker.discarded == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["s", "q", "n"]), max_size=600))
def test_windows_are_ordered_bounded_and_done_through_never_goes_back(kinds: list[str]) -> None:
    chunker = Chunker()
    frames = {"s": SPEECH, "q": QUIET, "n": None}
    done, last_end = 0, 0
    for kind in kinds:
        window = chunker.push(frames[kind])
        if window is not None:
            assert window.start >= last_end
            assert window.start >= done or window.start == done
            assert len(window.pcm) <= 250 * FRAME_SAMPLES
            last_end = window.end
        assert chunker.done_through >= done
        assert chunker.done_through >= last_end or chunker.done_through <= chunker.position
        done = chunker.done_through
