"""A real listener for bench/latency.py: the product's listener page (its live segment loader) in
headless Chromium, with what it plays tapped frame-accurately and placed on the wall clock.

Nothing in the product changes. `latency_hook.js` (an init script) wraps
`AudioContext.prototype.createMediaElementSource`, so when the page builds its own graph on Play the
same source also feeds an AudioWorklet (`latency_worklet.js`, loaded from a blob: URL; the browser
context bypasses the page's CSP for that, nothing else changes). The worklet reports the context frame of every
burst onset; the page stamps it with `getOutputTimestamp()` (when that frame leaves for the output
device) and with the render time. The browser's clock (timeOrigin + performance.now()) is compared
with Python's `time.time()` by round trips, and onsets are moved onto Python's clock.

Requests to the origin for playlists and media (`/live/…`) are counted from Playwright's request
events: at the origin and at every cache, requests, not bytes, are the cost of a listener.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    async_playwright,
)

from townhall.harness import CHROMIUM

# Playwright already adds --headless, --mute-audio, --no-sandbox, --no-first-run and keeps Chromium
# off the network (--disable-background-networking, --disable-component-update). On top of that: no
# GPU here, and autoplay allowed, as the page's retries call play() from timers, not from a click.
AUTOPLAY = "--autoplay-policy=no-user-gesture-required"
FLAGS = ["--disable-gpu", "--disable-quic", "--disable-sync", AUTOPLAY]
HERE = Path(__file__).parent
# Loud samples closer than this belong to one burst (bursts are 10 ms long, 50 ms apart).
HOLDOFF_S = 0.020
PLAYING_DEADLINE_S = 45.0
CLOCK_ROUND_TRIPS = 7


@dataclass
class Heard:
    """What the page played, on Python's clock, and what it cost the origin."""

    played: list[float] = field(default_factory=list)  # burst onsets leaving for the output
    rendered: list[float] = field(default_factory=list)  # the same onsets as the render thread ran
    requests: list[float] = field(default_factory=list)  # instants of /live/ requests
    other_requests: list[float] = field(default_factory=list)  # the rest (snapshot, API, pages)
    reported_latency: list[float] = field(
        default_factory=list
    )  # the page's player: live edge − playhead
    waiting: list[float] = field(default_factory=list)  # the element ran dry (a stall)
    clock_offset_s: float = 0.0  # browser clock − Python clock
    clock_uncertainty_s: float = 0.0  # half the best round trip
    audio: dict[str, Any] = field(default_factory=dict)  # sample rate, base/output latency
    errors: list[str] = field(default_factory=list)


class ChromiumListener:
    """One listener: opens the Space's page, presses Play as a user would, and records what it hears."""

    def __init__(self, listen_url: str, threshold: float) -> None:
        self.listen_url = listen_url
        self.threshold = threshold
        self.heard = Heard()
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._page: Page | None = None

    async def start(self) -> None:
        """Launch Chromium, open the page, press Play; return once playback advances."""
        self._playwright = await async_playwright().start()
        self._browser = await self._playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=FLAGS
        )
        # bypass_csp: the worklet module comes from a blob: URL, which the page's CSP (script-src
        # 'self') refuses, and Playwright's routes do not see worklet fetches. Nothing else the page
        # does depends on its CSP.
        context = await self._browser.new_context(bypass_csp=True)
        page = self._page = await context.new_page()
        config = {
            "workletSource": (HERE / "latency_worklet.js").read_text(),
            "threshold": self.threshold,
            "holdoffS": HOLDOFF_S,
        }
        hook = (HERE / "latency_hook.js").read_text().replace("__CONFIG__", json.dumps(config))
        await page.add_init_script(hook)
        page.on("request", self._on_request)
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.heard.errors.append(f"uncaught: {exc}"))
        await page.goto(self.listen_url)
        await page.locator("#play").click()  # waits until the page enables it
        await self._poll(
            "() => window.townhall.state === 'playing' && window.townhall.currentTime() > 0",
            PLAYING_DEADLINE_S,
            "the listener page to play",
        )

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.heard.errors.append(message.text)

    def _on_request(self, request: Request) -> None:
        live = urlsplit(request.url).path.startswith("/live/")
        (self.heard.requests if live else self.heard.other_requests).append(time.time())

    async def _poll(self, predicate: str, deadline_s: float, what: str) -> None:
        assert self._page is not None
        deadline = time.monotonic() + deadline_s
        while not await self._page.evaluate(predicate):
            if time.monotonic() > deadline:
                state = await self._page.evaluate("() => window.townhall.state")
                raise TimeoutError(f"{what}: not within {deadline_s} s (state {state!r})")
            await self._page.wait_for_timeout(100)  # poll interval; the deadline bounds the wait

    async def listen(self, until: float) -> None:
        """Keep playing until the monotonic deadline, sampling the player's own latency estimate."""
        assert self._page is not None
        while time.monotonic() < until:
            value = await self._page.evaluate("() => window.townhall.latency()")
            if value is not None:
                self.heard.reported_latency.append(float(value))
            await self._page.wait_for_timeout(min(1000, max(0, (until - time.monotonic()) * 1000)))

    async def stop(self) -> Heard:
        """Read back what was heard (on Python's clock) and close the browser."""
        try:
            if self._page is not None:
                await self._read_back(self._page)
        finally:
            await self.close()
        return self.heard

    async def close(self) -> None:
        """Close the browser (again: harmless)."""
        browser, playwright = self._browser, self._playwright
        self._page = self._browser = self._playwright = None
        if browser is not None:
            await browser.close()
        if playwright is not None:
            await playwright.stop()

    async def _read_back(self, page: Page) -> None:
        offset, uncertainty = await clock_offset(page)
        state = await page.evaluate(
            """() => {
                const s = window.__latency, c = s.context;
                return {onsets: s.onsets, errors: s.errors, waiting: s.waiting, audio: c ? {
                    sampleRate: c.sampleRate, baseLatency: c.baseLatency,
                    outputLatency: c.outputLatency, state: c.state} : null};
            }"""
        )
        heard = self.heard
        heard.clock_offset_s, heard.clock_uncertainty_s = offset, uncertainty
        heard.played = [o["played"] / 1000 - offset for o in state["onsets"]]
        heard.rendered = [o["rendered"] / 1000 - offset for o in state["onsets"]]
        heard.audio = state["audio"] or {}
        heard.waiting = [t / 1000 - offset for t in state["waiting"]]
        heard.errors.extend(state["errors"])


async def clock_offset(page: Page) -> tuple[float, float]:
    """Browser wall clock − Python's, from the round trip with the smallest uncertainty."""
    best = (0.0, float("inf"))
    for _ in range(CLOCK_ROUND_TRIPS):
        before = time.time()
        browser_ms = await page.evaluate("() => performance.timeOrigin + performance.now()")
        after = time.time()
        if (after - before) / 2 < best[1]:
            best = (browser_ms / 1000 - (before + after) / 2, (after - before) / 2)
    return best


def requests_per_second(requests: list[float], start: float, end: float) -> float | None:
    """Rate of requests within [start, end] (the steady listening window)."""
    if end <= start:
        return None
    return sum(start <= t <= end for t in requests) / (end - start)


__all__ = ["CHROMIUM", "ChromiumListener", "Heard", "requests_per_second"]
