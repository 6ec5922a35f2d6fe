"""A speaker bot publishes over WebRTC; ffmpeg, a player we did not write, listens over LL-HLS."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.audio_analysis import decode_mono, rms_dbfs, tone_strength
from tests.conftest import Proc, Server
from townhall.harness import wait_connected

pytestmark = pytest.mark.e2e


def wait_for_fresh_segment(playlist_url: str) -> None:
    """Block (with the playlist's own blocking reload) until a segment that starts after this call
    is complete, so a listener starting at the last segment hears only what came after it."""
    media_url = playlist_url.replace("index.m3u8", "media.m3u8")
    with httpx.Client(timeout=15) as http:
        text = http.get(media_url).text
        sequence = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))  # type: ignore[union-attr]
        producing = sequence + text.count("#EXTINF")  # the segment being produced now
        response = http.get(media_url, params={"_HLS_msn": producing + 1})  # the next one, complete
        assert response.status_code == 200, response.text


def listen_with_ffmpeg(playlist_url: str, out: Path, seconds: float) -> Path:
    """Record `seconds` of the live stream as ffmpeg sees it, from the last complete segment on."""
    wait_for_fresh_segment(playlist_url)
    result = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-live_start_index",
            "-1",
            "-i",
            playlist_url,
            "-t",
            str(seconds),
            "-ac",
            "1",
            "-ar",
            "48000",
            "-y",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    )
    assert result.returncode == 0, f"ffmpeg failed: {result.stderr}"
    return out


def on_stage(proc: Proc) -> None:
    wait_connected(proc, 30)


def test_a_listener_hears_the_speakers_tone(
    server: Server, speakers: Callable[..., Proc], tmp_path: Path
) -> None:
    space = server.create_space("Tone check")
    on_stage(speakers(*space.host_bot_args(), "--tone", "440"))

    audio = decode_mono(listen_with_ffmpeg(space.playlist_url, tmp_path / "heard.wav", 4))

    assert len(audio) >= 3.5 * 48_000
    assert rms_dbfs(audio) > -30, "the listener got (near) silence"
    assert tone_strength(audio, 440) > 0.5


def test_two_speakers_are_both_heard_and_each_hears_only_the_other(
    server: Server, speakers: Callable[..., Proc], tmp_path: Path
) -> None:
    space = server.create_space("Two on stage")
    guest_url = server.invite(space)
    returned = tmp_path / "a-hears.wav"
    a = speakers(
        *space.host_bot_args(),
        "--tone",
        "440",
        "--duration",
        "12",
        "--record-return",
        str(returned),
    )
    b = speakers(guest_url, "--tone", "660")
    on_stage(a)
    on_stage(b)

    audio = decode_mono(listen_with_ffmpeg(space.playlist_url, tmp_path / "heard.wav", 4))
    assert tone_strength(audio, 440) > 0.2
    assert tone_strength(audio, 660) > 0.2

    assert a.wait(30) == 0, a.output()
    back = decode_mono(returned)
    back = back[len(back) // 3 :]  # skip the moments before B was connected
    assert rms_dbfs(back) > -35, "speaker A heard nothing back"
    assert tone_strength(back, 660) > 0.5
    assert tone_strength(back, 440) < 0.01, "speaker A hears themselves in their return mix"


def _part_lags(server: Server, space_id: str, count: int) -> list[float]:
    """Follow the live edge part by part with blocking reloads; for each new part, how far its media
    time lags the moment it became available (constant when the stream has no gap)."""
    import time
    from datetime import datetime

    base = f"{server.url}/live/{space_id}/media.m3u8"
    lags: list[float] = []
    with httpx.Client(timeout=10) as http:
        text = http.get(base).text
        for _ in range(count):
            hint = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="[^"]*/s(\d+)\.m4s"', text)
            assert hint, text
            msn = hint.group(1)
            open_segment = re.findall(rf'#EXT-X-PART:[^\n]*URI="[^"]*/s{msn}\.m4s"', text)
            part = len(open_segment)  # the hinted part follows the open segment's listed ones
            text = http.get(base, params={"_HLS_msn": msn, "_HLS_part": part}).text
            arrived = time.time()
            pdt = re.findall(r"#EXT-X-PROGRAM-DATE-TIME:(\S+)", text)[0]
            media_time = datetime.fromisoformat(pdt.replace("Z", "+00:00")).timestamp()
            durations = [float(d) for d in re.findall(r"#EXT-X-PART:DURATION=([\d.]+)", text)]
            segments = [float(d) for d in re.findall(r"#EXTINF:([\d.]+),", text)]
            # Media end = PDT of the first listed segment + all listed segment durations + open parts.
            open_parts = text.rsplit("#EXTINF", 1)[-1]
            open_durations = [
                float(d) for d in re.findall(r"#EXT-X-PART:DURATION=([\d.]+)", open_parts)
            ]
            media_end = media_time + sum(segments) + sum(open_durations)
            assert durations
            lags.append(arrived - media_end)
    return lags


def test_a_speaker_who_vanishes_leaves_no_gap_for_listeners(
    server: Server, speakers: Callable[..., Proc], tmp_path: Path
) -> None:
    space = server.create_space("Crash test")
    doomed = speakers(*space.host_bot_args(), "--tone", "440")
    on_stage(doomed)
    before = _part_lags(server, space.id, 6)
    doomed.kill()  # SIGKILL: no goodbye, the connection just goes silent
    after = _part_lags(server, space.id, 12)
    lags = before + after
    part = 0.32
    assert max(lags) - min(lags) < part, f"the stream stalled: part lags {lags}"

    # The same speaker comes back with the same link, and the stage carries them again.
    back = speakers(*space.host_bot_args(), "--tone", "550")
    on_stage(back)
    audio = decode_mono(listen_with_ffmpeg(space.playlist_url, tmp_path / "back.wav", 3))
    assert tone_strength(audio, 550) > 0.5
