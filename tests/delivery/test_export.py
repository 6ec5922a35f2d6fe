"""Export by remux: the whole recording or a range of it as one .m4a, the recorded AAC untouched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from tests.audio_analysis import SAMPLE_RATE, decode_mono, tone_strength
from townhall.delivery.export import (
    ExportError,
    NothingToExport,
    TooLarge,
    recorded_seconds,
    remux,
    wall_clock_at,
)
from townhall.delivery.recording import SpaceRecorder, load_runs
from townhall.media.audio import FRAME_SAMPLES
from townhall.media.encoder import AacFmp4Encoder
from townhall.media.fmp4 import iter_boxes
from townhall.media.packager import PackagedPart

SPACE = "abcdefghij"
PART_S = 15 * 1024 / SAMPLE_RATE
FRAME_S = 1024 / SAMPLE_RATE  # one AAC frame
T0 = 1_700_000_000.0

Signal = Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]  # seconds → samples


def tone(frequency: float) -> Signal:
    return lambda t: np.sin(2 * np.pi * frequency * t)


def chirp(seconds: float, low: float = 200.0, high: float = 4_000.0) -> Signal:
    """A linear sweep: every moment of it sounds different, so a cut's position is identifiable."""
    rate = (high - low) / seconds
    return lambda t: np.sin(2 * np.pi * (low * t + rate * t * t / 2))


def record_audio(
    root: Path,
    signal: Signal,
    seconds: float,
    *,
    space: str = SPACE,
    stream: str = "aaaa0001",
    t0: float = T0,
) -> None:
    """One run recorded the way the pipeline does it: real AAC parts, numbered, into the recorder."""
    encoder = AacFmp4Encoder()
    recorder = SpaceRecorder(root, space, codecs="mp4a.40.2", bandwidth=72_000)
    parts = []
    for n in range(round(seconds * SAMPLE_RATE / FRAME_SAMPLES)):
        t = (np.arange(FRAME_SAMPLES) + n * FRAME_SAMPLES) / SAMPLE_RATE
        parts += encoder.encode((signal(t) * 0.3 * 32767).astype(np.int16))
    parts += encoder.flush()
    for n, part in enumerate(parts):
        recorder.on_part(
            PackagedPart(
                stream, encoder.init_section, 1 + n // 6, n % 6, part, t0 + n * PART_S, True
            )
        )
    recorder.close()


def packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(audio=0) if p.size]


def best_lag(needle: npt.NDArray[np.float64], haystack: npt.NDArray[np.float64]) -> int:
    """Where `needle` sits in `haystack` (samples), by FFT cross-correlation."""
    n = len(haystack) + len(needle)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(haystack, size) * np.conj(np.fft.rfft(needle, size)), size)
    return int(np.argmax(corr[: len(haystack) - len(needle) + 1]))


def test_the_whole_recording_is_one_m4a_with_every_run_back_to_back(tmp_path: Path) -> None:
    record_audio(tmp_path, tone(440), 5, stream="aaaa0001")
    record_audio(tmp_path, tone(660), 3, stream="bbbb0002", t0=T0 + 100)  # after a restart
    runs = load_runs(tmp_path / SPACE)

    made = remux(runs, tmp_path / "all.m4a")

    # The index counts whole AAC frames; a run's last frame may be shorter (the encoder's flush).
    assert made.seconds == pytest.approx(recorded_seconds(runs), abs=len(runs) * FRAME_S)
    audio = decode_mono(made.path)
    assert abs(len(audio) / SAMPLE_RATE - recorded_seconds(runs)) < PART_S
    first = runs[0].duration
    assert tone_strength(audio[: int((first - 0.2) * SAMPLE_RATE)], 440) > 0.9
    assert tone_strength(audio[int((first + 0.2) * SAMPLE_RATE) :], 660) > 0.9


def test_an_export_copies_the_recorded_aac_without_re_encoding(tmp_path: Path) -> None:
    record_audio(tmp_path, tone(440), 3)
    (run,) = load_runs(tmp_path / SPACE)
    whole = tmp_path / "run.mp4"
    whole.write_bytes(run.init_path.read_bytes() + run.media_path.read_bytes())

    made = remux([run], tmp_path / "all.m4a")

    assert packets(made.path) == packets(whole)


