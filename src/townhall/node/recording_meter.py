"""What a recording writes, paid from its host's storage budget while it records.

A recorded Space's first hour is paid when it is created (`api.control_routes`, see
`ratelimit.storage`); past that, the media node running it charges the host for what the
recorder has written, a chunk at a time (`CHARGE_BYTES`, so the shared store sees a write every
few minutes per recording, not per part). When the host's budget cannot pay, the recording stops
— with the error the host sees on the recording's page — and the live stream goes on, as for a
full disk. Only the host is charged here: the media node knows who hosts a Space, not the
address it was created from (that address paid the first hour).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from townhall.ratelimit.storage import StorageQuota
from townhall.ratelimit.table import QuotaExceeded, TokenStore

# About two minutes of recording at the default bitrate: the charges' granularity.
CHARGE_BYTES = 1_000_000


def quota_used_up() -> OSError:
    """The error a recording stops with when its host's budget is used up (errno: quota)."""
    return OSError(errno.EDQUOT, "the host's storage quota is used up")


@dataclass
class RecordingMeter:
    """One recording's account: what it wrote and what its host has paid for so far."""

    host_id: str
    paid: int  # bytes paid for: the reserve at creation, then each charge

    async def settle(
        self, store: TokenStore, quota: StorageQuota, written: int, now: float
    ) -> bool:
        """Charge the host for what was written past what is paid, once it is a chunk's worth.
        False when the budget could not pay: the recording must stop."""
        due = written - self.paid
        if due < CHARGE_BYTES:
            return True
        try:
            await quota.charge(store, identity=self.host_id, address=None, size=due, now=now)
        except QuotaExceeded:
            return False
        self.paid += due
        return True
