"""The listener program gate: nothing airs off air, the delay line is exact, a dump never airs.

Every program frame fed in is tagged with its tick number (a constant frame of that value), so a
frame that comes out says exactly which tick it was spoken in; silence is all zeros.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from townhall.media.audio import FRAME_SAMPLES, PcmFrame
from townhall.media.delay import MAX_DELAY_FRAMES, MAX_DELAY_S, ProgramGate

SILENCE = -1  # what `heard` says for a silent frame


def spoken(tick: int) -> PcmFrame:
    """The program frame of tick `tick` (≥ 0), recognisable wherever it comes out."""
    return np.full(FRAME_SAMPLES, tick + 1, dtype=np.int16)


def heard(frame: PcmFrame) -> int:
    """Which tick's program a frame that came out is (0-based), or SILENCE."""
    assert frame.shape == (FRAME_SAMPLES,)
    assert frame.dtype == np.int16
    value = int(frame[0])
    assert (frame == value).all(), "frames come out whole, never spliced"
    return value - 1


class Tape:
    """Feeds a gate one tagged frame per tick and records what listeners heard, tick by tick."""

    def __init__(self, gate: ProgramGate) -> None:
        self.gate = gate
        self.tick = 0
        self.out: list[int] = []

    def run(self, ticks: int) -> list[int]:
        start = len(self.out)
        for _ in range(ticks):
            self.out.append(heard(self.gate.process(spoken(self.tick))))
            self.tick += 1
        return self.out[start:]


def test_off_air_listeners_hear_silence_while_the_program_keeps_coming() -> None:
    tape = Tape(ProgramGate(on_air=False))
    assert tape.run(200) == [SILENCE] * 200
    assert tape.gate.stats.frames_off_air == 200


def test_a_new_gate_starts_off_air_with_no_delay() -> None:
    gate = ProgramGate()
    assert not gate.on_air
    assert gate.delay_s == 0.0
    assert heard(gate.process(spoken(0))) == SILENCE


def test_on_air_without_delay_the_program_airs_in_the_same_tick() -> None:
    tape = Tape(ProgramGate(on_air=True))
    assert tape.run(50) == list(range(50))


def test_the_program_frame_passes_through_unchanged() -> None:
    gate = ProgramGate(on_air=True)
    frame = np.arange(FRAME_SAMPLES, dtype=np.int16)
    out = gate.process(frame)
    np.testing.assert_array_equal(out, np.arange(FRAME_SAMPLES, dtype=np.int16))


def test_with_a_two_second_delay_a_frame_airs_exactly_100_ticks_later() -> None:
    tape = Tape(ProgramGate(on_air=True, delay_s=2.0))
    assert tape.gate.delay_frames == 100
    assert tape.run(100) == [SILENCE] * 100
    assert tape.run(50) == list(range(50))


def test_the_delay_is_rounded_to_whole_frames() -> None:
    gate = ProgramGate(delay_s=0.5)
    assert gate.delay_frames == 25
    gate.set_delay(0.031)
    assert gate.delay_frames == 2
    assert gate.delay_s == pytest.approx(0.04)


@pytest.mark.parametrize("seconds", [-0.02, MAX_DELAY_S + 0.02, math.nan, math.inf, -math.inf])
def test_a_delay_outside_zero_to_thirty_seconds_is_refused_and_changes_nothing(
    seconds: float,
) -> None:
    gate = ProgramGate(delay_s=1.0)
    with pytest.raises(ValueError, match="delay"):
        gate.set_delay(seconds)
    assert gate.delay_frames == 50


def test_thirty_seconds_is_the_longest_delay_and_memory_stays_bounded() -> None:
    tape = Tape(ProgramGate(on_air=True, delay_s=MAX_DELAY_S))
    assert tape.gate.delay_frames == MAX_DELAY_FRAMES == 1500
    tape.run(2000)
    assert len(tape.gate._line) == MAX_DELAY_FRAMES
    assert tape.out[1499] == SILENCE
    assert tape.out[1500:] == list(range(500))


def test_a_dumped_tone_never_airs_and_what_follows_does() -> None:
    tape = Tape(ProgramGate(on_air=True, delay_s=1.0))
    tape.run(30)  # ticks 0..29 are in the line, none aired yet
    assert tape.gate.dump() == pytest.approx(0.6)
    out = tape.run(100)  # ticks 30..129
    assert not set(range(30)) & set(out), "dumped audio aired"
    assert out[:50] == [SILENCE] * 50  # 20 ticks of the initial delay, 30 where the dump was
    assert out[50:] == list(range(30, 80))
    stats = tape.gate.stats
    assert (stats.frames_dumped, stats.dumps, stats.delay_frames) == (30, 1, 50)


def test_a_dump_keeps_the_delay_and_a_second_dump_finds_nothing() -> None:
    tape = Tape(ProgramGate(on_air=True, delay_s=0.4))
    tape.run(40)
    assert tape.gate.dump() == pytest.approx(0.4)
    assert tape.gate.dump() == 0.0
    assert tape.gate.delay_s == pytest.approx(0.4)
    assert tape.gate.stats.frames_dumped == 20


def test_dump_without_delay_discards_nothing() -> None:
    tape = Tape(ProgramGate(on_air=True))
    tape.run(5)
    assert tape.gate.dump() == 0.0
    assert tape.run(3) == [5, 6, 7]


