"""Fixtures the browser tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.audio_analysis import tone_wav
from townhall.harness import CHROMIUM

FAKE_MIC_HZ = 440.0


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    """Chromium whose fake microphone plays a 440 Hz tone (tests that need other browsers define
    a `browser` fixture of their own)."""
    from tests.e2e.test_browser import FLAGS  # the flags that work headless as root

    # 20 s of 440 Hz is a whole number of cycles, so Chromium's looping of the file is seamless.
    tone = tone_wav(tmp_path / "tone-440.wav", FAKE_MIC_HZ, 20.0, amplitude=0.5)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[*FLAGS, f"--use-file-for-fake-audio-capture={tone}"],
        )
        try:
            yield chromium
        finally:
            chromium.close()
