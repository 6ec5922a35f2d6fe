"""Fixtures the end-to-end tests share: a browser, and the shipped edges."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.audio_analysis import tone_wav
from tests.conftest import Server
from townhall.harness import CHROMIUM, EDGE_KINDS, Edge, EdgeKind, start_edge

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


@pytest.fixture(params=EDGE_KINDS)
def edge_kind(request: pytest.FixtureRequest) -> EdgeKind:
    """Each edge test runs once per shipped edge (nginx, Varnish): both must keep its promise."""
    kind: EdgeKind = request.param
    return kind


@pytest.fixture
def edge(server: Server, edge_kind: EdgeKind, tmp_path: Path) -> Iterator[Edge]:
    """The shipped edge in front of the test's `server`, stopped before it."""
    started = start_edge(server.url, tmp_path / "edge", kind=edge_kind)
    yield started
    started.proc.stop()