def test_growing_the_delay_inserts_silence_at_the_cut() -> None:
    tape = Tape(ProgramGate(on_air=True, delay_s=0.2))  # 10 frames
    tape.run(30)  # ticks 0..29 spoken, 0..19 aired, 20..29 in the line
    tape.gate.set_delay(0.5)  # +15 frames
    out = tape.run(60)  # ticks 30..89
    # What was already in the line airs on schedule, then the inserted silence, then the rest, later.
    assert out == list(range(20, 30)) + [SILENCE] * 15 + list(range(30, 65))
    assert tape.gate.stats.frames_silence_inserted == 15


def test_shrinking_the_delay_drops_the_oldest_audio_and_takes_effect_at_once() -> None:
    tape = Tape(ProgramGate(on_air=True, delay_s=1.0))  # 50 frames
    tape.run(100)  # ticks 50..99 in the line
    tape.gate.set_delay(0.2)  # 10 frames: ticks 50..89 are dropped
    out = tape.run(20)  # ticks 100..119
    assert out == list(range(90, 110))
    assert len(tape.gate._line) == 10
    assert tape.gate.stats.frames_dropped_by_shrink == 40


def test_changing_the_delay_keeps_one_frame_per_tick_in_order() -> None:
    tape = Tape(ProgramGate(on_air=True))
    for seconds in [2.0, 0.5, 30.0, 0.0, 1.0, 0.02, 10.0]:
        tape.gate.set_delay(seconds)
        before = len(tape.out)
        tape.run(137)
        assert len(tape.out) == before + 137
        assert len(tape.gate._line) == round(seconds * 50) <= MAX_DELAY_FRAMES
    aired = [t for t in tape.out if t != SILENCE]
    assert aired == sorted(set(aired)), "a frame aired twice or out of order"


def test_going_live_with_a_delay_airs_from_the_moment_of_go_live() -> None:
    tape = Tape(ProgramGate(on_air=False, delay_s=1.0))
    assert tape.run(200) == [SILENCE] * 200  # green room: ticks 0..199
    tape.gate.set_on_air(True)  # Go live before tick 200
    out = tape.run(100)
    assert out[:50] == [SILENCE] * 50, "green-room audio leaked through the delay line"
    assert out[50:] == list(range(200, 250))


def test_off_air_again_silences_at_once_and_lets_the_on_air_audio_play_out() -> None:
    tape = Tape(ProgramGate(on_air=True, delay_s=0.2))
    tape.run(40)  # ticks 30..39 in the line
    tape.gate.set_on_air(False)
    assert tape.run(20) == list(range(30, 40)) + [SILENCE] * 10


def test_the_stats_say_what_happened() -> None:
    gate = ProgramGate(on_air=False, delay_s=0.1)
    tape = Tape(gate)
    tape.run(10)
    gate.set_on_air(True)
    tape.run(10)
    gate.dump()
    stats = gate.stats
    assert stats.on_air
    assert stats.ticks == 20
    assert stats.frames_off_air == 10
    assert stats.frames_dumped == 5
    assert stats.delay_s == pytest.approx(0.1)
    assert stats.frames_silence_inserted == 0  # the initial delay is not an insertion


_command = st.one_of(
    st.tuples(st.just("run"), st.integers(1, 120)),
    st.tuples(st.just("delay"), st.integers(0, MAX_DELAY_FRAMES).map(lambda f: f / 50)),
    st.tuples(st.just("air"), st.booleans()),
    st.tuples(st.just("dump"), st.none()),
)


@settings(max_examples=200, deadline=None)
@given(on_air=st.booleans(), commands=st.lists(_command, max_size=30))
def test_whatever_the_host_does_one_frame_airs_per_tick_and_nothing_forbidden_airs(
    on_air: bool, commands: list[tuple[str, object]]
) -> None:
    tape = Tape(ProgramGate(on_air=on_air))
    spoken_on_air: set[int] = set()
    dumped: set[int] = set()
    waiting: list[int] = []  # on-air ticks spoken but not aired yet, oldest first
    for command, arg in commands:
        if command == "run":
            assert isinstance(arg, int)
            for _ in range(arg):
                if tape.gate.on_air:
                    spoken_on_air.add(tape.tick)
                    waiting.append(tape.tick)
                (out,) = tape.run(1)
                if out != SILENCE:
                    assert out in waiting, f"tick {out} aired: off air, dumped, dropped or aired"
                    waiting.remove(out)
        elif command == "delay":
            assert isinstance(arg, float)
            tape.gate.set_delay(arg)
        elif command == "air":
            assert isinstance(arg, bool)
            tape.gate.set_on_air(arg)
        else:
            dumped.update(waiting)  # a dump discards at most what is waiting (no more)
            tape.gate.dump()
        assert len(tape.gate._line) == tape.gate.delay_frames <= MAX_DELAY_FRAMES
    assert len(tape.out) == tape.tick, "not exactly one frame per tick"
    aired = [t for t in tape.out if t != SILENCE]
    assert set(aired) <= spoken_on_air, "audio spoken off air aired"
    assert not set(aired) & dumped, "dumped audio aired"
    assert aired == sorted(set(aired)), "a frame aired twice or out of order"
