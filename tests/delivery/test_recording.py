"""The recorder and the replay playlist: durable index, torn lines, full disks, runs, VOD text."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from townhall.delivery.recording import (
    INDEX_NAME,
    MEDIA_NAME,
    IndexEntry,
    RunRecorder,
    SpaceRecorder,
    load_runs,
    parse_index,
)
from townhall.delivery.replay import Replay, open_replay
from townhall.media.packager import EncodedPart, PackagedPart

INIT = b"ftyp-moov-init"
PART_S = 0.32
PPS = 3  # parts per segment in these tests
T0 = 1_700_000_000.0


def packaged(
    n: int, *, stream: str = "aaaa0001", on_air: bool = True, t0: float = T0
) -> PackagedPart:
    """Part n of a stream: msn from 1, PPS parts per segment, distinct bytes per part."""
    data = f"moof-mdat-{stream}-{n:05d}".encode()
    return PackagedPart(
        stream, INIT, 1 + n // PPS, n % PPS, EncodedPart(data, PART_S), t0 + n * PART_S, on_air
    )


def record(root: Path, parts: list[PackagedPart], space: str = "space00001") -> SpaceRecorder:
    recorder = SpaceRecorder(root, space, codecs="mp4a.40.2", bandwidth=72_000)
    for p in parts:
        recorder.on_part(p)
    recorder.close()
    return recorder


class FakeFile:
    """An AppendFile that fills up: writes beyond `capacity` bytes raise ENOSPC."""

    def __init__(self, capacity: int = 1 << 30) -> None:
        self.data = bytearray()
        self.capacity = capacity
        self.syncs = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        if len(self.data) + len(data) > self.capacity:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.data += data

    def sync(self) -> None:
        self.syncs += 1

    def close(self) -> None:
        self.closed = True


# -- the index ---------------------------------------------------------------------------------
def test_an_index_line_round_trips() -> None:
    entry = IndexEntry(7, 2, 0.32, T0 + 1.5, 0, 345)
    assert parse_index(entry.line()) == [entry]


def test_a_torn_last_line_is_ignored_and_everything_before_it_trusted() -> None:
    lines = [IndexEntry(1, i, 0.32, T0 + i * 0.32, i * 10, 10).line() for i in range(3)]
    whole = b"".join(lines)
    for cut in range(len(whole) - len(lines[-1]) + 1, len(whole)):
        assert len(parse_index(whole[:cut])) == 2, cut
    assert len(parse_index(whole)) == 3


def test_a_corrupt_line_ends_the_trusted_index() -> None:
    lines = [IndexEntry(1, i, 0.32, T0, i * 10, 10).line() for i in range(3)]
    damaged = lines[1].replace(b"0.320000", b"0.330000")
    assert len(parse_index(lines[0] + damaged + lines[2])) == 1


def test_index_lines_past_the_end_of_the_media_file_are_not_trusted() -> None:
    lines = b"".join(IndexEntry(1, i, 0.32, T0, i * 10, 10).line() for i in range(3))
    assert len(parse_index(lines, media_size=25)) == 2


# -- the core: writes, syncs and a full disk -----------------------------------------------------
def test_each_part_is_written_before_its_index_line_and_synced() -> None:
    media, index = FakeFile(), FakeFile()
    run = RunRecorder(media, index)
    assert run.add(1, 0, b"abc", 0.32, T0)
    assert run.add(1, 1, b"defg", 0.32, T0 + 0.32)
    assert bytes(media.data) == b"abcdefg"
    assert parse_index(bytes(index.data), len(media.data)) == [
        IndexEntry(1, 0, 0.32, T0, 0, 3),
        IndexEntry(1, 1, 0.32, T0 + 0.32, 3, 4),
    ]
    assert media.syncs == index.syncs == 2  # sync_every=1: every part


def test_a_full_disk_stops_the_recording_without_raising_and_keeps_what_was_written() -> None:
    media, index = FakeFile(capacity=10), FakeFile()
    run = RunRecorder(media, index)
    assert run.add(1, 0, b"12345", 0.32, T0)
    assert not run.add(1, 1, b"678901", 0.32, T0 + 0.32)  # ENOSPC: not recorded, not raised
    assert run.error is not None
    assert run.error.errno == errno.ENOSPC
    assert not run.add(1, 2, b"x", 0.32, T0 + 0.64)  # stays stopped
    assert parse_index(bytes(index.data), len(media.data)) == [IndexEntry(1, 0, 0.32, T0, 0, 5)]
    run.close()
    assert media.closed
    assert index.closed


def test_a_full_disk_is_reported_once_to_the_host_and_the_pipeline_never_sees_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors: list[tuple[str, OSError]] = []
    recorder = SpaceRecorder(
        tmp_path,
        "space00001",
        codecs="mp4a.40.2",
        bandwidth=72_000,
        on_error=lambda space, exc: errors.append((space, exc)),
    )
    for n in range(4):
        recorder.on_part(packaged(n))
    real_write = __import__("os").write

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("townhall.delivery.recording.os.write", full)
    for n in range(4, 8):
        recorder.on_part(packaged(n))  # must not raise
    monkeypatch.setattr("townhall.delivery.recording.os.write", real_write)
    recorder.on_part(packaged(8))  # the disk has room again: the recording stays stopped
    recorder.close()
    assert len(errors) == 1
    assert errors[0][0] == "space00001"
    assert errors[0][1].errno == errno.ENOSPC
    assert recorder.error is errors[0][1]
    assert not recorder.recording
    runs = load_runs(tmp_path / "space00001")
    assert [len(r.entries) for r in runs] == [4]  # what came before the full disk is playable


# -- runs on disk --------------------------------------------------------------------------------
def test_the_green_room_is_not_recorded(tmp_path: Path) -> None:
    record(tmp_path, [packaged(n, on_air=n >= 5) for n in range(9)])
    (run,) = load_runs(tmp_path / "space00001")
    assert next((e.msn, e.index) for e in run.entries) == (1 + 5 // PPS, 5 % PPS)
    assert len(run.entries) == 4


def test_a_killed_run_is_playable_up_to_its_last_complete_line(tmp_path: Path) -> None:
    record(tmp_path, [packaged(n) for n in range(7)])
    run_dir = tmp_path / "space00001" / "aaaa0001"
    # What a SIGKILL between writes can leave: half a part's bytes, half an index line.
    with (run_dir / MEDIA_NAME).open("ab") as f:
        f.write(b"moof-half")
    index = (run_dir / INDEX_NAME).read_bytes()
    (run_dir / INDEX_NAME).write_bytes(index + index.splitlines(keepends=True)[0][:11])
    (run,) = load_runs(tmp_path / "space00001")
    assert len(run.entries) == 7
    media = (run_dir / MEDIA_NAME).read_bytes()
    for n, entry in enumerate(run.entries):
        assert media[entry.offset : entry.end] == packaged(n).part.data


def test_a_restart_starts_a_new_run_and_the_replay_spans_both(tmp_path: Path) -> None:
    first = [packaged(n, stream="aaaa0001") for n in range(5)]
    second = [packaged(n, stream="bbbb0002", t0=T0 + 100) for n in range(4)]
    record(tmp_path, first)
    record(tmp_path, second)  # a new process: a new recorder, a new stream id
    replay = open_replay(tmp_path / "space00001")
    assert replay is not None
    assert replay.stream_ids == ["aaaa0001", "bbbb0002"]
    assert replay.duration == pytest.approx(9 * PART_S)
    text = replay.media_playlist()
    assert text.count("#EXT-X-DISCONTINUITY") == 1
    assert text.index('#EXT-X-MAP:URI="aaaa0001/init.mp4"') < text.index("#EXT-X-DISCONTINUITY")
    assert text.index("#EXT-X-DISCONTINUITY") < text.index('#EXT-X-MAP:URI="bbbb0002/init.mp4"')


def test_runs_are_ordered_by_time_not_by_name(tmp_path: Path) -> None:
    record(tmp_path, [packaged(n, stream="zzzz0001") for n in range(3)])
    record(tmp_path, [packaged(n, stream="aaaa0002", t0=T0 + 50) for n in range(3)])
    assert [r.stream_id for r in load_runs(tmp_path / "space00001")] == ["zzzz0001", "aaaa0002"]


# -- the replay ----------------------------------------------------------------------------------
def test_the_replay_is_a_vod_of_whole_segments_with_the_live_uris(tmp_path: Path) -> None:
    record(tmp_path, [packaged(n) for n in range(7)])  # segments 1, 2 full; 3 has one part
    replay = open_replay(tmp_path / "space00001")
    assert replay is not None
    lines = replay.media_playlist().splitlines()
    assert lines[0] == "#EXTM3U"
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in lines
    assert lines[-1] == "#EXT-X-ENDLIST"
    assert not any(line.startswith(("#EXT-X-PART", "#EXT-X-PRELOAD-HINT")) for line in lines)
    assert "#EXT-X-TARGETDURATION:1" in lines  # 3 × 0.32 s
    assert [line for line in lines if not line.startswith("#")] == [
        "aaaa0001/s1.m4s",
        "aaaa0001/s2.m4s",
        "aaaa0001/s3.m4s",
    ]
    assert [line for line in lines if line.startswith("#EXTINF")] == [
        "#EXTINF:0.96000,",
        "#EXTINF:0.96000,",
        "#EXTINF:0.32000,",
    ]
    assert "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z" in lines


def test_a_replay_segment_is_its_parts_bytes_and_the_init_is_the_runs(tmp_path: Path) -> None:
    parts = [packaged(n) for n in range(7)]
    record(tmp_path, parts)
    replay = open_replay(tmp_path / "space00001")
    assert replay is not None
    assert replay.segment("aaaa0001", 2) == b"".join(p.part.data for p in parts[3:6])
    assert replay.segment("aaaa0001", 3) == parts[6].part.data
    assert replay.segment("aaaa0001", 4) is None
    assert replay.segment("nope", 1) is None
    assert replay.init_section("aaaa0001") == INIT
    assert 'CODECS="mp4a.40.2"' in replay.multivariant_playlist("media.m3u8")


def test_nothing_recorded_means_no_replay(tmp_path: Path) -> None:
    assert open_replay(tmp_path / "missing") is None
    record(tmp_path, [packaged(n, on_air=False) for n in range(4)])
    assert open_replay(tmp_path / "space00001") is None
    with pytest.raises(ValueError, match="at least one"):
        Replay([])
