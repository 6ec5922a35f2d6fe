"""A Space's recording over HTTP: the host sees its disk use and errors, downloads it as one .m4a,
anyone clips it, and once retention deletes it every path to it answers 410."""

from __future__ import annotations

import errno
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.api.test_control_api import Person, guest
from tests.audio_analysis import SAMPLE_RATE, decode_mono, tone_strength
from tests.delivery.test_export import PART_S, best_lag, chirp, record_audio, tone
from townhall.app import create_app
from townhall.config import load
from townhall.delivery.export import recorded_seconds, remux
from townhall.delivery.recording import load_runs
from townhall.delivery.storage import DAY_S, usage
from townhall.harness import wait_until


def recording_app(tmp_path: Path, **options: object) -> Iterator[TestClient]:
    """The whole app (media and recordings) under `tmp_path`, with config `options`."""
    config = load({}, data_dir=tmp_path / "data", **options)
    with TestClient(create_app(config)) as c:
        yield c


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    yield from recording_app(tmp_path, recording_retention_days=1)


def root(client: TestClient) -> Path:
    recordings = client.app.state.config.media.recordings_dir  # type: ignore[attr-defined]
    assert isinstance(recordings, Path)
    return recordings


def on_air(client: TestClient, host: Person, *, record: bool = True, parts: int = 3) -> str:
    """A Space put on air; recorded unless told otherwise, with `parts` parts on disk."""
    body = {"title": "Recorded", "record": record}
    space_id = str(host.post("/api/spaces", body).json()["space"]["id"])
    assert host.post(f"/api/spaces/{space_id}/go-live").status_code == 200
    if record:
        wait_until(
            lambda: any(len(r.entries) >= parts for r in load_runs(root(client) / space_id)),
            15,
            f"{parts} recorded parts",
        )
    return space_id


def end(host: Person, space_id: str) -> None:
    assert host.post(f"/api/spaces/{space_id}/end").status_code == 200


def error_code(response: Any) -> str:
    return str(response.json()["error"]["code"])


def cohost_of(client: TestClient, host: Person, space_id: str) -> Person:
    link = host.post(f"/api/spaces/{space_id}/invite-links", {"role": "cohost"}).json()["invite"]
    cohost = guest(client, "Cohost")
    assert cohost.post(f"/api/spaces/{space_id}/stage/join", {"invite": link}).status_code == 200
    return cohost


# -- storage accounting --------------------------------------------------------------------------
def test_the_host_and_cohosts_see_what_the_recording_costs_on_disk(client: TestClient) -> None:
    host = guest(client, "Host")
    space_id = on_air(client, host)
    cohost = cohost_of(client, host, space_id)

    for who in (host, cohost):
        seen = who.get(f"/api/spaces/{space_id}/recording")
        assert seen.status_code == 200, seen.text
        body = seen.json()
        assert body["recording"] is True
        assert body["runs"] == 1
        assert body["bytes"] > 0
        assert body["bytes"] <= usage(root(client), space_id).bytes  # it only grows
        assert body["seconds"] >= 3 * PART_S - 1e-3
        assert body["error"] is None
        assert body["expired"] is False
        assert body["expires_at"] is None  # still live

    listener = guest(client, "Listener")
    assert error_code(listener.get(f"/api/spaces/{space_id}/recording")) == "not_moderator"
    client.cookies.clear()
    assert client.get(f"/api/spaces/{space_id}/recording").status_code == 401

    end(host, space_id)
    body = host.get(f"/api/spaces/{space_id}/recording").json()
    assert body["recording"] is False
    assert body["bytes"] == usage(root(client), space_id).bytes
    ended_at = host.get(f"/api/spaces/{space_id}").json()["space"]["ended_at"]
    assert body["expires_at"] == pytest.approx(ended_at + DAY_S)


