"""Storage budgets: a clip or a recording is paid by both its identity and its address, or by
neither; they refill over the retention period."""

from __future__ import annotations

import pytest

from townhall.ratelimit.storage import (
    DAY_S,
    NO_STORAGE_QUOTA,
    StorageQuota,
    clip_cost,
    recording_cost,
)
from townhall.ratelimit.table import QuotaExceeded
from townhall.state.embedded_live import EmbeddedLiveState

T0 = 1_800_000_000.0
MB = 1_000_000


async def test_a_charge_the_address_refuses_is_given_back_to_the_identity() -> None:
    store = EmbeddedLiveState()
    quota = StorageQuota.from_config(identity_mb=10, address_mb=15, retention_days=30)
    await quota.charge(store, identity="alice", address="198.51.100.7", size=8 * MB, now=T0)
    with pytest.raises(QuotaExceeded) as refused:  # a fresh name from the same address
        await quota.charge(store, identity="bob", address="198.51.100.7", size=8 * MB, now=T0)
    assert refused.value.code == "quota_exceeded"
    assert "your address's" in str(refused.value)
    assert "15 MB" in str(refused.value)
    # Bob paid nothing for the refusal: elsewhere he still has his whole 10 MB.
    await quota.charge(store, identity="bob", address="203.0.113.9", size=10 * MB, now=T0)


async def test_an_identity_over_its_budget_is_refused_whatever_its_address() -> None:
    store = EmbeddedLiveState()
    quota = StorageQuota.from_config(identity_mb=10, address_mb=0, retention_days=30)
    await quota.charge(store, identity="alice", address="198.51.100.7", size=9 * MB, now=T0)
    with pytest.raises(QuotaExceeded) as refused:
        await quota.charge(store, identity="alice", address="203.0.113.9", size=2 * MB, now=T0)
    # A budget refills evenly over the retention period: 10 MB a month is 1 MB in 3 days.
    assert refused.value.wait == pytest.approx(3 * DAY_S)
    await quota.charge(store, identity="alice", address=None, size=2 * MB, now=T0 + 3 * DAY_S)


async def test_recordings_kept_forever_refill_over_thirty_days_and_zero_is_no_quota() -> None:
    quota = StorageQuota.from_config(identity_mb=30, address_mb=0, retention_days=0)
    assert quota.per_identity is not None
    assert quota.per_address is None
    assert quota.per_identity.per_second == pytest.approx(30 * MB / (30 * DAY_S))
    store = EmbeddedLiveState()
    await NO_STORAGE_QUOTA.charge(store, identity="a", address="b", size=10**12, now=T0)


def test_costs_follow_the_bitrate() -> None:
    assert 240_000 < clip_cost(30, 64_000) < 300_000  # 30 s at 8 KB/s, and the container
    assert 28 * MB < recording_cost(3600, 64_000) < 33 * MB
