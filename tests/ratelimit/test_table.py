"""The table of named limits: one definition per limit, no two sharing a bucket.

How each limit behaves on both stores, across processes, is in the LiveState contract suite
(tests/state/test_live_contract.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from townhall.ratelimit.table import (
    CLIP,
    CLIP_DAILY_PER_ADDRESS,
    CLIP_DAILY_PER_PERSON,
    LIMITS,
    SIGNIN_PER_ACCOUNT,
    SIGNIN_PER_ADDRESS,
    Limit,
    Limited,
    take,
)
from townhall.state.embedded_live import EmbeddedLiveState

SRC = Path(__file__).resolve().parents[2] / "src" / "townhall"


def test_every_limit_has_its_own_name_and_a_usable_bucket() -> None:
    names = [limit.name for limit in LIMITS]
    assert len(set(names)) == len(names), "two limits would share buckets"
    for limit in LIMITS:
        assert limit.per_second > 0, limit
        assert limit.burst >= 1, limit
        assert limit.message, limit
        assert ":" not in limit.name, "the name ends where the caller begins"


def test_two_limits_never_share_a_bucket_for_the_same_caller() -> None:
    assert SIGNIN_PER_ADDRESS.key("alice") != SIGNIN_PER_ACCOUNT.key("alice")


def test_no_module_keeps_a_rate_limiter_of_its_own() -> None:
    # A per-process limiter is per node: N nodes would allow N times the tries.
    for path in SRC.rglob("*.py"):
        if path.parent.name in ("ratelimit", "state"):
            continue
        assert "RateLimiter(" not in path.read_text(), path


async def test_a_refusal_says_how_long_to_wait_in_whole_seconds() -> None:
    live = EmbeddedLiveState()
    limit = SIGNIN_PER_ACCOUNT
    for _ in range(limit.burst):
        await take(live, limit, "alice", 100.0)
    with pytest.raises(Limited) as refused:
        await take(live, limit, "alice", 100.0)
    assert refused.value.retry_after == str(round(1 / limit.per_second))
    assert str(refused.value) == limit.message
    await live.close()


async def clips_until_refused(limits: tuple[Limit, ...], callers: list[str], day: float) -> int:
    """Clips granted in `day` seconds to whoever asks as fast as `CLIP` lets them, one caller after
    another (a fresh identity each when callers differ), all behind one address."""
    live = EmbeddedLiveState()
    granted, now = 0, 0.0
    try:
        while now < day:
            caller = callers[granted % len(callers)]
            try:
                for limit in limits:
                    await take(
                        live,
                        limit,
                        "198.51.100.7" if limit.name.endswith("address") else caller,
                        now,
                    )
            except Limited:
                now += 1 / CLIP.per_second
                continue
            granted += 1
    finally:
        await live.close()
    return granted


async def test_a_person_makes_a_bounded_number_of_clips_a_day_at_any_pace() -> None:
    day = 86_400.0
    made = await clips_until_refused((CLIP, CLIP_DAILY_PER_PERSON), ["eager"], day)
    assert made <= 2 * CLIP_DAILY_PER_PERSON.burst  # a day's allowance, and the next day's refill


async def test_fresh_identities_behind_one_address_do_not_multiply_clips() -> None:
    day = 86_400.0
    names = [f"guest-{n}" for n in range(1_000)]
    limits = (CLIP, CLIP_DAILY_PER_PERSON, CLIP_DAILY_PER_ADDRESS)
    made = await clips_until_refused(limits, names, day)
    assert made <= 2 * CLIP_DAILY_PER_ADDRESS.burst
