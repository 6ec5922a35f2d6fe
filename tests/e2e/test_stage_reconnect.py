"""A speaker bot outlives a crash of its server: it reconnects by itself and is heard again.

Real processes throughout: the server (killed with SIGKILL and started again on the same port and
data directory, as a supervisor would), a `townhall speak` tone bot, ffmpeg as the listener.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.audio_analysis import decode_mono, tone_strength
from tests.conftest import Proc, Server
from tests.e2e.test_audio_path import listen_with_ffmpeg, on_stage
from townhall.harness import wait_until

pytestmark = pytest.mark.e2e

RECONNECT_DEADLINE_S = 30.0  # generous for a busy machine; typically ~4 s (3 s to notice)


def test_a_speaker_bot_reconnects_after_its_server_is_killed_and_is_heard_again(
    server: Server, speakers: Callable[..., Proc], tmp_path: Path
) -> None:
    space = server.create_space("Crash and return")
    bot = speakers(*space.host_bot_args(), "--tone", "440")
    on_stage(bot)

    server.proc.kill()  # SIGKILL: no goodbye to anyone
    killed_at = time.monotonic()
    server.restart()
    wait_until(
        lambda: bot.saw("reconnected") or bot.popen.poll() is not None,
        RECONNECT_DEADLINE_S,
        "the bot to reconnect by itself",
    )
    assert bot.popen.poll() is None, f"the bot gave up:\n{bot.output()}"
    print(f"bot back on stage {time.monotonic() - killed_at:.1f} s after the kill")

    audio = decode_mono(listen_with_ffmpeg(space.playlist_url, tmp_path / "after.wav", 3))
    assert tone_strength(audio, 440) > 0.5, "the bot's tone is not heard after the restart"
    assert bot.popen.poll() is None, f"the bot stopped:\n{bot.output()}"


def test_a_speaker_bot_leaves_when_the_space_ends_instead_of_reconnecting(
    server: Server, speakers: Callable[..., Proc]
) -> None:
    space = server.create_space("Short one")
    bot = speakers(*space.host_bot_args(), "--tone", "440")
    on_stage(bot)

    server.call("POST", f"/api/spaces/{space.id}/end", space.host_token)

    assert bot.wait(30) == 1, bot.output()
    assert bot.saw("410"), bot.output()
