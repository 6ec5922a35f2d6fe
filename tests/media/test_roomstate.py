"""Room state in the stream: it passes the delay line with the audio it describes, a dump takes
its speaking flags with it, and each part's event message places them where the audio plays.

The core tests feed a `ProgramGate` and a `RoomTimeline` tick by tick (no clock); the pipeline
tests run a real `SpaceMedia` without its clock task and compare the event messages in the parts
with the decoded audio of the same parts.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from townhall.config import MediaConfig
from townhall.media.audio import FRAME_SAMPLES, SAMPLE_RATE, SpeakerId
from townhall.media.delay import ProgramGate
from townhall.media.fmp4 import (
    EventMessage,
    emsg_box,
    fragment_decode_time,
    iter_boxes,
    read_emsg,
)
from townhall.media.pipeline import SpaceMedia
from townhall.media.roomstate import SCHEME_ID_URI, Audience, Cue, RoomTimeline, Seat
from townhall.media.timeline import RunStart

ANN = Seat("ann", "Ann", "host", False)
BOB = Seat("bob", "Bob", "speaker", False)
FRAME = np.zeros(FRAME_SAMPLES, dtype=np.int16)


def shown(
    gate: ProgramGate, ticks: int, speaking: frozenset[str], dump_at: int | None = None
) -> list[frozenset[str]]:
    """What the timeline shows listeners, tick by tick, when `speaking` speak every tick."""
    timeline = RoomTimeline()
    cue = Cue(True, speaking, (ANN, BOB))
    out = []
    for tick in range(ticks):
        if tick == dump_at:
            gate.dump()
        gate.process(FRAME, cue)
        aired_cue, program = gate.aired
        timeline.aired(aired_cue, program)
        out.append(aired_cue.speaking if aired_cue is not None and program else frozenset())
    return out


def test_speaking_flags_come_out_of_the_delay_line_with_their_audio() -> None:
    out = shown(ProgramGate(on_air=True, delay_s=5.0), 300, frozenset({"ann"}))
    assert out[:250] == [frozenset()] * 250  # 5 s of the line's initial silence: nobody speaks
    assert out[250:] == [frozenset({"ann"})] * 50


@settings(max_examples=50, deadline=None)
@given(
    delay_frames=st.integers(min_value=1, max_value=300),
    speak_from=st.integers(min_value=0, max_value=400),
    speak_for=st.integers(min_value=1, max_value=400),
    dump_after=st.integers(min_value=0, max_value=400),
)
def test_a_dumped_interval_never_shows_its_speaking_flags(
    delay_frames: int, speak_from: int, speak_for: int, dump_after: int
) -> None:
    """Whatever was spoken and was still in the line when the dump came never shows as speaking;
    what was spoken after the dump shows exactly `delay` later."""
    gate = ProgramGate(on_air=True, delay_s=delay_frames * 0.02)
    timeline = RoomTimeline()
    dump_at = speak_from + dump_after
    total = dump_at + delay_frames + 100
    out = []
    for tick in range(total):
        if tick == dump_at:
            gate.dump()
        speaking = (
            frozenset({"bob"}) if speak_from <= tick < speak_from + speak_for else frozenset()
        )
        gate.process(FRAME, Cue(True, speaking, (BOB,)))
        cue, program = gate.aired
        timeline.aired(cue, program)
        out.append(bool(cue is not None and program and cue.speaking))
    for tick, speaks in enumerate(out):
        spoken_at = tick - delay_frames  # the tick whose audio airs now
        dumped = dump_at - delay_frames <= spoken_at < dump_at
        said = speak_from <= spoken_at < speak_from + speak_for
        assert speaks == (said and not dumped), (tick, spoken_at)


def test_off_air_shows_nobody_speaking_and_says_so() -> None:
    gate = ProgramGate(on_air=False)
    timeline = RoomTimeline()
    gate.process(FRAME, Cue(False, frozenset({"ann"}), (ANN,)))
    timeline.aired(*gate.aired)
    view = first_view(timeline.message(0, FRAME_SAMPLES, key=True))
    assert view == {"on_air": False, "speaking": [], "stage": [seat_json(ANN)]}


def test_a_part_gives_the_view_at_its_start_and_each_change_inside_with_its_offset() -> None:
    timeline = RoomTimeline()
    quiet, talking = Cue(True, frozenset(), (ANN,)), Cue(True, frozenset({"ann"}), (ANN,))
    for tick in range(40):
        timeline.aired(talking if 10 <= tick < 20 else quiet, True)
    first = json.loads(timeline.message(0, 16 * FRAME_SAMPLES, key=True))
    assert first["views"] == [
        [0.0, {"on_air": True, "speaking": [], "stage": [seat_json(ANN)]}],
        [0.2, {"on_air": True, "speaking": ["ann"]}],  # tick 10; the stage is unchanged
    ]
    second = json.loads(timeline.message(16 * FRAME_SAMPLES, 16 * FRAME_SAMPLES, key=False))
    assert second["views"] == [
        [0.0, {"on_air": True, "speaking": ["ann"]}],
        [0.08, {"on_air": True, "speaking": []}],  # tick 20 is 4 ticks into this part
    ]


def test_key_parts_repeat_the_stage_and_the_audience_others_only_say_what_changed() -> None:
    timeline = RoomTimeline()
    timeline.set_audience(Audience((("👏", 3),), 12, 10, (("carl", "banned", 100.0),)))
    for _ in range(48):
        timeline.aired(Cue(True, frozenset(), (ANN, BOB)), True)
    part = 16 * FRAME_SAMPLES
    key = json.loads(timeline.message(0, part, key=True))
    assert key["views"][0][1]["stage"] == [seat_json(ANN), seat_json(BOB)]
    assert key["audience"] == {
        "reactions": {"👏": 3},
        "window_s": 10,
        "listeners": 12,
        "presence_sample": 1.0,
        "revision": 0,
        "moderation": [{"user_id": "carl", "action": "banned", "at": 100.0}],
    }
    plain = json.loads(timeline.message(part, part, key=False))
    assert "stage" not in plain["views"][0][1]
    assert "audience" not in plain
    timeline.set_audience(Audience((), 13))
    assert json.loads(timeline.message(2 * part, part, key=False))["audience"]["listeners"] == 13


def test_an_event_message_reads_back_as_written() -> None:
    message = EventMessage(SCHEME_ID_URI, "", SAMPLE_RATE, 2**40 + 7, 15360, 9, b'{"v":1}')
    box = emsg_box(message)
    boxes = list(iter_boxes(box))
    assert [b.type for b in boxes] == ["emsg"]
    assert boxes[0].end == len(box)
    assert read_emsg(box, boxes[0]) == message


# -- the pipeline: messages in the parts, placed where the audio plays ----------------------------

SPEAKER = SpeakerId("ann")


def tone(index: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    n = np.arange(index * FRAME_SAMPLES, (index + 1) * FRAME_SAMPLES)
    return (np.sin(2 * np.pi * 440 * n / SAMPLE_RATE) * 0.3 * 32767).astype(np.int16)


async def run_stage(
    media: SpaceMedia, ticks: int, talk: range, dump_at: int | None = None
) -> bytes:
    """Ann talks during the ticks in `talk`; returns the stream (init + every part) at the end."""
    parts: list[bytes] = []
    add_part = media.packager.add_part

    def keep(part: Any) -> tuple[int, int]:
        parts.append(part.data)
        return add_part(part)

    media.packager.add_part = keep  # type: ignore[method-assign]
    media.add_speaker(SPEAKER)
    media.set_stage((ANN,))
    for tick in range(ticks):
        if tick == dump_at:
            media.dump()
        frame = tone(tick) if tick in talk else np.zeros(FRAME_SAMPLES, dtype=np.int16)
        media.push(SPEAKER, frame, tick * FRAME_SAMPLES)
        await media.tick()
    await media.stop()
    return media.packager.init_section() + b"".join(parts)


def speaking_intervals(stream: bytes) -> list[tuple[float, float]]:
    """When the stream's event messages show Ann speaking, in seconds of the media timeline."""
    changes: list[tuple[float, bool]] = []
    end = 0.0
    for box in iter_boxes(stream):
        if box.type != "emsg":
            continue
        event = read_emsg(stream, box)
        assert event.scheme_id_uri == SCHEME_ID_URI
        start = event.presentation_time / event.timescale
        end = start + event.duration / event.timescale
        for offset, view in json.loads(event.data)["views"]:
            changes.append((start + offset, "ann" in view["speaking"]))
    intervals, since = [], None
    for at, speaking in changes:
        if speaking and since is None:
            since = at
        elif not speaking and since is not None:
            intervals.append((since, at))
            since = None
    if since is not None:
        intervals.append((since, end))
    return intervals


