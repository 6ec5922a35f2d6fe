"""GStreamer, a player we did not write, plays a captioned Space's audio the way
docs/architecture.md gives (`playbin3 flags=audio`), while captions flow: decoded, with the
speaker's tone found in it.

GStreamer 1.22's HLS demuxer selects a subtitle rendition whatever its DEFAULT and AUTOSELECT say,
so a pipeline that asks `uridecodebin3` for audio only stops with `not-negotiated` once the first
cue reaches it, on any stream with subtitles (a static ffmpeg-made one too: docs/architecture.md
has the minimal case); asked that way, this test fails within its HEARD_S. `playbin3`
with `flags=audio` deselects the text stream and plays the audio.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.audio_analysis import SAMPLE_RATE, tone_strength, tone_wav
from tests.conftest import Proc, Server
from tests.e2e.test_captions import (
    CaptionListener,
    ffmpeg,
    needs_captions,
    speech,
    transcriber_ready,
    wait_for_words,
)
from townhall.harness import spawn, wait_connected, wait_until

pytestmark = [
    pytest.mark.e2e,
    *needs_captions,
    pytest.mark.skipif(shutil.which("gst-launch-1.0") is None, reason="GStreamer is not installed"),
]

HEARD_S = 24  # several loops of the speech and the tone after it, with their captions
TONE_HZ = 440


def gstreamer_listener(playlist_url: str, raw: Path) -> Proc:
    """playbin3, audio only, decoding to 48 kHz mono 16-bit samples in `raw` (as fast as the
    stream allows: the file sink does not wait for a clock)."""
    sink = (
        "audioconvert ! audioresample ! "
        f"audio/x-raw,format=S16LE,channels=1,rate={SAMPLE_RATE} ! filesink location={raw}"
    )
    return spawn(
        ["gst-launch-1.0", "playbin3", f"uri={playlist_url}", "flags=audio", f"audio-sink={sink}"]
    )


def test_gstreamer_plays_the_audio_of_a_space_whose_captions_flow(
    server: Server, speakers: Callable[..., Proc], tmp_path: Path
) -> None:
    said = speech(tmp_path, "said", "Good morning everyone, and welcome to our meeting.")
    tone = tone_wav(tmp_path / "tone.wav", TONE_HZ, 3)
    both = tmp_path / "both.wav"
    ffmpeg("-i", str(said), "-i", str(tone), "-filter_complex", "concat=n=2:v=0:a=1", str(both))
    space = server.create_space("Captioned for GStreamer", captions=True)
    transcriber_ready(server)
    listener = CaptionListener(space)
    try:
        wait_connected(speakers(*space.host_bot_args(), "--file", str(both), "--loop"), 60)
        wait_for_words(listener, ["morning"], server)  # cues flow before GStreamer starts
    finally:
        listener.close()

    raw = tmp_path / "gstreamer.raw"
    player = gstreamer_listener(space.playlist_url, raw)
    try:
        wait_until(
            lambda: (
                (raw.exists() and raw.stat().st_size >= HEARD_S * SAMPLE_RATE * 2)
                or player.popen.poll() is not None
            ),
            90,
            "GStreamer to play the audio",
        )
    finally:
        player.stop()
    assert raw.exists(), player.output()
    audio = np.fromfile(raw, dtype="<i2").astype(np.float64) / 32768.0
    assert len(audio) >= HEARD_S * SAMPLE_RATE, f"GStreamer stopped early:\n{player.output()}"
    assert "not-negotiated" not in player.output(), player.output()
    # Somewhere in it, a second of the tone (the loop is about 4 s of speech, then 3 s of tone).
    seconds = [audio[i : i + SAMPLE_RATE] for i in range(0, len(audio) - SAMPLE_RATE, SAMPLE_RATE)]
    best = max(tone_strength(second, TONE_HZ) for second in seconds)
    assert best > 0.5, f"no {TONE_HZ} Hz tone in what GStreamer decoded (best {best:.2f})"