def test_a_full_disk_stops_the_recording_and_tells_the_host_while_the_stream_goes_on(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = guest(client, "Host")
    space_id = on_air(client, host)

    def full(self: object, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("townhall.delivery.recording._OsAppendFile.write", full)
    wait_until(
        lambda: host.get(f"/api/spaces/{space_id}/recording").json()["error"] is not None,
        10,
        "the recording error to reach the host",
    )
    body = host.get(f"/api/spaces/{space_id}/recording").json()
    assert body["recording"] is False
    assert "No space left on device" in body["error"]
    assert body["seconds"] > 0  # what was written before stays

    def newest_part() -> str:
        playlist = client.get(f"/live/{space_id}/media.m3u8")
        assert playlist.status_code == 200
        return re.findall(r'#EXT-X-PART:[^\n]*(URI="[^"]+",BYTERANGE="[^"]+")', playlist.text)[-1]

    before = newest_part()
    wait_until(lambda: newest_part() != before, 5, "the live stream to go on without the recording")


# -- download ------------------------------------------------------------------------------------
def exports_left() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("townhall-*.m4a"))


def test_the_host_downloads_the_whole_recording_as_one_m4a(
    client: TestClient, tmp_path: Path
) -> None:
    host = guest(client, "Host")
    space_id = on_air(client, host, parts=4)
    end(host, space_id)
    # A second run, as a restart would leave, with a tone that must come out at the end.
    record_audio(root(client), tone(440), 3, space=space_id, stream="zzzz0002", t0=time.time() + 60)
    runs = load_runs(root(client) / space_id)
    assert len(runs) == 2
    before = exports_left()

    got = host.get(f"/api/spaces/{space_id}/recording.m4a")

    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "audio/mp4"
    assert f'filename="{space_id}.m4a"' in got.headers["content-disposition"]
    (tmp_path / "download.m4a").write_bytes(got.content)
    audio = decode_mono(tmp_path / "download.m4a")
    assert abs(len(audio) / SAMPLE_RATE - recorded_seconds(runs)) < PART_S
    assert tone_strength(audio[-int(2.5 * SAMPLE_RATE) :], 440) > 0.9
    assert exports_left() == before, "the temporary file outlived the download"


def test_only_the_host_downloads_and_only_what_was_recorded(client: TestClient) -> None:
    host = guest(client, "Host")
    space_id = on_air(client, host)
    cohost = cohost_of(client, host, space_id)
    assert error_code(cohost.get(f"/api/spaces/{space_id}/recording.m4a")) == "not_host"
    unrecorded = on_air(client, host, record=False)
    assert error_code(host.get(f"/api/spaces/{unrecorded}/recording.m4a")) == "not_recorded"
    assert error_code(host.get("/api/spaces/zzzzzzzzzz/recording.m4a")) == "space_not_found"


# -- clips ---------------------------------------------------------------------------------------
def replay_with_a_chirp(client: TestClient, host: Person, seconds: float) -> str:
    """An ended recorded Space whose recording ends with `seconds` of a sweep (every moment of it
    identifiable by cross-correlation)."""
    space_id = on_air(client, host)
    end(host, space_id)
    record_audio(
        root(client),
        chirp(seconds),
        seconds,
        space=space_id,
        stream="zzzz0002",
        t0=time.time() + 60,
    )
    return space_id


def clip_audio(client: TestClient, url: str, out: Path) -> np.ndarray[Any, Any]:
    got = client.get(url.removeprefix("http://testserver"))
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "audio/mp4"
    out.write_bytes(got.content)
    return decode_mono(out)


def test_a_listener_clips_a_replay_and_the_clip_is_exactly_that_audio(
    client: TestClient, tmp_path: Path
) -> None:
    host = guest(client, "Host")
    space_id = replay_with_a_chirp(client, host, 40)
    runs = load_runs(root(client) / space_id)
    total = recorded_seconds(runs)
    full = decode_mono(remux(runs, tmp_path / "full.m4a").path)
    listener = guest(client, "Listener")

    made = listener.post(f"/api/spaces/{space_id}/clips")  # the last 30 s
    assert made.status_code == 201, made.text
    clip = made.json()
    assert clip["id"].startswith(space_id)
    assert clip["end_s"] == pytest.approx(total, abs=1e-3)
    assert clip["start_s"] == pytest.approx(total - 30, abs=1e-3)
    audio = clip_audio(client, clip["url"], tmp_path / "last30.m4a")
    assert abs(len(audio) / SAMPLE_RATE - 30) < PART_S
    lag = best_lag(audio[2048:], full) - 2048
    assert abs(lag / SAMPLE_RATE - (total - 30)) < 1024 / SAMPLE_RATE

    chosen = listener.post(f"/api/spaces/{space_id}/clips", {"start_s": 12.5, "end_s": 20})
    assert chosen.status_code == 201, chosen.text
    audio = clip_audio(client, chosen.json()["url"], tmp_path / "chosen.m4a")
    assert abs(len(audio) / SAMPLE_RATE - 7.5) < PART_S
    lag = best_lag(audio[2048:], full) - 2048
    assert abs(lag / SAMPLE_RATE - 12.5) < 1024 / SAMPLE_RATE
    assert (root(client) / space_id / "clips" / f"{chosen.json()['id']}.m4a").is_file()


def test_a_live_recorded_space_can_be_clipped_as_it_goes(client: TestClient) -> None:
    host = guest(client, "Host")
    space_id = on_air(client, host, parts=6)
    made = guest(client, "Listener").post(f"/api/spaces/{space_id}/clips")
    assert made.status_code == 201, made.text
    assert made.json()["start_s"] == 0
    assert made.json()["seconds"] >= 6 * PART_S - 0.05
    assert client.get(made.json()["url"].removeprefix("http://testserver")).status_code == 200


def test_clips_are_rate_limited_per_person_and_ranges_are_checked(client: TestClient) -> None:
    host = guest(client, "Host")
    space_id = replay_with_a_chirp(client, host, 5)
    eager = guest(client, "Eager")
    for _ in range(3):
        assert eager.post(f"/api/spaces/{space_id}/clips").status_code == 201
    limited = eager.post(f"/api/spaces/{space_id}/clips")
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    other = guest(client, "Other")
    assert other.post(f"/api/spaces/{space_id}/clips").status_code == 201  # per person

    too_long = other.post(f"/api/spaces/{space_id}/clips", {"start_s": 0, "end_s": 61})
    assert too_long.status_code == 422
    backwards = other.post(f"/api/spaces/{space_id}/clips", {"start_s": 4, "end_s": 2})
    assert backwards.status_code == 422
    assert error_code(other.post(f"/api/spaces/{space_id}/clips", {"start_s": 999})) == (
        "nothing_recorded"
    )
    unrecorded = on_air(client, host, record=False)
    assert error_code(guest(client, "Late").post(f"/api/spaces/{unrecorded}/clips")) == (
        "not_recorded"
    )
    client.cookies.clear()
    assert client.post(f"/api/spaces/{space_id}/clips").status_code == 401
    assert error_code(client.get(f"/api/clips/{space_id}-aaaaaaaaaaaa.m4a")) == "clip_not_found"
    assert client.get("/api/clips/..%2f..%2fsecret.m4a").status_code == 404
    assert error_code(client.get("/api/clips/..secret.m4a")) == "clip_not_found"


# -- retention -----------------------------------------------------------------------------------
def test_an_expired_recording_is_deleted_and_every_path_to_it_answers_410(
    client: TestClient,
) -> None:
    host = guest(client, "Host")
    space_id = on_air(client, host, parts=6)
    clip = guest(client, "Fan").post(f"/api/spaces/{space_id}/clips").json()
    end(host, space_id)
    playlist = client.get(f"/live/{space_id}/media.m3u8")
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in playlist.text  # the replay, now kept in memory
    segment = next(line for line in playlist.text.splitlines() if line.endswith(".m4s"))
    node_host = client.app.state.node.host  # type: ignore[attr-defined]
    days = client.app.state.config.recording_retention_days  # type: ignore[attr-defined]
    assert days == 1  # TOWNHALL_RECORDING_RETENTION_DAYS, here set to one day

    # Within the retention period (1 day here) nothing is deleted.
    portal = client.portal
    assert portal is not None
    early = portal.call(node_host.expire_recordings, days, time.time() + DAY_S / 2)
    assert early == []
    assert client.get(f"/live/{space_id}/index.m3u8").status_code == 200

    late = portal.call(node_host.expire_recordings, days, time.time() + 2 * DAY_S)
    assert late == [space_id]

    assert load_runs(root(client) / space_id) == []
    assert not (root(client) / space_id / "clips").exists()
    for path in ("index.m3u8", "media.m3u8", segment):
        gone = client.get(f"/live/{space_id}/{path}")
        assert gone.status_code == 410, (path, gone.text)
        assert error_code(gone) == "recording_expired"
    assert error_code(host.get(f"/api/spaces/{space_id}/recording.m4a")) == "recording_expired"
    assert host.get(f"/api/spaces/{space_id}/recording.m4a").status_code == 410
    assert client.get(clip["url"].removeprefix("http://testserver")).status_code == 410
    assert guest(client, "Late").post(f"/api/spaces/{space_id}/clips").status_code == 410
    body = host.get(f"/api/spaces/{space_id}/recording").json()
    assert body["expired"] is True
    assert body["bytes"] == 0
    assert body["expires_at"] is None
