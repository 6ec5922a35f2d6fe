"""When transcription falls behind: windows merge, then the oldest audio is dropped; never a queue."""

from __future__ import annotations

import numpy as np

from townhall.captions.backlog import Backlog
from townhall.captions.chunker import Window
from townhall.media.audio import SAMPLE_RATE


def window(start_s: float, seconds: float) -> Window:
    return Window(round(start_s * SAMPLE_RATE), np.ones(round(seconds * SAMPLE_RATE), np.int16))


def test_windows_that_arrive_while_the_worker_is_busy_merge_with_the_silence_between_kept() -> None:
    backlog: Backlog[str] = Backlog(max_pending_s=10.0)
    backlog.add("a", window(0, 2))
    assert backlog.next() is not None  # in flight
    backlog.add("a", window(3, 2))
    backlog.add("a", window(6, 2))
    assert backlog.next() is None  # one window at a time
    backlog.answered("a")
    job = backlog.next()
    assert job is not None
    assert job[1].start == 3 * SAMPLE_RATE
    assert len(job[1].pcm) == 5 * SAMPLE_RATE  # 3 → 8 s, the gap as silence
    assert backlog.spaces["a"].merged == 1


def test_a_worker_that_cannot_keep_up_drops_the_oldest_audio_and_counts_it() -> None:
    backlog: Backlog[str] = Backlog(max_pending_s=10.0)
    backlog.add("a", window(0, 5))
    backlog.next()
    for k in range(1, 10):  # 45 s more speech while the first window is transcribed
        backlog.add("a", window(5 * k, 5))
    space = backlog.spaces["a"]
    assert space.pending is not None
    assert len(space.pending.pcm) <= 10 * SAMPLE_RATE
    assert space.dropped_s >= 30
    assert space.oldest == 0  # the one in flight still holds the subtitle track back


def test_spaces_take_turns() -> None:
    backlog: Backlog[str] = Backlog()
    backlog.add("busy", window(0, 5))
    backlog.add("quiet", window(0, 1))
    order = []
    for _ in range(2):
        job = backlog.next()
        assert job is not None
        order.append(job[0])
        backlog.add("busy", window(10, 5))
        backlog.answered(job[0])
    assert order == ["busy", "quiet"]


def test_a_stopped_space_is_forgotten() -> None:
    backlog: Backlog[str] = Backlog()
    backlog.add("a", window(0, 1))
    backlog.forget("a")
    assert backlog.next() is None
