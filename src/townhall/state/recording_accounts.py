"""The records' side of recording quotas: what a recorded Space's recording has been paid for,
and from which address.

A recorded Space pays its first hour at creation (api.control_routes), from its host's and their
address's storage budgets (ratelimit.storage); the media node recording it charges the rest as it
grows (node.recording_meter). Both facts that charge needs outlive the node that records:

* the address the Space was created from. The media node sees the stage's connections, not the
  request that created the Space; without it, a recording's growth was charged to the host only,
  and one address with many fresh guest names could fill the disk an hour past each reserve.
* how much has been paid. Kept on a node, a take-over (another node, or this one after a restart
  or a lapsed lease) started counting afresh from the first hour's reserve: every take-over was
  another free hour.

So both live in one row per recorded Space, written with the Space itself (`open_account`, in
`Records.create_space`'s transaction: a recorded Space created through the API never exists
without its account) and read by whichever node records it. The payer is read with it: the Space's host now, so a host
who hands the Space over hands its recording's bill over too, while the address stays the one
that created it. Spaces recorded before the table existed (or created by other means: the
command line, the load generator) get an account when first charged, their first hour counted
as paid and no address known.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from townhall.spaces.model import SpaceId, UserId
from townhall.state.database import NO_SYNC, SqlStore, insert_or_skip
from townhall.state.event_outbox import Transaction
from townhall.state.schema import RecordingAccountRow, SpaceRow

__all__ = ["RecordingAccount", "RecordingAccountStore", "RecordingDeposit", "open_account"]


@dataclass(frozen=True)
class RecordingDeposit:
    """What a recorded Space paid for its recording at creation, and the address that paid."""

    address: str | None  # the per-address key (ratelimit.address.address_key)
    paid: int  # bytes


@dataclass(frozen=True)
class RecordingAccount:
    """Who pays for a recording's next bytes, and what it has been paid for so far."""

    host_id: UserId  # the Space's host now: the identity charged
    address: str | None  # the address it was created from (None: not known), charged too
    paid: int  # bytes paid for so far: the deposit and every later charge


async def open_account(session: Transaction, space_id: SpaceId, deposit: RecordingDeposit) -> None:
    """The recording's account, opened in the transaction that creates the Space."""
    await session.execute(
        sa.insert(RecordingAccountRow).values(
            space_id=space_id, address=deposit.address, paid=deposit.paid
        )
    )


class RecordingAccountStore(SqlStore):
    async def recording_account(
        self, space_id: SpaceId, *, opened_with: int
    ) -> RecordingAccount | None:
        """The recording's account and its payer; None if there is no such Space. A Space
        without an account (recorded before there were accounts) gets one, its first
        `opened_with` bytes paid (as they were at its creation) and no address."""
        async with self._write.begin() as session:
            host_id = await session.scalar(
                sa.select(SpaceRow.host_id).where(SpaceRow.id == space_id)
            )
            if host_id is None:
                return None
            await session.execute(
                insert_or_skip(session, RecordingAccountRow)
                .values(space_id=space_id, address=None, paid=opened_with)
                .on_conflict_do_nothing()
            )
            row = (
                await session.execute(
                    sa.select(RecordingAccountRow.address, RecordingAccountRow.paid).where(
                        RecordingAccountRow.space_id == space_id
                    )
                )
            ).one()
            return RecordingAccount(UserId(host_id), row.address, row.paid)

    async def add_recording_paid(self, space_id: SpaceId, size: int) -> int:
        """Count `size` more bytes of the recording as paid; returns what is paid now (0 if the
        Space has no account). An increment, not a write of the total: two nodes charging at
        once (a take-over's brief overlap) each add what they charged."""
        async with self._write.begin() as session:
            await session.execute(
                sa.update(RecordingAccountRow)
                .where(RecordingAccountRow.space_id == space_id)
                .values(paid=RecordingAccountRow.paid + size),
                execution_options=NO_SYNC,
            )
            paid = await session.scalar(
                sa.select(RecordingAccountRow.paid).where(RecordingAccountRow.space_id == space_id)
            )
            return int(paid or 0)
