"""The CLI reads start times as people type them, and refuses one it would have to guess."""

from __future__ import annotations

import argparse

import pytest

from townhall.cli import when


def test_a_start_time_is_unix_seconds_or_an_iso_time_with_its_zone() -> None:
    assert when("1796000000") == 1_796_000_000.0
    assert when("2026-12-05T18:00Z") == when("2026-12-05T19:00+01:00") == 1_796_493_600.0


@pytest.mark.parametrize("raw", ["2026-12-05T18:00", "tomorrow", ""])
def test_a_start_time_without_a_zone_or_not_a_time_is_refused(raw: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        when(raw)
