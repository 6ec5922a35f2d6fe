"""The stage mixer: listeners hear everyone, each speaker everyone but themselves, every tick."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from townhall.media.audio import FRAME_SAMPLES, SAMPLE_RATE, PcmFrame, SpeakerId, silence
from townhall.media.jitter import JitterStats
from townhall.media.mixer import (
    LEVEL_FLOOR_DBFS,
    PROGRAM,
    Mixer,
    MixerConfig,
    MixResult,
    minus_key,
)

A, B, C = SpeakerId("alice"), SpeakerId("bob"), SpeakerId("carol")
CEILING = 0.891 * 32767


def tone(freq: float, amplitude: float, index: int) -> PcmFrame:
    """Frame `index` of a continuous sine."""
    n = np.arange(index * FRAME_SAMPLES, (index + 1) * FRAME_SAMPLES)
    return np.round(amplitude * np.sin(2 * np.pi * freq * n / SAMPLE_RATE)).astype(np.int16)


def run(mixer: Mixer, sources: Mapping[SpeakerId, float], ticks: int) -> list[MixResult]:
    """Each tick, every source pushes its next tone frame (with pts), then the mixer ticks."""
    results = []
    for index in range(ticks):
        for speaker, freq in sources.items():
            mixer.push(speaker, tone(freq, 8000, index), index * FRAME_SAMPLES)
        results.append(mixer.tick())
    return results


def spectrum(frames: Sequence[PcmFrame]) -> dict[int, float]:
    """Magnitude per frequency (10 Hz bins for 5 frames), normalised to the strongest."""
    signal = np.concatenate(frames).astype(np.float64)
    magnitude = np.abs(np.fft.rfft(signal * np.hanning(signal.size)))
    peak = float(magnitude.max()) or 1.0
    hz_per_bin = SAMPLE_RATE / signal.size
    return {round(i * hz_per_bin): float(m) / peak for i, m in enumerate(magnitude)}


def stage(*speakers: SpeakerId, config: MixerConfig | None = None) -> Mixer:
    mixer = Mixer(config or MixerConfig())
    for speaker in speakers:
        mixer.add_speaker(speaker)
    return mixer


def test_an_empty_stage_still_produces_a_silent_frame_every_tick() -> None:
    mixer = Mixer()
    for expected_tick in range(100):
        result = mixer.tick()
        assert result.tick == expected_tick
        assert result.program.shape == (FRAME_SAMPLES,)
        assert result.program.dtype == np.int16
        assert not result.program.any()
        assert dict(result.mixes).keys() == {PROGRAM}
        assert result.returns == {}
        assert result.speaking == frozenset()
    assert mixer.stats.ticks == 100


def test_silence_in_is_silence_out_and_everyone_hears_the_program() -> None:
    mixer = stage(A, B, C)
    for index in range(20):
        for speaker in (A, B, C):
            mixer.push(speaker, silence(), index * FRAME_SAMPLES)
        result = mixer.tick()
        assert not result.program.any()
        assert dict(result.mixes).keys() == {PROGRAM}
        assert result.returns == {A: PROGRAM, B: PROGRAM, C: PROGRAM}
        assert result.levels == {A: LEVEL_FLOOR_DBFS, B: LEVEL_FLOOR_DBFS, C: LEVEL_FLOOR_DBFS}
        assert result.speaking == frozenset()


def test_a_speaker_who_stops_sending_leaves_silence_not_a_stall() -> None:
    mixer = stage(A, B)
    run(mixer, {A: 440, B: 660}, 10)
    results = [mixer.tick() for _ in range(50)]  # nobody sends anything any more
    assert len(results) == 50
    assert results[0].program.any()  # the last frames still in the cushion play out
    assert results[1].program[:480].any()  # a 10 ms fade-out instead of a click…
    assert not results[1].program[480:].any()
    assert all(not r.program.any() for r in results[2:])  # …then silence, every tick


def test_the_program_carries_both_voices() -> None:
    mixer = stage(A, B)
    results = run(mixer, {A: 440, B: 660}, 12)
    power = spectrum([r.program for r in results[-5:]])
    assert power[440] > 0.5
    assert power[660] > 0.5
    assert max(v for hz, v in power.items() if abs(hz - 440) > 30 and abs(hz - 660) > 30) < 0.05


def test_each_speaker_hears_everyone_but_themselves() -> None:
    mixer = stage(A, B, C)  # carol is on stage but silent
    results = run(mixer, {A: 440, B: 660}, 12)
    last = results[-5:]
    assert last[-1].returns == {A: minus_key(A), B: minus_key(B), C: PROGRAM}
    alice_hears = spectrum([r.mixes[r.returns[A]] for r in last])
    bob_hears = spectrum([r.mixes[r.returns[B]] for r in last])
    carol_hears = spectrum([r.mixes[r.returns[C]] for r in last])
    assert alice_hears[660] == 1.0
    assert alice_hears[440] < 1e-3
    assert bob_hears[440] == 1.0
    assert bob_hears[660] < 1e-3
    assert carol_hears[440] > 0.5
    assert carol_hears[660] > 0.5
    # Below the limiter's ceiling a return is exactly the other voice, sample for sample.
    for index, r in enumerate(last, start=len(results) - 5 - 1):
        assert np.array_equal(r.mixes[minus_key(A)], tone(660, 8000, index))


def test_identical_mixes_are_made_once_thirteen_on_stage_one_talking_two_mixes() -> None:
    speakers = [SpeakerId(f"speaker-{i}") for i in range(13)]
    mixer = stage(*speakers)
    talker = speakers[4]
    for index in range(10):
        for speaker in speakers:
            frame = tone(440, 8000, index) if speaker == talker else silence()
            mixer.push(speaker, frame, index * FRAME_SAMPLES)
        result = mixer.tick()
    assert len(result.mixes) == 2
    assert result.returns[talker] == minus_key(talker)
    assert not result.mixes[minus_key(talker)].any()  # nobody else is talking
    assert {result.returns[s] for s in speakers if s != talker} == {PROGRAM}
    assert np.array_equal(result.program, tone(440, 8000, 8))


def test_a_muted_speaker_is_heard_by_no_one() -> None:
    mixer = stage(A, B, C)
    mixer.set_muted(A, True)
    results = run(mixer, {A: 440, B: 660}, 12)
    last = results[-5:]
    assert last[-1].returns[A] == PROGRAM  # contributes nothing, so hears the program
    for heard in (
        [r.program for r in last],
        [r.mixes[r.returns[C]] for r in last],
        [r.mixes[r.returns[A]] for r in last],
    ):
        assert spectrum(heard)[440] < 1e-3
    assert not last[-1].mixes[last[-1].returns[B]].any()  # bob hears nobody: alice is muted
    assert last[-1].levels[A] == LEVEL_FLOOR_DBFS
    assert A not in last[-1].speaking


def test_a_muted_speaker_is_still_drained_and_unmuting_is_immediate() -> None:
    mixer = stage(A)
    mixer.set_muted(A, True)
    run(mixer, {A: 440}, 500)  # 10 s of talking while muted
    stats = mixer.stats.speakers[A]
    assert stats.frames_played == 499
    assert stats.frames_dropped_overflow == 0
    mixer.set_muted(A, False)
    mixer.push(A, tone(440, 8000, 500), 500 * FRAME_SAMPLES)
    assert np.array_equal(mixer.tick().program, tone(440, 8000, 499))


def test_muting_clears_the_speaking_indicator_at_once_and_leaks_no_fade() -> None:
    mixer = stage(A)
    results = run(mixer, {A: 440}, 10)
    assert A in results[-1].speaking
    mixer.set_muted(A, True)
    after = mixer.tick()  # alice's buffer runs dry on this tick: no concealment either
    assert A not in after.speaking
    assert not after.program.any()
    mixer.set_muted(A, False)
    assert not mixer.tick().program.any()  # the muted audio never resurfaces as a fade-out


def test_a_removed_speakers_leftover_audio_never_plays() -> None:
    mixer = stage(A, B)
    for index in range(6):  # alice has a burst waiting in her buffer
        mixer.push(A, tone(440, 8000, index), index * FRAME_SAMPLES)
    mixer.remove_speaker(A)
    mixer.push(A, tone(440, 8000, 6), 6 * FRAME_SAMPLES)  # still in flight
    results = [mixer.tick() for _ in range(10)]
    assert all(not r.program.any() for r in results)
    assert A not in results[-1].returns
    stats = mixer.stats
    assert stats.frames_ignored_unknown == 1
    assert stats.total.frames_discarded == 6
    assert A not in stats.speakers


def test_totals_keep_counting_speakers_who_left() -> None:
    mixer = stage(A, B)
    run(mixer, {A: 440, B: 660}, 10)
    before = mixer.stats.total.frames_played
    mixer.remove_speaker(A)
    assert mixer.stats.total.frames_played == before == 18
    assert mixer.stats.frames_played == 18
    assert mixer.stats.speakers[B] == JitterStats(frames_received=10, frames_played=9)


def test_adding_a_speaker_again_starts_them_over() -> None:
    mixer = stage(A)
    for index in range(5):
        mixer.push(A, tone(440, 8000, index), (1000 + index) * FRAME_SAMPLES)
    mixer.add_speaker(A)  # reconnected: a new RTP timeline
    results = run(mixer, {A: 440}, 4)
    assert not results[0].program.any()  # the old connection's burst is gone
    assert np.array_equal(results[1].program, tone(440, 8000, 0))


def test_levels_and_speaking_indicators_follow_a_voice() -> None:
    mixer = stage(A, B)
    results = run(mixer, {A: 440}, 10)
    level = results[-1].levels[A]
    expected = 20 * math.log10(8000 / math.sqrt(2) / 32768)  # a sine's RMS, about -15.2 dBFS
    assert level == pytest.approx(expected, abs=0.1)
    assert results[-1].levels[B] == LEVEL_FLOOR_DBFS
    assert results[-1].speaking == frozenset({A})


def test_a_whisper_below_the_threshold_does_not_light_the_indicator() -> None:
    mixer = stage(A)
    for index in range(10):
        mixer.push(A, tone(440, 100, index), index * FRAME_SAMPLES)  # about -53 dBFS
        result = mixer.tick()
    assert result.levels[A] < -45
    assert result.returns[A] == minus_key(A)  # it still contributes to the mix
    assert result.speaking == frozenset()


def test_the_speaking_indicator_holds_through_a_short_pause_without_flicker() -> None:
    mixer = stage(A, config=MixerConfig(speaking_hold_s=0.3))
    flags = []
    for index in range(60):
        talking = not 20 <= index < 30  # a 200 ms pause between words
        frame = tone(440, 8000, index) if talking else silence()
        mixer.push(A, frame, index * FRAME_SAMPLES)
        flags.append(A in mixer.tick().speaking)
    assert flags[0] is False  # nothing played yet (prefill)
    assert all(flags[1:60])  # on from the first loud tick and through the pause
    mixer.push(A, silence(), 60 * FRAME_SAMPLES)
    assert A in mixer.tick().speaking  # the last word plays (one tick behind, the cushion)
    for index in range(61, 61 + 15):
        mixer.push(A, silence(), index * FRAME_SAMPLES)
        assert A in mixer.tick().speaking  # held for 0.3 s after the last word…
    mixer.push(A, silence(), 76 * FRAME_SAMPLES)
    assert A not in mixer.tick().speaking  # …and then off


def test_ten_loud_speakers_never_clip_anyone_s_mix() -> None:
    speakers = [SpeakerId(f"s{i}") for i in range(10)]
    mixer = stage(*speakers)
    for index in range(100):
        for i, speaker in enumerate(speakers):
            mixer.push(speaker, tone(200 + 53 * i, 32767, index), index * FRAME_SAMPLES)
        result = mixer.tick()
        assert len(result.mixes) == (11 if index else 1)
        for mix in result.mixes.values():
            assert np.abs(mix.astype(np.int32)).max() <= CEILING + 1


def test_a_speaker_who_starts_talking_keeps_hearing_the_gain_they_heard() -> None:
    mixer = stage(A, B)
    for index in range(30):  # bob shouts: the program limiter pulls the gain down
        mixer.push(B, tone(660, 32767, index), None)
        mixer.tick()
    for index in range(30, 35):  # bob calms down; the program's gain is still recovering
        mixer.push(B, tone(660, 20000, index), None)
        before = mixer.tick()
    assert np.abs(before.program.astype(np.int32)).max() < 20000 * 0.99
    mixer.push(A, tone(440, 2000, 0), None)  # alice says something
    mixer.push(A, tone(440, 2000, 1), None)
    mixer.push(B, tone(660, 20000, 35), None)
    now = mixer.tick()
    assert now.returns[A] == minus_key(A)
    alice_hears = np.abs(now.mixes[minus_key(A)].astype(np.int32)).max()
    # Her own limiter took over the program's envelope: bob is as loud as a tick ago, not louder.
    assert alice_hears == pytest.approx(np.abs(before.program.astype(np.int32)).max(), rel=0.02)


def test_frames_for_speakers_not_on_stage_are_ignored_and_counted() -> None:
    mixer = Mixer()
    mixer.push(A, tone(440, 8000, 0))
    assert not mixer.tick().program.any()
    assert mixer.stats.frames_ignored_unknown == 1


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(FRAME_SAMPLES, dtype=np.float32),
        np.zeros(FRAME_SAMPLES * 2, dtype=np.int16),
        np.zeros((1, FRAME_SAMPLES), dtype=np.int16),
    ],
)
def test_a_malformed_frame_is_rejected_not_mixed(bad: PcmFrame) -> None:
    mixer = stage(A)
    mixer.push(A, bad)
    assert mixer.stats.frames_rejected == 1
    assert mixer.stats.speakers[A].frames_received == 0


def test_a_pushed_frame_is_copied_so_the_sender_may_reuse_its_buffer() -> None:
    mixer = stage(A, config=MixerConfig(prefill_frames=1))
    buffer = tone(440, 8000, 0)
    mixer.push(A, buffer, 0)
    buffer[:] = 0
    assert np.array_equal(mixer.tick().program, tone(440, 8000, 0))


def test_muting_someone_not_on_stage_is_an_error_not_a_silent_no_op() -> None:
    with pytest.raises(KeyError):
        Mixer().set_muted(A, True)


def test_removing_someone_not_on_stage_is_harmless() -> None:
    mixer = Mixer()
    mixer.remove_speaker(A)
    assert mixer.speakers == frozenset()


def test_a_speaker_can_join_the_stage_muted() -> None:
    mixer = Mixer()
    mixer.add_speaker(A, muted=True)
    assert mixer.is_muted(A)
    assert not run(mixer, {A: 440}, 5)[-1].program.any()


@pytest.mark.parametrize(
    "bad",
    [
        {"prefill_frames": 0},
        {"prefill_frames": 9, "max_buffer_frames": 8},
        {"limiter_threshold": 0.0},
        {"limiter_release_s": 0.0},
        {"resync_frames": 2},
        {"trim_window_frames": -1},
        {"speaking_hold_s": -1.0},
    ],
)
def test_impossible_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must|need"):
        MixerConfig(**bad)  # type: ignore[arg-type]
