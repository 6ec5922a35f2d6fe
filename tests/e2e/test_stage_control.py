"""The control plane reaches the audio: green room, Go live, delay and dump, end, restart.

A speaker bot talks (a tone) and ffmpeg listens over LL-HLS, while the host drives the Space over
the HTTP API, as a producer would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.audio_analysis import decode_mono, rms_dbfs, tone_strength
from tests.conftest import Proc, Server
from tests.e2e.test_audio_path import listen_with_ffmpeg, on_stage
from townhall.harness import start_server

pytestmark = pytest.mark.e2e


def test_listeners_hear_nothing_in_the_green_room_then_the_stage_once_live(
    server: Server, speakers: Callable[..., Proc], tmp_path: Path
) -> None:
    space = server.create_space("Pre-show", live=False)
    returned = tmp_path / "host-hears.wav"
    on_stage(speakers(*space.host_bot_args(), "--tone", "440"))
    guest = speakers(
        server.invite(space), "--tone", "660", "--duration", "10", "--record-return", str(returned)
    )
    on_stage(guest)

    off_air = decode_mono(listen_with_ffmpeg(space.playlist_url, tmp_path / "off.wav", 2))
    assert rms_dbfs(off_air) < -60, "audio from the green room reached listeners"

    server.call("POST", f"/api/spaces/{space.id}/go-live", space.host_token)
    on_air = decode_mono(listen_with_ffmpeg(space.playlist_url, tmp_path / "on.wav", 3))
    assert tone_strength(on_air, 440) > 0.2
    assert tone_strength(on_air, 660) > 0.2

    # Meanwhile the stage heard itself all along: the guest heard the host in the green room too.
    assert guest.wait(30) == 0, guest.output()
    assert tone_strength(decode_mono(returned), 440) > 0.5


def test_dumped_audio_never_reaches_listeners(
    server: Server, speakers: Callable[..., Proc], tmp_path: Path
) -> None:
    space = server.create_space("Delayed")
    server.call("PUT", f"/api/spaces/{space.id}/delay", space.host_token, {"seconds": 6})
    on_stage(speakers(*space.host_bot_args(), "--tone", "440"))
    # Wait until the delayed tone reaches listeners: from then on the delay line is full of it.
    deadline = time.monotonic() + 40
    while (
        tone_strength(
            decode_mono(listen_with_ffmpeg(space.playlist_url, tmp_path / "fill.wav", 1)), 440
        )
        < 0.5
    ):
        assert time.monotonic() < deadline, "the delayed tone never reached listeners"
    server.call("POST", f"/api/spaces/{space.id}/dump", space.host_token)
    after_dump = decode_mono(listen_with_ffmpeg(space.playlist_url, tmp_path / "after.wav", 2))
    assert rms_dbfs(after_dump) < -60, "dumped audio reached listeners"


def test_ending_a_space_ends_the_stream(server: Server, speakers: Callable[..., Proc]) -> None:
    space = server.create_space("Short")
    bot = speakers(*space.host_bot_args(), "--tone", "440")
    on_stage(bot)
    server.call("POST", f"/api/spaces/{space.id}/end", space.host_token)
    playlist = httpx.get(space.playlist_url.replace("index.m3u8", "media.m3u8"), timeout=10).text
    assert "#EXT-X-ENDLIST" in playlist
    assert bot.wait(30) != 0 or "lost" in bot.output()  # the stage hung up on the bot


def test_a_space_and_its_stage_survive_a_server_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_server(data)
    try:
        space = first.create_space("Persistent")
        guest_token = first.host_identity("Guest speaker")
        link = first.invite(space).split("#invite=")[1]
        first.call("POST", f"/api/spaces/{space.id}/stage/join", guest_token, {"invite": link})
    finally:
        assert first.proc.stop() == 0, first.proc.output()

    second = start_server(data)
    try:
        url = second.url
        view = second.call("GET", f"/api/spaces/{space.id}")
        assert view["space"]["state"] == "live"
        assert sorted(m["role"] for m in view["stage"]) == ["host", "speaker"]
        # The stream is back (a new stream id), and the host's identity still works.
        assert (
            "#EXT-X-PRELOAD-HINT" in httpx.get(f"{url}/live/{space.id}/media.m3u8", timeout=10).text
        )
        assert second.call("GET", f"/api/spaces/{space.id}/me", space.host_token)["role"] == "host"
    finally:
        assert second.proc.stop() == 0, second.proc.output()
