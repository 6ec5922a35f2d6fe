"""Waiting on what a page shows or hears, with a deadline (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page

Sample = dict[str, Any]


def poll_page(
    page: Page,
    sample: Callable[[Page], Sample],
    what: str,
    ok: Callable[[Sample], bool],
    deadline_s: float,
) -> list[Sample]:
    """Sample the page until `ok` holds; fail with the last samples if the deadline passes."""
    deadline = time.monotonic() + deadline_s
    samples: list[Sample] = []
    while time.monotonic() < deadline:
        samples.append(sample(page))
        if ok(samples[-1]):
            return samples
        page.wait_for_timeout(200)  # the poll interval; the deadline above bounds the wait
    raise AssertionError(f"{what}: not within {deadline_s} s; last samples {samples[-6:]}")
