"""The speaker bot's reconnection rules, without a network: backoff, refusals, a stalled return."""

from __future__ import annotations

import random

import httpx
import pytest

from townhall.client.speaker import (
    MAX_BACKOFF_S,
    SpeakerError,
    StageRefused,
    Stillness,
    _refusal,
    backoff,
)


def test_backoff_grows_exponentially_with_full_jitter_up_to_a_cap() -> None:
    random.seed(7)
    for attempt in range(1, 12):
        ceiling = min(MAX_BACKOFF_S, 0.5 * 2**attempt)
        waits = [backoff(attempt) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert min(waits) < ceiling * 0.1, "full jitter reaches down to (almost) nothing"
        assert max(waits) > ceiling * 0.9


def test_a_retry_after_is_a_floor_spread_above_by_at_most_as_much_again() -> None:
    waits = [backoff(1, "3") for _ in range(200)]
    assert all(3 <= w <= 6 for w in waits)
    assert max(waits) - min(waits) > 1, "a crowd told to wait 3 s does not come back in step"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_answers_that_retrying_cannot_change_are_definite_refusals(status: int) -> None:
    error = _refusal(httpx.Response(status, json={"error": {"code": "x", "message": "no"}}))
    assert isinstance(error, StageRefused)
    assert str(error) == f"{status} x: no"


@pytest.mark.parametrize("status", [409, 429, 500, 502, 503])
def test_busy_or_broken_servers_are_worth_another_try_after_their_retry_after(
    status: int,
) -> None:
    error = _refusal(httpx.Response(status, headers={"Retry-After": "2"}, text="busy"))
    assert type(error) is SpeakerError
    assert error.retry_after == "2"


def test_a_return_that_stands_still_is_noticed_and_one_that_moves_is_not() -> None:
    watch = Stillness(now=100.0)
    assert watch.still_for(0, 100.0) == 0
    assert watch.still_for(50, 101.0) == 0
    assert watch.still_for(100, 102.0) == 0
    assert watch.still_for(100, 104.5) == pytest.approx(2.5)
    assert watch.still_for(101, 105.0) == 0
