from __future__ import annotations

from townhall.ratelimit.bucket import RateLimit, RateLimiter, retry_after


def test_a_burst_is_allowed_then_callers_wait_for_refill() -> None:
    limiter = RateLimiter(RateLimit(per_second=1.0, burst=3))
    assert [limiter.check("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.check("a", 0.0) > 0.9
    assert limiter.check("a", 1.0) == 0.0


def test_callers_are_limited_independently() -> None:
    limiter = RateLimiter(RateLimit(per_second=1.0, burst=1))
    assert limiter.check("a", 0.0) == 0.0
    assert limiter.check("b", 0.0) == 0.0
    assert limiter.check("a", 0.0) > 0


def test_memory_stays_bounded_under_a_flood_of_new_callers() -> None:
    limiter = RateLimiter(RateLimit(per_second=1.0, burst=1), max_callers=100)
    for i in range(10_000):
        limiter.check(f"10.0.{i // 256}.{i % 256}", float(i))
    assert len(limiter) == 100


def test_retry_after_is_a_whole_number_of_seconds_at_least_one() -> None:
    assert retry_after(0.01) == "1"
    assert retry_after(2.2) == "3"


def test_a_caller_whose_clock_is_behind_neither_gains_nor_loses_tokens() -> None:
    limiter = RateLimiter(RateLimit(per_second=1.0, burst=2))
    assert limiter.check("a", 10.0) == 0.0
    assert limiter.check("a", 9.5) == 0.0  # another process, half a second behind
    assert limiter.check("a", 9.5) == 1.0  # nothing refilled by going back in time


def test_a_costly_take_waits_until_the_whole_cost_has_refilled_and_takes_nothing_meanwhile() -> (
    None
):
    limiter = RateLimiter(RateLimit(per_second=100.0, burst=1000))  # bytes, as a storage budget
    assert limiter.check("a", 0.0, cost=900) == 0.0
    assert limiter.check("a", 0.0, cost=300) == 2.0  # 100 left, 200 more at 100/s
    assert limiter.check("a", 0.0, cost=100) == 0.0  # the refused take took nothing
    assert limiter.check("a", 3.0, cost=300) == 0.0


def test_a_refund_gives_tokens_back_but_never_past_the_burst() -> None:
    limiter = RateLimiter(RateLimit(per_second=1.0, burst=1000))
    assert limiter.check("a", 0.0, cost=1000) == 0.0
    assert limiter.check("a", 0.0, cost=-400) == 0.0
    assert limiter.check("a", 0.0, cost=400) == 0.0
    assert limiter.check("a", 0.0, cost=-5000) == 0.0
    assert limiter.check("a", 0.0, cost=1000) == 0.0
    assert limiter.check("a", 0.0, cost=1) > 0