def test_the_file_starts_with_its_index_so_it_plays_while_downloading(tmp_path: Path) -> None:
    record_audio(tmp_path, tone(440), 2)
    made = remux(load_runs(tmp_path / SPACE), tmp_path / "all.m4a")
    kinds = [box.type for box in iter_boxes(made.path.read_bytes())]
    assert kinds.index("moov") < kinds.index("mdat")
    assert "moof" not in kinds  # a plain MP4, not fragments
    with av.open(str(made.path)) as container:
        assert container.format.name.split(",")[0] in ("mov", "mp4", "m4a")
        assert container.streams.audio[0].codec_context.name == "aac"


def test_a_range_is_cut_to_the_aac_frame_and_holds_exactly_that_audio(tmp_path: Path) -> None:
    record_audio(tmp_path, chirp(10), 10)
    runs = load_runs(tmp_path / SPACE)
    full = decode_mono(remux(runs, tmp_path / "all.m4a").path)

    made = remux(runs, tmp_path / "clip.m4a", start_s=3.1, end_s=5.6)

    assert made.seconds == pytest.approx(2.5, abs=FRAME_S)
    clip = decode_mono(made.path)
    # Skip the clip's decoder warm-up; the rest must sit at 3.1 s (within one AAC frame).
    lag = best_lag(clip[2048:], full) - 2048
    assert abs(lag - 3.1 * SAMPLE_RATE) <= 1024, lag / SAMPLE_RATE


def test_a_range_across_a_restart_joins_the_runs_without_a_gap(tmp_path: Path) -> None:
    record_audio(tmp_path, tone(440), 3, stream="aaaa0001")
    record_audio(tmp_path, tone(660), 3, stream="bbbb0002", t0=T0 + 100)
    runs = load_runs(tmp_path / SPACE)
    first = runs[0].duration

    made = remux(runs, tmp_path / "clip.m4a", start_s=first - 1, end_s=first + 1)

    assert made.seconds == pytest.approx(2.0, abs=2 * FRAME_S)
    audio = decode_mono(made.path)
    assert abs(len(audio) / SAMPLE_RATE - 2.0) < PART_S
    assert tone_strength(audio[: int(0.8 * SAMPLE_RATE)], 440) > 0.9
    assert tone_strength(audio[int(1.2 * SAMPLE_RATE) :], 660) > 0.9


def test_an_empty_range_or_an_oversized_export_is_refused(tmp_path: Path) -> None:
    record_audio(tmp_path, tone(440), 2)
    runs = load_runs(tmp_path / SPACE)
    with pytest.raises(NothingToExport):
        remux(runs, tmp_path / "late.m4a", start_s=50, end_s=60)
    with pytest.raises(NothingToExport):
        remux([], tmp_path / "none.m4a")
    with pytest.raises(TooLarge):
        remux(runs, tmp_path / "big.m4a", max_bytes=1_000)
    assert not (tmp_path / "late.m4a").exists()
    assert not (tmp_path / "big.m4a").exists()


def test_damaged_media_is_an_export_error_and_leaves_no_file(tmp_path: Path) -> None:
    record_audio(tmp_path, tone(440), 2)
    runs = load_runs(tmp_path / SPACE)
    media = runs[0].media_path
    media.write_bytes(bytes(range(256)) * (media.stat().st_size // 256 + 1))
    with pytest.raises(ExportError):
        remux(runs, tmp_path / "damaged.m4a")
    assert not (tmp_path / "damaged.m4a").exists()


def test_the_wall_clock_of_a_moment_in_the_recording_follows_each_run_across_a_restart(
    tmp_path: Path,
) -> None:
    """A clip's page says when its audio was on air: a second run, started after a gap, is on the
    timeline right after the first but on the wall clock after the gap."""
    record_audio(tmp_path, tone(440), 2.0, stream="aaaa0001", t0=T0)
    record_audio(tmp_path, tone(440), 2.0, stream="aaaa0002", t0=T0 + 100)
    runs = load_runs(tmp_path / SPACE)
    first = recorded_seconds(runs[:1])
    assert wall_clock_at(runs, 0.0) == pytest.approx(T0)
    assert wall_clock_at(runs, 1.0) == pytest.approx(T0 + 1.0)
    assert wall_clock_at(runs, first + 0.5) == pytest.approx(T0 + 100.5)
    assert wall_clock_at(runs, recorded_seconds(runs) + 1) is None
