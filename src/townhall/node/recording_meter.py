"""What a recording writes, paid from its host's and its address's storage budgets as it records.

A recorded Space's first hour is paid when it is created (`api.control_routes`, see
`ratelimit.storage`), and that deposit opens the recording's account in the records, with the
address the Space was created from (`state.recording_accounts`). Past that, the media node
running it charges what the recorder has written beyond what the account has paid, a chunk at a
time (`CHARGE_BYTES`, so the records and the shared store see a write every few minutes per
recording, not per part), to the Space's host and to that address: fresh guest names from one
address share that address's budget. When either budget cannot pay, the recording stops — with
the error the host sees on the recording's page — and the live stream goes on, as for a full
disk.

The account, not the node, knows what was paid: a node that takes a recording over (after a
crash, a drain, a restart or a lapsed lease) counts what earlier runs left on storage
(`written_before`) and charges on from the account, so the first hour is paid once per
recording, not once per node that records it.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Protocol

from townhall.ratelimit.storage import StorageQuota
from townhall.ratelimit.table import QuotaExceeded, TokenStore
from townhall.spaces.model import SpaceId
from townhall.state.recording_accounts import RecordingAccount

# About two minutes of recording at the default bitrate: the charges' granularity.
CHARGE_BYTES = 1_000_000


class Accounts(Protocol):
    """What the meter needs of the records (`state.recording_accounts.RecordingAccountStore`)."""

    async def recording_account(
        self, space_id: SpaceId, *, opened_with: int
    ) -> RecordingAccount | None: ...

    async def add_recording_paid(self, space_id: SpaceId, size: int) -> int: ...


def quota_used_up(refused: QuotaExceeded, quota: StorageQuota) -> OSError:
    """The error a recording stops with when a budget paying for it is used up (errno: quota),
    naming which: the host's, or the address's the Space was created from."""
    whose = (
        "the host's storage quota"
        if refused.limit == quota.per_identity
        else "the storage quota of the address this Space was created from"
    )
    return OSError(errno.EDQUOT, f"{whose} is used up")


@dataclass
class RecordingMeter:
    """One recording's meter on the node recording it now."""

    space_id: SpaceId
    written_before: int  # bytes earlier runs (other nodes, earlier starts) left on storage
    paid: int  # bytes paid for, as far as this node has seen of the account

    def written(self, written_here: int) -> int:
        return self.written_before + written_here

    async def settle(
        self,
        accounts: Accounts,
        store: TokenStore,
        quota: StorageQuota,
        written_here: int,
        now: float,
    ) -> None:
        """Charge the payers for what was written past what the account has paid, once it is a
        chunk's worth; raise `QuotaExceeded` when a budget cannot pay (the recording must
        stop). Reads the account only when a charge may be due."""
        written = self.written(written_here)
        if written - self.paid < CHARGE_BYTES:
            return
        account = await accounts.recording_account(self.space_id, opened_with=self.paid)
        if account is None:  # the Space is gone: nothing to charge
            return
        self.paid = account.paid  # another node may have charged meanwhile
        due = written - account.paid
        if due < CHARGE_BYTES:
            return
        await quota.charge(
            store, identity=account.host_id, address=account.address, size=due, now=now
        )
        try:
            self.paid = await accounts.add_recording_paid(self.space_id, due)
        except Exception:  # not counted as paid: give it back, the next round charges again
            await quota.refund(
                store, identity=account.host_id, address=account.address, size=due, now=now
            )
            raise
