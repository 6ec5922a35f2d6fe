"""A recording past its first hour is paid a chunk at a time by its host and by the address its
Space was created from, stops when either cannot pay, and pays its first hour once however many
nodes record it (a take-over charges on from the recording's account, not from a free hour)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from townhall.node.recording_meter import CHARGE_BYTES, RecordingMeter, quota_used_up
from townhall.ratelimit.storage import StorageQuota
from townhall.ratelimit.table import QuotaExceeded
from townhall.spaces.model import Role, Space, SpaceId, StageLimits, StageMember, UserId
from townhall.state.embedded_live import EmbeddedLiveState
from townhall.state.recording_accounts import RecordingDeposit
from townhall.state.records import Records, open_records

T0 = 1_800_000_000.0
MB = 1_000_000
RESERVE = 2 * MB  # the first hour, as paid at creation (small here: budgets are in MB)
ADDRESS = "198.51.100.7"


@pytest.fixture
async def records(tmp_path: Path) -> AsyncIterator[Records]:
    opened = await open_records(f"sqlite+aiosqlite:///{tmp_path / 'townhall.db'}")
    yield opened
    await opened.close()


async def recorded(
    records: Records, n: int, host: str = "g-host", address: str | None = ADDRESS
) -> SpaceId:
    """A recorded Space created by `host` from `address`, its first hour paid."""
    space = Space(SpaceId(f"space{n:05d}"), "Recorded", UserId(host), T0, record=True)
    member = StageMember(space.id, UserId(host), Role.HOST, host, T0)
    await records.create_space(space, host=member, deposit=RecordingDeposit(address, RESERVE))
    return space.id


def budgets(identity_mb: int, address_mb: int) -> StorageQuota:
    return StorageQuota.from_config(identity_mb, address_mb, retention_days=30)


async def left(store: EmbeddedLiveState, quota: StorageQuota, who: str, *, address: bool) -> int:
    """What `who`'s budget has left, to the byte: it pays that much, not a byte more (probes
    that give back what they took)."""
    limit = quota.per_address if address else quota.per_identity
    assert limit is not None

    async def pays(size: int) -> bool:
        if await store.take_token(limit.key(who), limit.per_second, limit.burst, T0, size) > 0:
            return False
        await store.take_token(limit.key(who), limit.per_second, limit.burst, T0, -size)
        return True

    low, high = 0, limit.burst  # pays(low), and not pays(high + 1)
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if await pays(mid) else (low, mid - 1)
    return low


async def test_a_recording_is_charged_in_chunks_to_its_host_and_its_address(
    records: Records,
) -> None:
    store, quota = EmbeddedLiveState(), budgets(identity_mb=5, address_mb=50)
    meter = RecordingMeter(await recorded(records, 1), written_before=0, paid=RESERVE)
    await meter.settle(records, store, quota, RESERVE + CHARGE_BYTES - 1, T0)  # not a chunk yet
    assert meter.paid == RESERVE
    await meter.settle(records, store, quota, RESERVE + 1_500_000, T0)
    assert meter.paid == RESERVE + 1_500_000
    assert await left(store, quota, "g-host", address=False) == 5 * MB - 1_500_000
    assert await left(store, quota, ADDRESS, address=True) == 50 * MB - 1_500_000
    await meter.settle(records, store, quota, RESERVE + 5 * MB, T0)  # the host's budget is spent
    with pytest.raises(QuotaExceeded) as refused:  # the recording must stop
        await meter.settle(records, store, quota, RESERVE + 6 * MB, T0)
    assert "the host's storage quota" in str(quota_used_up(refused.value, quota))
    account = await records.recording_account(meter.space_id, opened_with=0)
    assert account is not None
    assert account.paid == RESERVE + 5 * MB


async def test_two_fresh_identities_from_one_address_stop_at_the_address_quota(
    records: Records,
) -> None:
    """Each guest's own budget could pay; their address's cannot pay for both recordings."""
    store, quota = EmbeddedLiveState(), budgets(identity_mb=100, address_mb=5)
    first = RecordingMeter(await recorded(records, 1, "g-first"), 0, RESERVE)
    second = RecordingMeter(await recorded(records, 2, "g-second"), 0, RESERVE)
    await first.settle(records, store, quota, RESERVE + 3 * MB, T0)
    with pytest.raises(QuotaExceeded) as refused:
        await second.settle(records, store, quota, RESERVE + 3 * MB, T0)
    assert refused.value.limit == quota.per_address
    assert "address" in str(quota_used_up(refused.value, quota))
    # Nothing was taken from the second guest (a refused address gives the identity back).
    assert await left(store, quota, "g-second", address=False) == 100 * MB
    # A guest elsewhere records on.
    elsewhere = RecordingMeter(await recorded(records, 3, "g-third", "203.0.113.9"), 0, RESERVE)
    await elsewhere.settle(records, store, quota, RESERVE + 3 * MB, T0)


async def test_a_take_over_charges_on_from_the_account_and_gives_no_second_free_hour(
    records: Records,
) -> None:
    store, quota = EmbeddedLiveState(), budgets(identity_mb=50, address_mb=50)
    space_id = await recorded(records, 1)
    first_node = RecordingMeter(space_id, written_before=0, paid=RESERVE)
    await first_node.settle(records, store, quota, RESERVE + 3 * MB, T0)
    # The node dies after writing a little more than it charged; another takes over, finding
    # what the first one wrote on storage, and starts its own run from zero.
    on_storage = RESERVE + 3 * MB + 400_000
    second_node = RecordingMeter(space_id, written_before=on_storage, paid=RESERVE)
    await second_node.settle(records, store, quota, 2 * MB, T0)
    # Everything past the first hour is paid, once: 3 MB + 0.4 MB + 2 MB.
    charged = 3 * MB + 400_000 + 2 * MB
    assert await left(store, quota, "g-host", address=False) == 50 * MB - charged
    assert await left(store, quota, ADDRESS, address=True) == 50 * MB - charged
    account = await records.recording_account(space_id, opened_with=0)
    assert account is not None
    assert account.paid == RESERVE + charged


async def test_a_new_host_pays_on_from_where_the_old_one_stopped(records: Records) -> None:
    """Handing the host role over hands the recording's bill over, not a fresh first hour."""
    store, quota = EmbeddedLiveState(), budgets(identity_mb=50, address_mb=0)
    space_id = await recorded(records, 1)
    meter = RecordingMeter(space_id, written_before=0, paid=RESERVE)
    await meter.settle(records, store, quota, RESERVE + 2 * MB, T0)
    cohost = StageMember(space_id, UserId("g-cohost"), Role.COHOST, "Co", T0)
    await records.put_stage_member(cohost, StageLimits())
    await records.transfer_host(space_id, UserId("g-host"), cohost.user_id, StageLimits())
    await meter.settle(records, store, quota, RESERVE + 3 * MB, T0)
    assert await left(store, quota, "g-host", address=False) == 48 * MB
    assert await left(store, quota, "g-cohost", address=False) == 49 * MB


