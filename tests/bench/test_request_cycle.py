"""bench.request_cycle serves every request it times through the protocol's front, taken from its
bytes or parsed (it raises when a request reaches the app or a segment is not served)."""

from __future__ import annotations

import pytest
from bench.request_cycle import measure


@pytest.mark.parametrize("pieces", [1, 2])
async def test_every_timed_request_is_served_by_the_front(pieces: int) -> None:
    figures = await measure(connections=20, rounds=2, pieces=pieces)
    assert figures["request_us"] > 0
    assert figures["listener_segment_us"] > figures["request_us"]
