"""A recorded Space survives `kill -9` with its recording intact, and its replay plays from the
URL listeners already had once the Space ends."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.audio_analysis import decode_mono, tone_strength
from tests.conftest import Proc, wait_until
from tests.e2e.test_audio_path import on_stage
from townhall.delivery.recording import load_runs
from townhall.harness import start_server

pytestmark = pytest.mark.e2e

PART_S = 15 * 1024 / 48_000  # the default part: 0.32 s
SAMPLE_RATE = 48_000


def decode(source: str | Path, out: Path) -> Path:
    """Decode the whole input (a file or a playlist URL) to mono 48 kHz WAV with ffmpeg."""
    result = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            str(source),
            "-ac",
            "1",
            "-ar",
            str(SAMPLE_RATE),
            "-y",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"ffmpeg failed: {result.stderr}"
    return out


def last_listed_part(media_playlist: str) -> tuple[int, int]:
    """The newest part a live listener could fetch: the last EXT-X-PART of the playlist."""
    segments = re.findall(r'#EXT-X-PART:[^\n]*URI="[^"]*/s(\d+)\.m4s"', media_playlist)
    assert segments, media_playlist
    # A segment's parts are listed from its first, in order: the last one's index is their count.
    return int(segments[-1]), segments.count(segments[-1]) - 1


def test_a_recorded_space_killed_mid_stream_is_intact_up_to_the_kill_and_replays_after_the_end(
    tmp_path: Path, speakers: Callable[..., Proc]
) -> None:
    data = tmp_path / "data"
    first = start_server(data)
    try:
        space = first.create_space("Recorded", record=True)
        on_stage(speakers(*space.host_bot_args(), "--tone", "440"))
        wait_until(  # about six seconds of talk on record before the kill
            lambda: sum(r.duration for r in load_runs(data / "recordings" / space.id)) >= 6,
            30,
            "six seconds to be recorded",
        )
        media_url = f"{first.url}/live/{space.id}/media.m3u8"
        heard = last_listed_part(httpx.get(media_url, timeout=10).text)
        killed_at = time.time()
        first.proc.popen.kill()  # SIGKILL: no drain, no flush, no close
    finally:
        first.proc.kill()

    # What the killed process left: every part a listener could get, up to the part in flight.
    (run,) = load_runs(data / "recordings" / space.id)
    addresses = [(e.msn, e.index) for e in run.entries]
    assert heard in addresses, "a part listeners got is missing from the recording"
    assert addresses == sorted(addresses)
    assert len(set(addresses)) == len(addresses)
    recorded_end = run.entries[-1].pdt + run.entries[-1].duration
    # The part in flight (≤ 1 part) plus the encoder's latency and a scheduling margin.
    assert killed_at - recorded_end < 2 * PART_S + 0.3, (killed_at, recorded_end)
    assert recorded_end < killed_at + 0.3

    second = start_server(data)
    try:
        view = second.call("GET", f"/api/spaces/{space.id}")
        started_at = float(view["space"]["started_at"])
        # Recording starts at Go live (the green room before it is not recorded).
        assert abs(run.entries[0].pdt - started_at) < PART_S + 0.3
        on_air_until_kill = killed_at - started_at
        assert abs(run.duration - on_air_until_kill) < 2 * PART_S + 0.3

        # The first run on its own, as files: init + media is a playable fMP4 of the right length.
        playable = tmp_path / "run1.mp4"
        media = (run.directory / "media.m4s").read_bytes()[: run.entries[-1].end]
        playable.write_bytes((run.directory / "init.mp4").read_bytes() + media)
        audio = decode_mono(decode(playable, tmp_path / "run1.wav"))
        assert abs(len(audio) / SAMPLE_RATE - run.duration) < PART_S
        assert tone_strength(audio[-3 * SAMPLE_RATE :], 440) > 0.5

        # The restarted Space records a second run; the host ends it; the replay spans both.
        wait_until(
            lambda: (
                len(runs := load_runs(data / "recordings" / space.id)) == 2
                and len(runs[1].entries) >= 6
            ),
            20,
            "a second run with two seconds recorded",
        )
        second.call("POST", f"/api/spaces/{space.id}/end", space.host_token)
        runs = load_runs(data / "recordings" / space.id)
        assert runs[0].entries == run.entries  # the first run was not touched by the restart
        playlist = httpx.get(f"{second.url}/live/{space.id}/media.m3u8", timeout=10).text
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in playlist
        assert "#EXT-X-ENDLIST" in playlist
        assert "#EXT-X-PART" not in playlist
        assert playlist.count("#EXT-X-DISCONTINUITY") == 1
        replay_url = f"{second.url}/live/{space.id}/index.m3u8"  # the URL listeners had, new port
        replay = decode_mono(decode(replay_url, tmp_path / "replay.wav"))
        total = sum(r.duration for r in runs)
        assert abs(len(replay) / SAMPLE_RATE - total) < 2 * PART_S, (len(replay), total)
        first_run = replay[: int(run.duration * SAMPLE_RATE)]
        assert tone_strength(first_run[-3 * SAMPLE_RATE :], 440) > 0.5
    finally:
        assert second.proc.stop() == 0, second.proc.output()

    # After another restart the shared link still plays the replay (read back from the recording).
    third = start_server(data)
    try:
        again = httpx.get(f"{third.url}/live/{space.id}/media.m3u8", timeout=10)
        assert again.status_code == 200
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in again.text
        assert again.text.count("#EXTINF") == playlist.count("#EXTINF")
    finally:
        assert third.proc.stop() == 0, third.proc.output()
