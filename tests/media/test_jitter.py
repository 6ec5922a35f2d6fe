"""One speaker's jitter buffer: in order, on time, bounded, and never waiting for a frame forever.

Frames are tagged with their sequence number in their last sample (tag 0 = concealment/silence), so
what plays can be read back as a list of numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from townhall.media.audio import FRAME_SAMPLES, PcmFrame
from townhall.media.jitter import PTS_MODULUS, JitterBuffer

F = FRAME_SAMPLES  # pts step of one frame


def frame(tag: int) -> PcmFrame:
    return np.full(FRAME_SAMPLES, tag, dtype=np.int16)


def tag(played: PcmFrame | None) -> int:
    return 0 if played is None else int(played[-1])


def play(buffer: JitterBuffer, ticks: int) -> list[int]:
    return [tag(buffer.next_frame()) for _ in range(ticks)]


def test_playback_waits_for_the_prefill_cushion() -> None:
    buffer = JitterBuffer(prefill_frames=3)
    buffer.push(frame(1), 0)
    buffer.push(frame(2), F)
    assert play(buffer, 2) == [0, 0]
    buffer.push(frame(3), 2 * F)
    assert play(buffer, 3) == [1, 2, 3]


def test_out_of_order_frames_play_in_pts_order() -> None:
    buffer = JitterBuffer(prefill_frames=2)
    for seq in (2, 1, 4, 3, 5):
        buffer.push(frame(seq), seq * F)
    assert play(buffer, 5) == [1, 2, 3, 4, 5]
    assert buffer.stats.frames_played == 5


def test_a_frame_older_than_what_already_played_is_dropped_as_late() -> None:
    buffer = JitterBuffer(prefill_frames=1)
    for seq in (1, 2, 3):
        buffer.push(frame(seq), seq * F)
    assert play(buffer, 2) == [1, 2]
    assert not buffer.push(frame(1), 1 * F)  # older than played
    assert not buffer.push(frame(2), 2 * F)  # equal to the last played
    assert not buffer.push(frame(3), 3 * F)  # a duplicate of one waiting
    assert play(buffer, 2) == [3, 0]
    assert buffer.stats.frames_dropped_late == 3


def test_a_lost_frame_leaves_one_silent_tick_then_playback_continues() -> None:
    buffer = JitterBuffer(prefill_frames=2)
    for seq in (1, 2, 4, 5):  # 3 never arrives
        buffer.push(frame(seq), seq * F)
    out = [buffer.next_frame() for _ in range(4)]
    assert [tag(f) for f in out] == [1, 2, 0, 4]
    assert buffer.stats.gaps_filled == 1
    assert buffer.stats.underruns == 0


def test_a_speaker_who_stops_sending_fades_out_then_is_silent_not_stalled() -> None:
    buffer = JitterBuffer(prefill_frames=2)
    ramp = np.linspace(-8000, 8000, FRAME_SAMPLES).astype(np.int16)
    buffer.push(ramp, 0)
    buffer.push(ramp, F)
    play(buffer, 2)
    fade = buffer.next_frame()  # the buffer ran dry: one tick of concealment
    assert fade is not None
    assert abs(int(fade[0]) - int(ramp[-1])) < 50  # continues from where the audio stopped…
    assert np.all(np.abs(fade[1:].astype(np.int32)) <= np.abs(fade[:-1].astype(np.int32)) + 20)
    assert not fade[480:].any()  # …and is silent after 10 ms
    assert [buffer.next_frame() for _ in range(50)] == [None] * 50
    assert buffer.stats.underruns == 1
    assert not buffer.playing


def test_after_running_dry_playback_resumes_behind_a_fresh_cushion() -> None:
    buffer = JitterBuffer(prefill_frames=2)
    for seq in (1, 2):
        buffer.push(frame(seq), seq * F)
    assert play(buffer, 4) == [1, 2, 0, 0]
    buffer.push(frame(7), 7 * F)  # the speaker talks again
    assert play(buffer, 1) == [0]  # one frame is not yet a cushion
    buffer.push(frame(8), 8 * F)
    assert play(buffer, 3) == [7, 8, 0]


def test_a_frame_that_is_only_a_little_late_after_running_dry_still_plays() -> None:
    buffer = JitterBuffer(prefill_frames=1)
    buffer.push(frame(1), 1 * F)
    assert play(buffer, 2) == [1, 0]  # 2 is late: the tick conceals but does not skip it
    buffer.push(frame(2), 2 * F)
    buffer.push(frame(3), 3 * F)
    assert play(buffer, 2) == [2, 3]
    assert buffer.stats.frames_dropped_late == 0


def test_a_lone_frame_is_not_stranded_waiting_for_a_cushion() -> None:
    buffer = JitterBuffer(prefill_frames=3, max_frames=8)
    buffer.push(frame(1), 0)
    assert play(buffer, 8) == [0] * 7 + [1]  # played after max_frames ticks at most


def test_a_burst_drops_the_oldest_frames_so_latency_stays_bounded() -> None:
    buffer = JitterBuffer(prefill_frames=2, max_frames=8)
    for seq in range(1, 21):
        buffer.push(frame(seq), seq * F)
    assert buffer.buffered == 8
    assert buffer.latency_frames == 8
    assert buffer.stats.frames_dropped_overflow == 12
    assert play(buffer, 8) == list(range(13, 21))


def test_a_sender_clock_running_fast_cannot_grow_latency() -> None:
    buffer = JitterBuffer(prefill_frames=2, max_frames=8, trim_window=0)  # bound only
    seq = 0
    worst = 0
    for tick in range(5_000):  # 100 s: the sender pushes 51 frames per 50 ticks
        for _ in range(2 if tick % 50 == 0 else 1):
            seq += 1
            buffer.push(frame(seq % 30_000 + 1), seq * F)
        buffer.next_frame()
        worst = max(worst, buffer.latency_frames, buffer.buffered)
    assert worst <= 8
    stats = buffer.stats
    assert stats.frames_dropped_overflow > 80
    assert stats.gaps_filled == stats.underruns == 0


def test_a_sender_clock_running_fast_is_trimmed_back_towards_the_cushion() -> None:
    buffer = JitterBuffer(prefill_frames=2, max_frames=8, trim_window=25)
    seq = 0
    latencies = []
    for tick in range(5_000):  # 2 % fast, as above; the trim drops up to one frame per window
        for _ in range(2 if tick % 50 == 0 else 1):
            seq += 1
            buffer.push(frame(seq % 30_000 + 1), seq * F)
        buffer.next_frame()
        latencies.append(buffer.latency_frames)
    assert max(latencies[1000:]) <= 3  # no creep towards max_frames
    assert buffer.stats.frames_dropped_overflow == 0
    assert buffer.stats.frames_dropped_drift > 80


def test_latency_returns_to_the_cushion_after_a_burst() -> None:
    buffer = JitterBuffer(prefill_frames=2, max_frames=8, trim_window=50)
    seq = 0
    for _ in range(6):  # a network hiccup delivers 6 frames at once…
        seq += 1
        buffer.push(frame(seq), seq * F)
    for _ in range(600):  # …then the sender is steady again for 12 s
        seq += 1
        buffer.push(frame(seq % 30_000 + 1), seq * F)
        buffer.next_frame()
    buffer.push(frame(1), (seq + 1) * F)
    assert buffer.buffered == 2  # the cushion is back to prefill_frames
    assert buffer.stats.frames_dropped_drift == 5
    assert buffer.stats.gaps_filled == buffer.stats.underruns == 0


def test_a_trimmed_frame_is_cross_faded_not_cut() -> None:
    buffer = JitterBuffer(prefill_frames=1, max_frames=8, trim_window=1)
    buffer.push(frame(100), 0)
    buffer.push(frame(200), F)
    buffer.push(frame(300), 2 * F)
    spliced = buffer.next_frame()  # cushion 3 > 1 for the whole (one-tick) window: trim
    assert spliced is not None
    assert tag(spliced) == 200
    assert 100 <= spliced[0] < 110  # starts where the dropped frame would have started
    assert np.all(np.diff(spliced[:121].astype(np.int32)) >= 0)  # and glides into the next


def test_a_sender_that_restarts_its_clock_far_ahead_is_followed_at_once() -> None:
    buffer = JitterBuffer(prefill_frames=2, resync_frames=50)
    for seq in (1, 2, 3):
        buffer.push(frame(seq), seq * F)
    buffer.push(frame(4), 900_000 * F)  # reconnect: a brand-new RTP timestamp base
    buffer.push(frame(5), 900_001 * F)
    assert play(buffer, 6) == [1, 2, 3, 4, 5, 0]
    assert buffer.stats.resyncs == 1


def test_a_sender_that_restarts_its_clock_further_back_is_not_dropped_as_late_forever() -> None:
    buffer = JitterBuffer(prefill_frames=1, resync_frames=50)
    for seq in (1, 2):
        buffer.push(frame(seq + 500), (1_000_000 + seq) * F)
    assert play(buffer, 2) == [501, 502]
    for seq in (1, 2, 3):
        buffer.push(frame(seq), (10 + seq) * F)  # new clock, far behind the old one
        assert play(buffer, 1) == [seq]
    assert buffer.stats.frames_dropped_late == 0


def test_rtp_timestamps_wrapping_around_are_just_the_next_frames() -> None:
    buffer = JitterBuffer(prefill_frames=2)
    start = PTS_MODULUS - 3 * F
    for seq in range(1, 7):
        buffer.push(frame(seq), (start + seq * F) % PTS_MODULUS)
    assert play(buffer, 6) == [1, 2, 3, 4, 5, 6]
    assert buffer.stats.resyncs == 0


def test_frames_without_pts_play_in_arrival_order() -> None:
    buffer = JitterBuffer(prefill_frames=2)
    for seq in (3, 1, 2):
        buffer.push(frame(seq))
    assert play(buffer, 4) == [3, 1, 2, 0]


def test_pts_that_are_not_whole_frames_apart_round_to_the_nearest_slot() -> None:
    buffer = JitterBuffer(prefill_frames=3)
    for seq, jitter in ((1, 7), (2, -300), (3, 400)):
        buffer.push(frame(seq), seq * F + jitter)
    assert play(buffer, 3) == [1, 2, 3]


def test_clearing_discards_what_is_buffered_and_starts_a_new_timeline() -> None:
    buffer = JitterBuffer(prefill_frames=2)
    for seq in (1, 2, 3):
        buffer.push(frame(seq), (1000 + seq) * F)
    buffer.clear()
    assert buffer.stats.frames_discarded == 3
    assert play(buffer, 3) == [0, 0, 0]
    buffer.push(frame(9), 5 * F)  # an old pts is fine on the new timeline
    buffer.push(frame(10), 6 * F)
    assert play(buffer, 2) == [9, 10]


@pytest.mark.parametrize(
    ("prefill", "maximum", "resync"), [(0, 8, 50), (9, 8, 50), (2, 8, 4), (2, 0, 50)]
)
def test_impossible_sizes_are_refused(prefill: int, maximum: int, resync: int) -> None:
    with pytest.raises(ValueError, match=r"must|need"):
        JitterBuffer(prefill_frames=prefill, max_frames=maximum, resync_frames=resync)


# Each step: ("push", offset of the frame's seq from the sender's position, or None for no pts)
# or ("tick",). The sender position only moves forward, so no step is ever a clock restart.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(-15, 15)),
        st.tuples(st.just("advance"), st.integers(1, 3)),
        st.tuples(st.just("tick"), st.just(0)),
    ),
    max_size=300,
)


@settings(max_examples=200, deadline=None)
@given(
    steps=steps,
    prefill=st.integers(1, 4),
    maximum=st.integers(4, 10),
    trim=st.sampled_from([0, 1, 5, 50]),
)
def test_whatever_the_network_does_frames_play_once_in_order_within_the_bound(
    steps: list[tuple[str, int]], prefill: int, maximum: int, trim: int
) -> None:
    buffer = JitterBuffer(
        prefill_frames=prefill, max_frames=maximum, resync_frames=50, trim_window=trim
    )
    position = 100
    played: list[int] = []
    for action, value in steps:
        if action == "advance":
            position += value
        elif action == "push":
            seq = position + value
            buffer.push(frame(seq), seq * F)
        else:
            out = buffer.next_frame()
            if out is not None and tag(out):
                played.append(tag(out))
        assert buffer.latency_frames <= maximum
        assert buffer.buffered <= maximum
    assert played == sorted(set(played))  # strictly increasing: in order, never twice
    s = buffer.stats
    assert s.resyncs == 0
    assert s.frames_played == len(played)
    assert s.frames_received == (
        s.frames_played
        + s.frames_dropped_late
        + s.frames_dropped_overflow
        + s.frames_dropped_drift
        + buffer.buffered
    )
