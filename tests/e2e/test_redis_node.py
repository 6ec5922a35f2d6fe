"""The server on shared state: live state and events in a real redis-server (as with many
processes), records in SQLite. Go live travels as an event through Redis to the media director."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from websockets.sync.client import connect

from tests.audio_analysis import decode_mono, rms_dbfs, tone_strength
from tests.conftest import Proc, Server
from tests.e2e.test_audio_path import listen_with_ffmpeg, on_stage
from townhall.harness import start_server

pytestmark = pytest.mark.e2e


def node_db(redis_url: str) -> str:
    return redis_url.rsplit("/", 1)[0] + "/3"  # the contract suite flushes database 0


@pytest.fixture
def redis_server(tmp_path: Path, redis_url: str) -> Iterator[Server]:
    srv = start_server(tmp_path / "data", env={"TOWNHALL_REDIS_URL": node_db(redis_url)})
    yield srv
    assert srv.proc.stop() == 0, srv.proc.output()


def test_a_space_runs_on_redis_live_state(
    redis_server: Server, speakers: Callable[..., Proc], tmp_path: Path, redis_url: str
) -> None:
    server = redis_server
    space = server.create_space("Shared state", live=False)
    ws_url = (
        server.url.replace("http://", "ws://")
        + f"/api/spaces/{space.id}/events?token={space.host_token}"
    )
    with connect(ws_url, open_timeout=10) as ws:
        hello = json.loads(ws.recv(timeout=10))
        backlog = [json.loads(ws.recv(timeout=10)) for _ in range(hello["latest_seq"])]
        assert [e["type"] for e in backlog] == ["space.created"]

        on_stage(speakers(*space.host_bot_args(), "--tone", "440"))
        assert (
            rms_dbfs(decode_mono(listen_with_ffmpeg(space.playlist_url, tmp_path / "off.wav", 1)))
            < -60
        )

        server.call("POST", f"/api/spaces/{space.id}/go-live", space.host_token)
        event = json.loads(ws.recv(timeout=10))
        assert (event["seq"], event["type"], event["data"]["state"]) == (2, "space.state", "live")

    audio = decode_mono(listen_with_ffmpeg(space.playlist_url, tmp_path / "on.wav", 2))
    assert tone_strength(audio, 440) > 0.5
    with redis.Redis.from_url(node_db(redis_url)) as client:  # the events really live in Redis
        assert any(space.id in key.decode() for key in client.scan_iter(count=1000))
