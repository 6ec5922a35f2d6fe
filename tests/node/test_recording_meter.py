"""A recording past its first hour is paid by its host a chunk at a time, and stops when the
host's budget cannot pay."""

from __future__ import annotations

from townhall.node.recording_meter import CHARGE_BYTES, RecordingMeter
from townhall.ratelimit.storage import StorageQuota
from townhall.state.embedded_live import EmbeddedLiveState

T0 = 1_800_000_000.0
MB = 1_000_000


async def test_a_recording_is_charged_in_chunks_past_what_was_paid_at_creation() -> None:
    store = EmbeddedLiveState()
    quota = StorageQuota.from_config(identity_mb=5, address_mb=0, retention_days=30)
    meter = RecordingMeter("g-host", paid=2 * MB)  # the reserve paid at creation
    assert await meter.settle(store, quota, 2 * MB + CHARGE_BYTES - 1, T0)  # not a chunk yet
    assert meter.paid == 2 * MB
    assert await meter.settle(store, quota, 3 * MB + 500_000, T0)
    assert meter.paid == 3 * MB + 500_000
    assert await meter.settle(store, quota, 7 * MB, T0)  # 5 MB charged: the budget is spent
    assert not await meter.settle(store, quota, 8 * MB, T0)  # the recording must stop
    assert meter.paid == 7 * MB


async def test_the_same_host_pays_once_for_all_their_recordings() -> None:
    store = EmbeddedLiveState()
    quota = StorageQuota.from_config(identity_mb=3, address_mb=0, retention_days=30)
    first, second = RecordingMeter("g-host", paid=0), RecordingMeter("g-host", paid=0)
    assert await first.settle(store, quota, 2 * MB, T0)
    assert not await second.settle(store, quota, 2 * MB, T0)
    assert await RecordingMeter("g-other", paid=0).settle(store, quota, 2 * MB, T0)
