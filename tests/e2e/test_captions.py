"""Live captions as a listener receives them: a speaker bot says known sentences (espeak-ng), the
listener fetches the subtitle rendition over HTTP, and the words are there, in order; with a
broadcast delay, speech dumped from the delay line is never captioned."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.audio_analysis import decode_mono
from tests.conftest import Proc, Server
from tests.e2e.test_audio_path import listen_with_ffmpeg
from townhall.captions.model import default_model
from townhall.captions.vtt import parse
from townhall.harness import HostedSpace, wait_connected, wait_until

needs_captions = [
    pytest.mark.skipif(default_model() is None, reason="the captions extra is not installed"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"),
]
pytestmark = [pytest.mark.e2e, *needs_captions]


def speech(tmp_path: Path, name: str, text: str) -> Path:
    """A sentence spoken by espeak-ng, with a second of silence after it (a pause to cut on)."""
    raw, out = tmp_path / f"{name}-raw.wav", tmp_path / f"{name}.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(raw), text], check=True, timeout=30)
    ffmpeg("-i", str(raw), "-af", "apad=pad_dur=1", "-ar", "48000", "-ac", "1", str(out))
    return out


def ffmpeg(*args: str) -> None:
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args]
    subprocess.run(command, check=True, timeout=30)


class CaptionListener:
    """What a player does with the subtitle rendition: read the multivariant playlist, reload the
    subtitle playlist, fetch each new segment once; collects the cues by start time."""

    def __init__(self, space: HostedSpace) -> None:
        self.http = httpx.Client(timeout=20)
        master = self.http.get(space.playlist_url)
        assert master.status_code == 200
        media = re.search(r'#EXT-X-MEDIA:TYPE=SUBTITLES,[^\n]*URI="([^"]+)"', master.text)
        assert media is not None, f"no subtitle rendition in:\n{master.text}"
        self.playlist_url = str(httpx.URL(space.playlist_url).join(media.group(1)))
        self.fetched: set[str] = set()
        self.cues: dict[tuple[float, str], str] = {}

    def poll(self) -> str:
        """One reload; returns the transcript so far (cues in time order, lower case)."""
        playlist = self.http.get(self.playlist_url)
        assert playlist.status_code == 200, playlist.text
        for uri in re.findall(r"^(?!#)(\S+)$", playlist.text, re.MULTILINE):
            if uri in self.fetched:
                continue
            segment = self.http.get(str(httpx.URL(self.playlist_url).join(uri)))
            assert segment.status_code == 200, segment.text
            assert segment.headers["content-type"].startswith("text/vtt")
            assert segment.text.startswith("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:")
            self.fetched.add(uri)
            for cue in parse(segment.text)[1]:
                self.cues[(cue.start, cue.text)] = cue.text
        return self.transcript()

    def transcript(self) -> str:
        text = " ".join(self.cues[key] for key in sorted(self.cues))
        return re.sub(r"[^a-z ]", "", text.lower())

    def close(self) -> None:
        self.http.close()


def transcriber_ready(server: Server) -> None:
    """The model loads when the first captioned Space opens (seconds on a busy machine); speech
    before that would wait in the bounded backlog, and the oldest of it could be dropped."""
    wait_until(lambda: server.proc.saw("transcriber ready"), 120, "the transcriber to load")


def wait_for_words(listener: CaptionListener, words: list[str], server: Server) -> None:
    """Until the listener has read `words` in order; on a timeout, say what it read instead."""
    try:
        wait_until(lambda: in_order(words, listener.poll()), 90, "the words", interval=0.5)
    except TimeoutError:
        raise AssertionError(
            f"captions read: {listener.transcript()!r}\n{server.proc.output()[-3000:]}"
        ) from None


def in_order(words: list[str], transcript: str) -> bool:
    at = 0
    for word in words:
        found = transcript.find(word, at)
        if found < 0:
            return False
        at = found + len(word)
    return True


def test_a_listener_reads_what_the_speaker_says_in_order(
    server: Server, speakers: Callable[..., Proc], tmp_path: Path
) -> None:
    first = speech(tmp_path, "first", "Good morning everyone, and welcome to our meeting.")
    second = speech(tmp_path, "second", "The secret password is pineapple.")
    both = tmp_path / "both.wav"
    ffmpeg("-i", str(first), "-i", str(second), "-filter_complex", "concat=n=2:v=0:a=1", str(both))
    space = server.create_space("Captioned", captions=True, record=True)
    transcriber_ready(server)
    listener = CaptionListener(space)
    try:
        # Looped: on a loaded machine late frames are dropped and a word may be misheard once.
        wait_connected(speakers(*space.host_bot_args(), "--file", str(both), "--loop"), 60)
        words = ["morning", "everyone", "welcome", "meeting", "password", "pineapple"]
        wait_for_words(listener, words, server)
        # ffmpeg, a player we did not write, still plays the audio of a stream with subtitles.
        heard = decode_mono(listen_with_ffmpeg(space.playlist_url, tmp_path / "heard.wav", 2))
        assert len(heard) >= 1.5 * 48_000, "ffmpeg played no audio"
        # Kept with the recording: the replay has the subtitle rendition, and the download.
        server.call("POST", f"/api/spaces/{space.id}/end", space.host_token)
        replay = CaptionListener(space)  # reads the replay's multivariant playlist now
        try:
            try:
                wait_until(
                    lambda: in_order(words, replay.poll()),
                    30,
                    "the replay's captions",
                    interval=0.5,
                )
            except TimeoutError:
                raise AssertionError(
                    f"{replay.playlist_url}: {replay.http.get(replay.playlist_url).text!r}\n"
                    f"read {replay.transcript()!r}\n{server.proc.output()[-2000:]}"
                ) from None
            wait_until(
                lambda: "#EXT-X-ENDLIST" in replay.http.get(replay.playlist_url).text,
                30,
                "the captions to end with the Space",
                interval=0.5,
            )
        finally:
            replay.close()
        download = httpx.get(space.playlist_url.replace("index.m3u8", "captions.vtt"), timeout=20)
        assert download.status_code == 200
        _, cues = parse(download.text)
        assert 0 <= cues[0].start < 120  # timed from the recording's start, not the media's
        assert in_order(words, " ".join(c.text.lower() for c in cues))
        # A clip of the recording carries the captions of its minute.
        clip = server.call(
            "POST",
            f"/api/spaces/{space.id}/clips",
            space.host_token,
            {"start_s": max(0.0, cues[0].start - 5), "end_s": cues[0].start + 25},
        )
        clip_vtt = httpx.get(clip["url"].replace(".m4a", ".vtt"), timeout=20)
        assert clip_vtt.status_code == 200, clip_vtt.text
        assert "morning" in clip_vtt.text.lower()
    finally:
        listener.close()


def test_speech_dumped_from_the_delay_line_is_never_captioned(
    server: Server, speakers: Callable[..., Proc], tmp_path: Path
) -> None:
    dumped = speech(tmp_path, "dumped", "The secret password is pineapple.")
    kept = speech(tmp_path, "kept", "Thank you all for listening.")
    space = server.create_space("Delayed and captioned", captions=True)
    transcriber_ready(server)
    server.call("PUT", f"/api/spaces/{space.id}/delay", space.host_token, {"seconds": 10})
    listener = CaptionListener(space)
    try:
        # The bot says the sentence (about 3 s) and leaves: all of it is in the 10 s delay line.
        bot = speakers(*space.host_bot_args(), "--file", str(dumped), "--duration", "4")
        wait_connected(bot, 60)
        wait_until(lambda: bot.popen.poll() is not None, 30, "the first bot to leave")
        server.call("POST", f"/api/spaces/{space.id}/dump", space.host_token)
        wait_connected(speakers(*space.host_bot_args(), "--file", str(kept), "--loop"), 60)
        wait_for_words(listener, ["thank", "listening"], server)
        transcript = listener.transcript()
        assert "password" not in transcript, transcript
        assert "pineapple" not in transcript, transcript
    finally:
        listener.close()
