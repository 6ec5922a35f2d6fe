"""A Space's media engine, driven tick by tick: what listeners get is what the packager got, decoded.

The clock task is not started: the test calls `SpaceMedia.tick()` itself, so 20 ms of audio takes
as long as encoding it does, and every assertion is about exact ticks, not wall time. Speakers push
one frame per tick with RTP-like pts, as the ingest does. Listener audio is judged by decoding the
AAC parts the packager received; a speaker's return by decoding the Opus packets offered to their
return track.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from tests.audio_analysis import decode_mono, rms_dbfs, tone_strength
from townhall.config import MediaConfig
from townhall.media.audio import FRAME_SAMPLES, SAMPLE_RATE, PcmFrame, SpeakerId
from townhall.media.packager import EncodedPart
from townhall.media.pipeline import SpaceMedia

A, B = SpeakerId("alice"), SpeakerId("bob")
SILENT_DBFS = -70.0  # AAC of digital silence decodes to (near) exact zeros


def tone(frequency: float, index: int, amplitude: float = 0.3) -> PcmFrame:
    """Frame `index` of a continuous sine."""
    n = np.arange(index * FRAME_SAMPLES, (index + 1) * FRAME_SAMPLES)
    return (np.sin(2 * np.pi * frequency * n / SAMPLE_RATE) * amplitude * 32767).astype(np.int16)


class Studio:
    """A SpaceMedia without its clock: speakers, a tick counter, and everything it delivered."""

    def __init__(self, media: SpaceMedia, tmp_path: Path) -> None:
        self.media = media
        self.tmp_path = tmp_path
        self.index = 0
        self.parts: list[bytes] = []
        self.returns: dict[SpeakerId, list[tuple[bytes, int]]] = {}
        add_part = media.packager.add_part

        def record_part(part: EncodedPart) -> tuple[int, int]:
            self.parts.append(part.data)
            return add_part(part)

        media.packager.add_part = record_part  # type: ignore[method-assign]

    def join(self, speaker: SpeakerId) -> None:
        track = self.media.add_speaker(speaker)
        packets = self.returns[speaker] = []
        offer = track.offer

        def record_packet(packet: bytes, tick: int) -> None:
            packets.append((packet, tick))
            offer(packet, tick)

        track.offer = record_packet  # type: ignore[method-assign]

    async def run(self, ticks: int, voices: Mapping[SpeakerId, float | None]) -> None:
        """`ticks` ticks in which each speaker says a tone (Hz) or nothing (None: digital silence)."""
        for _ in range(ticks):
            for speaker, frequency in voices.items():
                frame = (
                    tone(frequency, self.index)
                    if frequency is not None
                    else np.zeros(FRAME_SAMPLES, dtype=np.int16)
                )
                self.media.push(speaker, frame, self.index * FRAME_SAMPLES)
            await self.media.tick()
            self.index += 1

    def listeners_hear(self) -> npt.NDArray[np.float64]:
        path = self.tmp_path / f"program-{len(self.parts)}.mp4"
        path.write_bytes(self.media.packager.init_section() + b"".join(self.parts))
        return decode_mono(path)

    def hears_back(self, speaker: SpeakerId) -> npt.NDArray[np.float64]:
        codec = av.CodecContext.create("libopus", "r")
        codec.sample_rate = SAMPLE_RATE
        codec.layout = "mono"
        chunks = []
        expected: int | None = None
        for data, tick in self.returns[speaker]:
            if expected is not None and tick > expected:  # nothing sent: the receiver plays silence
                chunks.append(np.zeros((tick - expected) * FRAME_SAMPLES))
            expected = tick + 1
            for frame in codec.decode(av.Packet(data)):
                samples = frame.to_ndarray().reshape(-1)
                if samples.dtype.kind != "f":  # floats in [-1, 1] from FFmpeg's own decoder
                    samples = samples / 32768.0
                chunks.append(samples.astype(np.float64))
        return np.concatenate(chunks)


@pytest.fixture
async def studio(tmp_path: Path) -> AsyncIterator[Studio]:
    media = SpaceMedia("space-under-test", MediaConfig())
    yield Studio(media, tmp_path)
    await media.stop()


def seconds(ticks: int) -> int:
    """Sample count of `ticks` ticks."""
    return ticks * FRAME_SAMPLES


async def test_a_new_space_is_on_air_and_listeners_hear_the_tone(studio: Studio) -> None:
    assert studio.media.on_air
    assert studio.media.delay_s == 0.0
    studio.join(A)
    await studio.run(150, {A: 440})

    audio = studio.listeners_hear()
    assert len(audio) >= seconds(120)
    assert rms_dbfs(audio) > -20
    assert tone_strength(audio, 440) > 0.5


async def test_off_air_listeners_hear_silence_while_the_stage_still_hears_each_other(
    studio: Studio, tmp_path: Path
) -> None:
    studio.media.set_on_air(False)
    studio.join(A)
    studio.join(B)
    await studio.run(150, {A: 440, B: 660})

    audio = studio.listeners_hear()
    assert len(audio) >= seconds(120)
    assert rms_dbfs(audio) < SILENT_DBFS, "the green room went out to listeners"

    alice_hears = studio.hears_back(A)[seconds(20) :]
    bob_hears = studio.hears_back(B)[seconds(20) :]
    assert tone_strength(alice_hears, 660) > 0.5
    assert tone_strength(alice_hears, 440) < 0.01
    assert tone_strength(bob_hears, 440) > 0.5

    # Untouched: the returns are exactly what the same stage gets when it is on air.
    on_air = Studio(SpaceMedia("space-on-air", MediaConfig()), tmp_path)
    try:
        on_air.join(A)
        on_air.join(B)
        await on_air.run(150, {A: 440, B: 660})
        assert on_air.returns == studio.returns
        assert tone_strength(on_air.listeners_hear(), 660) > 0.2
    finally:
        await on_air.media.stop()


async def test_going_live_with_a_delay_airs_nothing_from_the_green_room(studio: Studio) -> None:
    media = studio.media
    media.set_on_air(False)
    media.set_delay(1.0)
    studio.join(A)
    await studio.run(100, {A: 440})  # sound check in the green room
    media.set_on_air(True)
    assert media.on_air
    await studio.run(200, {A: 660})

    audio = studio.listeners_hear()
    assert len(audio) >= seconds(250)
    assert tone_strength(audio, 440) < 0.01, "the sound check leaked through the delay line"
    # Go live was at tick 100; with the delay its audio airs from tick 150 on, silence before.
    assert rms_dbfs(audio[: seconds(148)]) < SILENT_DBFS
    assert tone_strength(audio[seconds(160) :], 660) > 0.5


async def test_a_dumped_tone_never_reaches_the_packaged_parts(studio: Studio) -> None:
    media = studio.media
    media.set_delay(1.0)
    assert media.delay_s == pytest.approx(1.0)
    studio.join(A)
    await studio.run(30, {A: 440})  # the hot mic
    await studio.run(10, {A: None})  # the mixer's jitter buffer has played all of it out
    assert media.dump() == pytest.approx(0.8)  # 40 ticks of program were still in the line
    await studio.run(150, {A: 660})

    audio = studio.listeners_hear()
    assert len(audio) >= seconds(160)
    assert tone_strength(audio, 440) < 0.01, "dumped audio reached listeners"
    # The initial delay, then silence where the dumped program would have aired, then 660 Hz
    # from tick 40 + 50 on.
    assert rms_dbfs(audio[: seconds(88)]) < SILENT_DBFS
    assert tone_strength(audio[seconds(100) :], 660) > 0.5
    stats = media.program_stats
    assert (stats.frames_dumped, stats.dumps, stats.delay_frames) == (40, 1, 50)


async def test_end_stops_at_once_and_the_delay_buffer_never_airs(studio: Studio) -> None:
    media = studio.media
    media.set_delay(2.0)
    studio.join(A)
    await studio.run(90, {A: 440})
    await media.stop()

    assert media.packager.ended
    assert studio.parts, "the last part was not flushed"
    audio = studio.listeners_hear()
    assert len(audio) >= seconds(90)
    assert rms_dbfs(audio) < SILENT_DBFS, "program in the delay buffer aired after END"
    assert media.program_stats.frames_dumped == 90


async def test_a_new_space_can_start_in_the_green_room(tmp_path: Path) -> None:
    media = SpaceMedia("green", MediaConfig(), on_air=False)
    try:
        assert not media.on_air
        studio = Studio(media, tmp_path)
        studio.join(A)
        await studio.run(100, {A: 440})
        assert rms_dbfs(studio.listeners_hear()) < SILENT_DBFS
    finally:
        await media.stop()


async def test_a_delay_outside_the_range_is_refused(studio: Studio) -> None:
    with pytest.raises(ValueError, match="delay"):
        studio.media.set_delay(31)
    assert studio.media.delay_s == 0.0


async def test_ticks_belong_to_the_clock_task_once_it_runs(studio: Studio) -> None:
    studio.media.start()
    with pytest.raises(RuntimeError, match="clock"):
        await studio.media.tick()


async def test_a_lone_speaker_gets_ready_made_silence_back_and_hears_the_next_voice_at_once(
    studio: Studio,
) -> None:
    studio.join(A)
    studio.join(B)
    await studio.run(100, {A: 440, B: None})  # Alice alone: her mix-minus is silence
    # A packet every tick (no gaps for a receiver's jitter buffer to grow on), all the same one.
    assert [tick for _, tick in studio.returns[A]] == list(range(100))
    assert len({packet for packet, _ in studio.returns[A]}) == 1  # ready-made, not encoded
    await studio.run(50, {A: 440, B: 660})
    alice_packets = [(p, tick) for p, tick in studio.returns[A] if tick >= 100]
    alice_packets = alice_packets[
        next(i for i, (p, _) in enumerate(alice_packets) if p != studio.returns[A][0][0]) :
    ]
    # Bob's first frame reaches the mix after the jitter buffer's prefill, and so her return.
    assert alice_packets
    assert alice_packets[0][1] <= 100 + 3
    assert [tick for _, tick in alice_packets] == list(range(alice_packets[0][1], 150))
    alice_hears = studio.hears_back(A)[seconds(5) :]
    assert tone_strength(alice_hears, 660) > 0.5


async def test_a_silent_stage_gets_the_same_silent_packet_every_tick(studio: Studio) -> None:
    studio.join(A)
    studio.join(B)
    await studio.run(60, {A: None, B: None})
    assert [tick for _, tick in studio.returns[A]] == list(range(60))
    assert len({packet for packet, _ in studio.returns[A]}) == 1
    assert studio.returns[B] == studio.returns[A]
    assert rms_dbfs(studio.hears_back(A)) < SILENT_DBFS


async def test_listeners_hear_digital_silence_then_the_first_word_whole(studio: Studio) -> None:
    studio.join(A)
    await studio.run(25, {A: 330})
    await studio.run(150, {A: None})  # 3 s of silence: the encoder reuses its silent unit
    await studio.run(60, {A: 440})
    audio = studio.listeners_hear()
    # Where each tone starts in the decoded program: the same offset (jitter prefill, codec delay).
    delay = int(np.flatnonzero(np.abs(audio) > 0.01)[0])
    onset = delay + seconds(25 + 150)
    assert not audio[delay + seconds(25) + 2048 : onset - 2048].any(), "not digital silence"
    first = audio[onset : onset + FRAME_SAMPLES]  # the first 20 ms of the word after it
    assert np.sqrt(np.mean(first**2)) > 0.8 * 0.3 / np.sqrt(2)
    assert tone_strength(audio[onset : onset + seconds(20)], 440) > 0.8
    assert studio.media.silent_frames_reused > 100