async def test_a_space_without_an_account_is_charged_past_its_first_hour_to_its_host(
    records: Records,
) -> None:
    """A recorded Space from before there were accounts: its host pays, no address is known."""
    store, quota = EmbeddedLiveState(), budgets(identity_mb=50, address_mb=50)
    space = Space(SpaceId("space00009"), "Old", UserId("g-host"), T0, record=True)
    await records.create_space(space, host=StageMember(space.id, space.host_id, Role.HOST, "H", T0))
    meter = RecordingMeter(space.id, written_before=0, paid=RESERVE)
    await meter.settle(records, store, quota, RESERVE + 2 * MB, T0)
    assert await left(store, quota, "g-host", address=False) == 48 * MB


async def test_one_host_pays_for_all_their_recordings_from_one_budget(records: Records) -> None:
    store, quota = EmbeddedLiveState(), budgets(identity_mb=3, address_mb=0)
    first = RecordingMeter(await recorded(records, 1), 0, RESERVE)
    second = RecordingMeter(await recorded(records, 2, address="203.0.113.9"), 0, RESERVE)
    await first.settle(records, store, quota, RESERVE + 2 * MB, T0)
    with pytest.raises(QuotaExceeded):
        await second.settle(records, store, quota, RESERVE + 2 * MB, T0)
    other_host = RecordingMeter(await recorded(records, 3, "g-other"), 0, RESERVE)
    await other_host.settle(records, store, quota, RESERVE + 2 * MB, T0)
