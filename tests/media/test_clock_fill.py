"""The media clock on a starved machine: a stall beyond the catch-up bound is skipped and counted,
and its interval still enters the stream as silence, so the stream's media time stays on the clock.

The clock task runs against a fake monotonic clock that the test moves: a jump of the clock is a
stall of the event loop as the clock task sees it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.audio_analysis import decode_mono, rms_dbfs
from tests.media.test_pipeline import SILENT_DBFS, tone
from townhall.config import MediaConfig
from townhall.media import pipeline
from townhall.media.audio import FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE, SpeakerId
from townhall.media.clock import MAX_CATCH_UP_TICKS, MediaClock
from townhall.media.fmp4 import fragment_decode_time
from townhall.media.packager import PackagedPart
from townhall.media.pipeline import SpaceMedia

A = SpeakerId("alice")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def until(predicate: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the clock task"
        await asyncio.sleep(0.005)


def filled(media: SpaceMedia, parts: list[PackagedPart]) -> bool:
    """Whether a skip was filled and its parts published (all but the part still open)."""
    published = sum(p.part.duration for p in parts)
    return (
        media.filled_ticks > 0
        and published >= (media.ticks + media.filled_ticks) * FRAME_SECONDS - 0.4
    )


async def stalled_stream(stall_s: float) -> tuple[SpaceMedia, list[PackagedPart]]:
    """Run a Space's clock for a tick, stall it `stall_s`, let it recover, end the stream."""
    clock = FakeClock()
    parts: list[PackagedPart] = []
    media = SpaceMedia("s1", MediaConfig(), clock=clock, on_part=parts.append)
    media.start()
    await until(lambda: media.ticks >= 1)
    clock.now += stall_s
    await until(lambda: filled(media, parts))
    await media.stop()
    return media, parts


async def test_a_stall_is_skipped_but_its_time_still_enters_the_stream() -> None:
    media, parts = await stalled_stream(10.0)
    assert media.skipped_ticks >= 10.0 / FRAME_SECONDS - MAX_CATCH_UP_TICKS
    assert media.filled_ticks == media.skipped_ticks
    media_time = sum(p.part.duration for p in parts)
    # Every tick, run or skipped, is 20 ms of stream (the last AAC frame is padded: < 21.4 ms).
    assert media_time == pytest.approx(
        (media.ticks + media.skipped_ticks) * FRAME_SECONDS, abs=0.03
    )
    assert media_time >= 10.0


async def test_a_stall_longer_than_the_fill_bound_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pipeline, "MAX_FILL_TICKS", 50)
    media, parts = await stalled_stream(10.0)
    assert media.filled_ticks == 50
    assert media.skipped_ticks >= 10.0 / FRAME_SECONDS - MAX_CATCH_UP_TICKS
    media_time = sum(p.part.duration for p in parts)
    assert media_time == pytest.approx((media.ticks + 50) * FRAME_SECONDS, abs=0.03)


async def test_delayed_program_airs_on_time_through_a_stall(tmp_path: Path) -> None:
    """With a broadcast delay, what was said before a stall is already in the delay line: the
    skipped interval enters the line as silence and pushes it out on time, so listeners lose none
    of it and it airs at its place on the stream's timeline, not after the stall."""
    clock = FakeClock()
    parts: list[PackagedPart] = []
    media = SpaceMedia("s1", MediaConfig(), clock=clock, on_part=parts.append)
    media.set_delay(1.0)
    media.add_speaker(A)
    for index in range(25):  # 0.5 s of tone into the delay line, before the clock task runs
        media.push(A, tone(440, index), index * FRAME_SAMPLES)
        await media.tick()
    media.start()
    await until(lambda: media.ticks > 25)
    clock.now += 10.0
    await until(lambda: filled(media, parts))
    await media.stop()

    path = tmp_path / "program.mp4"
    path.write_bytes(media.packager.init_section() + b"".join(p.part.data for p in parts))
    heard = decode_mono(path)
    assert len(heard) >= 10 * SAMPLE_RATE
    # Aired 1.0–1.5 s into the stream (AAC's priming shifts it by ~21 ms; judge the middle).
    assert rms_dbfs(heard[int(1.1 * SAMPLE_RATE) : int(1.4 * SAMPLE_RATE)]) > -20.0
    assert rms_dbfs(heard[int(1.6 * SAMPLE_RATE) : int(9.5 * SAMPLE_RATE)]) < SILENT_DBFS


async def test_every_space_on_a_shared_clock_keeps_its_stream_on_time_through_a_stall() -> None:
    """The node's one clock skips a stall for all its Spaces at once; each one's skipped interval
    still enters its own stream, encoded in order between the ticks around it."""
    clock = FakeClock()
    shared = MediaClock(now=clock)
    parts: dict[str, list[PackagedPart]] = {"a": [], "b": []}
    spaces = [
        SpaceMedia(name, MediaConfig(), media_clock=shared, on_part=parts[name].append)
        for name in parts
    ]
    try:
        for media in spaces:
            media.start()
        await until(lambda: all(media.ticks >= 1 for media in spaces))
        clock.now += 5.0
        await until(lambda: all(filled(media, parts[media.space_id]) for media in spaces))
    finally:
        for media in spaces:
            await media.stop()
        await shared.close()
    for media in spaces:
        assert media.filled_ticks == media.skipped_ticks == shared.skipped_ticks
        published = parts[media.space_id]
        media_time = sum(p.part.duration for p in published)
        # Every tick, run or skipped, is 20 ms of stream; the codec's priming frame and the padded
        # last frame add less than two AAC frames (42.7 ms) in all.
        assert media_time == pytest.approx(
            (media.ticks + media.skipped_ticks) * FRAME_SECONDS, abs=0.043
        )
        # One timeline without a gap: each part's decode time follows on from the one before.
        starts = [fragment_decode_time(p.part.data) for p in published]
        lengths = [round(p.part.duration * SAMPLE_RATE) for p in published]
        assert all(b - a == n for a, b, n in zip(starts, starts[1:], lengths, strict=False))
