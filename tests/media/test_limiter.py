"""The limiter: a loud stage never clips, a quiet one is untouched, gain comes back smoothly."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from townhall.media.audio import FRAME_SAMPLES, SAMPLE_RATE
from townhall.media.limiter import Limiter

Wide = npt.NDArray[np.float64]
CEILING = 0.891 * 32767


def tone(freq: float, amplitude: float, frame: int) -> Wide:
    n = np.arange(frame * FRAME_SAMPLES, (frame + 1) * FRAME_SAMPLES)
    return np.round(amplitude * np.sin(2 * np.pi * freq * n / SAMPLE_RATE))


def reference_limit(x: Wide, reduction_db: float, limiter: Limiter) -> tuple[Wide, float]:
    """The recursion the limiter vectorises, one sample at a time."""
    a = math.exp(-1.0 / (limiter.release_s * SAMPLE_RATE))
    out = np.empty_like(x)
    for n, sample in enumerate(x):
        need = max(0.0, 20 * math.log10(abs(sample) / limiter.ceiling)) if sample else 0.0
        reduction_db = max(need, reduction_db * a)
        out[n] = round(sample * 10 ** (-reduction_db / 20))
    return out, reduction_db


def test_a_quiet_mix_passes_bit_exact() -> None:
    limiter = Limiter()
    for frame in range(50):
        x = tone(440, 20_000, frame) + tone(1000, 9_000, frame)  # peaks just under the ceiling
        assert np.abs(x).max() <= CEILING
        assert np.array_equal(limiter.process(x), x.astype(np.int16))
    assert limiter.reduction_db == 0.0


def test_ten_loud_speakers_never_clip() -> None:
    limiter = Limiter()
    rng = np.random.default_rng(7)
    for frame in range(200):
        speakers = [tone(200 + 37 * i, 32_000, frame) for i in range(10)]
        x = np.sum(speakers, axis=0) + rng.normal(0, 5_000, FRAME_SAMPLES)
        y = limiter.process(x)
        assert y.dtype == np.int16
        assert np.abs(y.astype(np.int32)).max() <= CEILING + 1


def test_attack_is_instant_even_on_the_first_loud_sample() -> None:
    x = np.zeros(FRAME_SAMPLES)
    x[100] = 200_000.0  # one huge spike in an otherwise silent frame
    y = Limiter().process(x)
    assert abs(int(y[100])) <= CEILING + 1
    assert not y[:100].any()  # nothing before the spike was touched


def test_release_recovers_gain_gradually_then_passes_bit_exact_again() -> None:
    limiter = Limiter(release_s=0.25)
    limiter.process(tone(440, 32_767 * 4, 0))  # 13 dB over the ceiling
    start_db = limiter.reduction_db
    assert start_db == pytest.approx(20 * math.log10(4 / 0.891), abs=0.05)

    gains: list[float] = []
    quiet = np.full(FRAME_SAMPLES, 10_000.0)  # DC makes the applied gain readable sample by sample
    for _ in range(int(4 / 0.02)):  # 4 s
        y = limiter.process(quiet).astype(np.float64)
        per_sample = y / quiet
        assert np.all(np.diff(per_sample) >= -1e-4)  # only ever rising (within rounding)
        assert np.abs(np.diff(per_sample)).max() < 2e-3  # ramped, no step inside the frame
        if gains:
            assert abs(per_sample[0] - gains[-1]) < 2e-3  # and no step between frames
        gains.append(per_sample[-1])
    assert gains[0] < 0.3  # still mostly reduced after 20 ms
    # After 0.26 s (13 frames) the reduction has decayed by exp(-0.26 / 0.25), in dB.
    assert gains[12] == pytest.approx(10 ** (-start_db * math.exp(-0.26 / 0.25) / 20), abs=1e-3)
    assert limiter.reduction_db == 0.0  # snapped back to unity
    assert np.array_equal(limiter.process(quiet), quiet.astype(np.int16))


def test_each_limiter_keeps_its_own_envelope() -> None:
    loud, calm = Limiter(), Limiter()
    loud.process(tone(440, 80_000, 0))
    x = tone(440, 10_000, 1)
    assert np.array_equal(calm.process(x), x.astype(np.int16))
    assert np.abs(loud.process(x).astype(np.int32)).max() < 10_000 * 0.6


def test_taking_over_an_envelope_continues_its_gain() -> None:
    program, speaker_return = Limiter(), Limiter()
    program.process(tone(440, 80_000, 0))
    speaker_return.take_over(program)
    assert speaker_return.reduction_db == program.reduction_db > 0
    x = tone(440, 10_000, 1)
    assert np.array_equal(speaker_return.process(x), program.process(x))


@settings(max_examples=60, deadline=None)
@given(
    frames=st.lists(
        arrays(np.float64, FRAME_SAMPLES, elements=st.floats(-13 * 32768, 13 * 32767, width=32)),
        min_size=1,
        max_size=4,
    ),
    threshold=st.floats(0.1, 1.0),
)
def test_no_mix_ever_leaves_above_the_ceiling(frames: list[Wide], threshold: float) -> None:
    limiter = Limiter(threshold=threshold)
    for x in frames:
        y = limiter.process(x).astype(np.float64)
        assert np.abs(y).max() <= limiter.ceiling + 1
        # Limiting only ever attenuates, and never flips a sample's sign.
        assert np.all(np.abs(y) <= np.abs(np.rint(x)))
        assert np.all(y * x >= 0)


@settings(max_examples=40, deadline=None)
@given(
    frames=st.lists(
        arrays(np.float64, FRAME_SAMPLES, elements=st.integers(-5 * 32768, 5 * 32767)),
        min_size=1,
        max_size=3,
    ),
    release_s=st.floats(0.005, 2.0),
)
def test_vectorised_limiter_matches_the_sample_by_sample_definition(
    frames: list[Wide], release_s: float
) -> None:
    limiter = Limiter(release_s=release_s)
    state = 0.0
    for x in frames:
        expected, state = reference_limit(x, state, limiter)
        got = limiter.process(x).astype(np.float64)
        assert np.abs(got - expected).max() <= 1
        assert limiter.reduction_db == pytest.approx(state if state >= 1e-4 else 0.0, rel=1e-9)


@pytest.mark.parametrize(("threshold", "release_s"), [(0.0, 0.25), (1.5, 0.25), (0.9, 0.0)])
def test_nonsense_settings_are_refused(threshold: float, release_s: float) -> None:
    with pytest.raises(ValueError, match="must"):
        Limiter(threshold, release_s)
