"""The program encoder's output is what players receive: it must parse, play, and keep time."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.audio_analysis import decode_mono, tone_strength
from townhall.media.audio import FRAME_SAMPLES, SAMPLE_RATE
from townhall.media.encoder import AacFmp4Encoder
from townhall.media.fmp4 import BoxSplitter, Fmp4Error, fragment_sample_count, iter_boxes


def tone_frames(frequency: float, seconds: float) -> list[np.ndarray]:
    n = int(seconds * SAMPLE_RATE) // FRAME_SAMPLES
    t = np.arange(n * FRAME_SAMPLES) / SAMPLE_RATE
    pcm = (np.sin(2 * np.pi * frequency * t) * 0.3 * 32767).astype(np.int16)
    return list(pcm.reshape(n, FRAME_SAMPLES))


def encode_all(encoder: AacFmp4Encoder, frames: list[np.ndarray]) -> list[bytes]:
    parts = []
    for frame in frames:
        parts.extend(encoder.encode(frame))
    return [p.data for p in parts]


def test_parts_have_the_configured_exact_duration() -> None:
    encoder = AacFmp4Encoder(frames_per_part=15)
    parts = []
    for frame in tone_frames(440, 3.0):
        parts.extend(encoder.encode(frame))
    assert len(parts) >= 8
    assert all(p.duration == pytest.approx(0.32) for p in parts)
    assert all(p.independent for p in parts)
    # Each part is exactly one moof+mdat pair.
    for part in parts:
        assert [b.type for b in iter_boxes(part.data)] == ["moof", "mdat"]


def test_init_and_parts_are_a_valid_stream_ffprobe_accepts(tmp_path: Path) -> None:
    encoder = AacFmp4Encoder(frames_per_part=15)
    body = encode_all(encoder, tone_frames(440, 4.0))
    body += [p.data for p in encoder.flush()]
    path = tmp_path / "stream.mp4"
    path.write_bytes(encoder.init_section + b"".join(body))

    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(probe.stdout)
    stream = info["streams"][0]
    assert stream["codec_name"] == "aac"
    assert stream["profile"] == "LC"
    assert int(stream["sample_rate"]) == 48_000
    assert int(stream["channels"]) == 1
    assert float(info["format"]["duration"]) == pytest.approx(4.0, abs=0.1)

    audio = decode_mono(path)
    assert tone_strength(audio, 440) > 0.8


def test_init_section_is_ftyp_and_moov_with_an_aac_track() -> None:
    encoder = AacFmp4Encoder()
    assert [b.type for b in iter_boxes(encoder.init_section)] == ["ftyp", "moov"]
    assert b"mp4a" in encoder.init_section


def test_flush_closes_a_short_last_part() -> None:
    encoder = AacFmp4Encoder(frames_per_part=15)
    encode_all(encoder, tone_frames(440, 0.5))  # 0.32 s part out, ~0.18 s pending
    last = encoder.flush()
    assert len(last) == 1
    assert 0 < last[0].duration < 0.32


def test_box_splitter_reassembles_boxes_split_across_writes() -> None:
    encoder = AacFmp4Encoder()
    data = encoder.init_section + b"".join(encode_all(encoder, tone_frames(440, 1.0)))
    splitter = BoxSplitter()
    boxes = []
    for i in range(0, len(data), 7):
        boxes.extend(splitter.feed(data[i : i + 7]))
    assert [kind for kind, _ in boxes][:4] == ["ftyp", "moov", "moof", "mdat"]
    assert b"".join(box for _, box in boxes) == data


def test_fragment_without_samples_is_rejected() -> None:
    with pytest.raises(Fmp4Error):
        fragment_sample_count(b"\x00\x00\x00\x08mdat")


def test_sample_count_reads_the_trun() -> None:
    encoder = AacFmp4Encoder(frames_per_part=10)
    parts = encode_all(encoder, tone_frames(440, 1.0))
    assert fragment_sample_count(parts[0]) == 10


def tone_after_silence(silence_s: float) -> list[np.ndarray]:
    """Half a second of tone, `silence_s` of digital silence, then a second of another tone."""
    quiet = [np.zeros(FRAME_SAMPLES, dtype=np.int16)] * round(
        silence_s * SAMPLE_RATE / FRAME_SAMPLES
    )
    return tone_frames(440, 0.5) + quiet + tone_frames(660, 1.0)


def test_reused_silence_is_byte_for_byte_what_encoding_every_frame_gives() -> None:
    frames = tone_after_silence(3.0) + [np.zeros(FRAME_SAMPLES, dtype=np.int16)] * 7
    streams = []
    for reuse in (True, False):
        encoder = AacFmp4Encoder(reuse_silence=reuse, start_sample=15 * 1024 * 7)
        streams.append([encoder.init_section, *encode_all(encoder, frames)])
        streams[-1] += [p.data for p in encoder.flush()]
        assert (encoder.frames_reused > 100) == reuse  # 3 s is ~140 AAC frames
    assert streams[0] == streams[1]


def test_a_silent_stretch_decodes_to_silence_and_the_word_after_it_is_whole(
    tmp_path: Path,
) -> None:
    encoder = AacFmp4Encoder()
    frames = tone_after_silence(3.0)
    body = encode_all(encoder, frames) + [p.data for p in encoder.flush()]
    path = tmp_path / "stream.mp4"
    path.write_bytes(encoder.init_section + b"".join(body))
    audio = decode_mono(path)
    # The decoder's output starts with the codec's priming delay: where the first tone starts.
    delay = int(np.flatnonzero(np.abs(audio) > 0.01)[0])
    onset = delay + (len(frames) - 50) * FRAME_SAMPLES  # the second tone's first sample
    frame = 1024
    # Inside the silence (a frame clear of each tone's codec window): digital silence, exactly.
    assert not audio[delay + 24_000 + 2 * frame : onset - 2 * frame].any()
    # The tone after it is there at full level from its first 20 ms.
    first = audio[onset : onset + FRAME_SAMPLES]
    assert np.sqrt(np.mean(first**2)) > 0.8 * 0.3 / np.sqrt(2)
    assert tone_strength(audio[onset : onset + SAMPLE_RATE // 2], 660) > 0.8