def audible_intervals(stream: bytes, path: Path) -> list[tuple[float, float]]:
    """When the decoded stream is loud, in seconds of the media timeline (frame pts, not order)."""
    path.write_bytes(stream)
    loud = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            samples = frame.to_ndarray().reshape(-1)
            assert frame.pts is not None
            for i in np.nonzero(np.abs(samples) > 0.05)[0]:
                loud.append((frame.pts + int(i)) / SAMPLE_RATE)
    intervals: list[tuple[float, float]] = []
    for at in loud:
        if intervals and at - intervals[-1][1] < 0.05:
            intervals[-1] = (intervals[-1][0], at)
        else:
            intervals.append((at, at))
    return intervals


async def test_the_speaking_indicator_is_placed_where_the_audio_plays_after_a_delay(
    tmp_path: Path,
) -> None:
    media = SpaceMedia("room-delay", MediaConfig())
    media.set_delay(1.0)
    stream = await run_stage(media, 300, range(100, 150))
    heard = audible_intervals(stream, tmp_path / "delay.mp4")
    shown_at = speaking_intervals(stream)
    assert len(heard) == 1, heard
    assert len(shown_at) == 1, shown_at
    # Said at 2 s, heard 1 s later (plus the encoder priming and a tick of the jitter buffer).
    assert heard[0][0] == pytest.approx(3.0 + 1024 / SAMPLE_RATE, abs=0.05)
    # The mixer's speaking detection lights within a tick of the onset and holds 0.3 s after.
    assert shown_at[0][0] == pytest.approx(heard[0][0], abs=0.05)
    assert shown_at[0][1] == pytest.approx(heard[0][1] + 0.3, abs=0.08)


