"""The records' side of the event outbox: a command's event is committed with its change.

A command (spaces/control.py) hands the Records write a `LogEvent`; the write queues it in its own
transaction (`queue_event`), so the change and its event commit together or not at all. The
command then asks the live side (state/outbox.py) to move the Space's queued events into its log;
if that fails, or the process dies first, any process's sweep moves them later. Either way the
event reaches the log once its change is committed, and never when the change is not.

Order. A Space's events must reach its log in the order their changes committed, or a node
following the log would apply an older mute over a newer unmute. Two things give that order:
- a write that queues an event locks the Space's row before anything else, so on PostgreSQL two
  transactions that queue events for one Space run one after the other and the ids follow the
  commits (SQLite's write lock is database-wide, so there it holds anyway);
- `deliver_events` takes a Space's queued rows in id order with DELETE … RETURNING inside a
  transaction that stays open until they are in the live log. A second deliverer's DELETE waits
  on those rows and finds them gone, so each event is appended once, and after every event
  queued before it.
If appending fails part way, the transaction is rolled back and every row stays queued: what was
appended before the failure is appended again later (at least once). Events carry the state they
set (a member's flags, the Space's state), not a toggle, so a repeat is harmless.

`EventQueue` is one part of the records (`Records` in records.py inherits it).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from townhall.spaces.model import SpaceId
from townhall.state.database import SqlStore
from townhall.state.errors import NotFound
from townhall.state.live import LogEvent
from townhall.state.schema import EventOutboxRow, SpaceRow

__all__ = ["EventQueue", "LogEvent", "QueuedEvent", "lock_space", "order_events", "queue_event"]


@dataclass(frozen=True)
class QueuedEvent:
    space_id: SpaceId
    type: str
    data: Mapping[str, Any]
    at: float


# A write runs in an ORM session or, where a session's work is not needed, on a Core connection.
Transaction = AsyncSession | AsyncConnection


async def lock_space(session: Transaction, space_id: SpaceId) -> None:
    """Lock the Space's row until commit (PostgreSQL); NotFound if there is no such Space."""
    found = await session.scalar(
        sa.select(SpaceRow.id).where(SpaceRow.id == space_id).with_for_update()
    )
    if found is None:
        raise NotFound(f"no Space {space_id}")


async def order_events(session: Transaction, space_id: SpaceId) -> None:
    """For a write whose only reason to lock the Space's row is its event's order: lock it on
    PostgreSQL; on SQLite the database-wide write lock (BEGIN IMMEDIATE) already orders it, and
    the round trip is saved."""
    bind = session.get_bind() if isinstance(session, AsyncSession) else session
    if bind.dialect.name != "sqlite":
        await lock_space(session, space_id)


async def queue_event(session: Transaction, space_id: SpaceId, event: LogEvent | None) -> None:
    """Queue `event` in the change's own transaction (nothing for None).

    The transaction must have locked the Space's row (`lock_space`) before its first write: that
    orders the ids (module docstring), and taking that lock first, always, is what keeps two
    writes on PostgreSQL from each holding a row the other waits for."""
    if event is None:
        return
    await session.execute(
        sa.insert(EventOutboxRow).values(
            space_id=space_id,
            type=event.type,
            data=json.dumps(event.data, separators=(",", ":")),
            at=event.at,
        )
    )


class EventQueue(SqlStore):
    async def log_event(self, space_id: SpaceId, event: LogEvent) -> None:
        """Queue an event that changes no record (a dump of the delay line): ordered with the rest."""
        async with self._write.begin() as session:
            await lock_space(session, space_id)
            await queue_event(session, space_id, event)

    async def deliver_events(
        self, space_id: SpaceId, append: Callable[[QueuedEvent], Awaitable[object]]
    ) -> int:
        """Hand the Space's queued events to `append` in commit order and drop them; the number
        handed. If `append` raises, every one stays queued and its error propagates."""
        # Core rather than a session: this runs after every command, and is half the work.
        async with self._writer.begin() as connection:
            taken = await connection.execute(
                sa.delete(EventOutboxRow)
                .where(EventOutboxRow.space_id == space_id)
                .returning(
                    EventOutboxRow.id, EventOutboxRow.type, EventOutboxRow.data, EventOutboxRow.at
                )
            )
            rows = sorted(taken.all(), key=lambda row: int(row.id))
            for row in rows:
                await append(QueuedEvent(space_id, row.type, json.loads(row.data), row.at))
            return len(rows)

    async def spaces_with_events(self, queued_before: float, *, limit: int = 100) -> list[SpaceId]:
        """Spaces with an event queued before `queued_before`: left by a process that died or
        could not reach the live store (the sweep's work)."""
        query = (
            sa.select(EventOutboxRow.space_id)
            .where(EventOutboxRow.at < queued_before)
            .group_by(EventOutboxRow.space_id)
            .order_by(sa.func.min(EventOutboxRow.id))
            .limit(limit)
        )
        async with self._read() as session:
            return [SpaceId(space_id) for space_id in await session.scalars(query)]

    async def queued_events(self) -> int:
        """Events committed but not yet in a live log (a gauge; about 0 in normal operation)."""
        async with self._read() as session:
            count = await session.scalar(sa.select(sa.func.count()).select_from(EventOutboxRow))
            return int(count or 0)
