"""What people take away from a recorded Space, through the real server: a listener's clip while it
is live is exactly that range of the recording, and the host's download is the whole of it."""

from __future__ import annotations

import json
import subprocess
import wave
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.audio_analysis import SAMPLE_RATE, decode_mono, rms_dbfs
from tests.conftest import Proc, Server
from tests.delivery.test_export import PART_S, best_lag, chirp
from tests.e2e.test_audio_path import on_stage
from townhall.delivery.export import recorded_seconds
from townhall.delivery.recording import load_runs
from townhall.harness import wait_until

pytestmark = pytest.mark.e2e


def chirp_wav(path: Path, seconds: float) -> Path:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pcm = (chirp(seconds)(t) * 0.3 * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm.tobytes())
    return path


def ffprobe_seconds(path: Path) -> float:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return float(json.loads(result.stdout)["format"]["duration"])


def test_a_live_clip_is_that_range_of_the_recording_and_the_host_downloads_all_of_it(
    server: Server, speakers: Callable[..., Proc], tmp_path: Path
) -> None:
    space = server.create_space("Take-away", record=True)
    sweep = chirp_wav(tmp_path / "sweep.wav", 30)
    on_stage(speakers(*space.host_bot_args(), "--file", str(sweep)))
    wait_until(  # seven seconds of the sweep on record, so the clip's range exists
        lambda: sum(r.duration for r in load_runs(server.data_dir / "recordings" / space.id)) >= 7,
        30,
        "seven seconds to be recorded",
    )

    fan = server.host_identity("Fan")
    clip = server.call("POST", f"/api/spaces/{space.id}/clips", fan, {"start_s": 3, "end_s": 6})
    assert clip["seconds"] == pytest.approx(3, abs=0.05)
    server.call("POST", f"/api/spaces/{space.id}/end", space.host_token)

    auth = {"Authorization": f"Bearer {space.host_token}"}
    got = httpx.get(f"{server.url}/api/spaces/{space.id}/recording.m4a", headers=auth, timeout=60)
    assert got.status_code == 200, got.text
    download = tmp_path / "download.m4a"
    download.write_bytes(got.content)
    runs = load_runs(server.data_dir / "recordings" / space.id)
    assert abs(ffprobe_seconds(download) - recorded_seconds(runs)) < PART_S
    whole = decode_mono(download)
    assert rms_dbfs(whole[-3 * SAMPLE_RATE :]) > -30, "the speaker is missing from the download"

    shared = httpx.get(clip["url"], timeout=30)  # no identity: a share link
    assert shared.status_code == 200
    (tmp_path / "clip.m4a").write_bytes(shared.content)
    assert ffprobe_seconds(tmp_path / "clip.m4a") == pytest.approx(3, abs=PART_S)
    heard = decode_mono(tmp_path / "clip.m4a")
    lag = best_lag(heard[2048:], whole) - 2048
    assert abs(lag / SAMPLE_RATE - 3) < 1024 / SAMPLE_RATE, lag / SAMPLE_RATE

    stats = server.call("GET", f"/api/spaces/{space.id}/recording", space.host_token)
    assert stats["runs"] == 1
    assert stats["bytes"] > len(got.content) * 0.9  # the runs, plus the clip
    assert stats["seconds"] == pytest.approx(recorded_seconds(runs), abs=1e-3)