async def test_a_dumped_speakers_indicator_never_appears_in_the_stream(tmp_path: Path) -> None:
    media = SpaceMedia("room-dump", MediaConfig())
    media.set_delay(2.0)
    # Ann talks from 1 s to 2 s; the host dumps at 2.4 s, while it is all still in the line.
    stream = await run_stage(media, 300, range(50, 100), dump_at=120)
    assert speaking_intervals(stream) == []
    assert audible_intervals(stream, tmp_path / "dump.mp4") == []


async def test_a_take_over_run_places_the_indicator_on_its_own_timeline(tmp_path: Path) -> None:
    """A run that continues a Space's timeline has no priming shift (see the encoder)."""
    run = RunStart(first_msn=101, discontinuity_sequence=1)
    media = SpaceMedia("room-run", MediaConfig(), run=run)
    stream = await run_stage(media, 200, range(50, 100))
    heard = audible_intervals(stream, tmp_path / "run.mp4")
    shown_at = speaking_intervals(stream)
    assert len(heard) == 1, heard
    assert len(shown_at) == 1, shown_at
    assert shown_at[0][0] == pytest.approx(heard[0][0], abs=0.05)


@pytest.fixture(scope="module")
def stream_with_messages() -> bytes:
    async def made() -> bytes:
        return await run_stage(SpaceMedia("room-players", MediaConfig()), 200, range(20, 180))

    return asyncio.run(made())


@pytest.mark.parametrize("tool", ["ffmpeg", "gst-launch-1.0"])
def test_players_decode_parts_that_carry_event_messages(
    tool: str, tmp_path: Path, stream_with_messages: bytes
) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    stream = stream_with_messages
    path = tmp_path / "stream.mp4"
    path.write_bytes(stream)
    wav = tmp_path / "out.wav"
    if tool == "ffmpeg":
        command = ["ffmpeg", "-v", "error", "-i", str(path), "-f", "wav", "-y", str(wav)]
    else:
        command = [tool, "-q", "filesrc", f"location={path}", "!", "qtdemux", "!", "decodebin"]
        command += ["!", "audioconvert", "!", "audio/x-raw,format=S16LE", "!", "wavenc"]
        command += ["!", "filesink", f"location={wav}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # 4 s of audio, 16-bit mono at 48 kHz, all of it decoded (less the last part's rounding).
    assert wav.stat().st_size >= 3.9 * SAMPLE_RATE * 2


def first_view(message: bytes) -> dict[str, Any]:
    view: dict[str, Any] = json.loads(message)["views"][0][1]
    return view


def seat_json(seat: Seat) -> dict[str, Any]:
    return {
        "user_id": seat.user_id,
        "display_name": seat.display_name,
        "role": seat.role,
        "muted": seat.muted,
    }


async def test_every_part_starts_with_its_message_timed_at_its_decode_time() -> None:
    """A part's bytes are emsg, moof, mdat (the byte ranges of the playlist include the emsg),
    and the message's presentation time is the fragment's own tfdt."""
    media = SpaceMedia("room-parts", MediaConfig())
    await run_stage(media, 100, range(0))
    parts = [media.packager.part(1, i) for i in range(MediaConfig().parts_per_segment)]
    for data in parts:
        assert data is not None
        boxes = list(iter_boxes(data))
        assert [b.type for b in boxes] == ["emsg", "moof", "mdat"]
        event = read_emsg(data, boxes[0])
        assert event.presentation_time == fragment_decode_time(data[boxes[1].start :])
