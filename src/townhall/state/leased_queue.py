"""A durable queue worked off by any number of processes under leases: the webhook outbox and the
reminder mail outbox are two of them (webhook_outbox.py, reminder_outbox.py).

A row is pending until it is delivered or given up. A worker claims due rows (`claim`): one
conditional UPDATE stamps them with a lease and a token, atomic on SQLite and PostgreSQL alike;
on PostgreSQL concurrent claimers also skip each other's locked rows instead of queueing behind
them. A claimed row is invisible to every other claimer until its lease runs out, so two
processes never work the same row at once; a worker that dies leaves its rows to come back when
the lease lapses (delivery is at least once). Each claim counts as an attempt; the worker reports
the outcome (`mark_delivered`, `mark_failed`); a row whose last allowed attempt's lease lapsed
without an outcome is given up by the next claim.

Every function works in the caller's transaction on any table with the columns below (`Leased`),
except `claim_due` and `report`, which open their own on a store's session makers: the claim and
the outcome as the reminder outboxes (mail and push) take them.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from townhall.state.database import NO_SYNC, rowcount
from townhall.state.errors import NotFound
from townhall.state.schema import (
    DeliveryStatus,
    ReminderMailRow,
    ReminderPushRow,
    WebhookDeliveryRow,
)
from townhall.state.wakeup import Bell

__all__ = [
    "ERROR_TEXT_MAX",
    "Leased",
    "claim",
    "claim_due",
    "mark_delivered",
    "mark_failed",
    "next_due",
    "report",
    "work_forever",
]

ERROR_TEXT_MAX: Final = 1_000  # a failed row keeps this much of the last error

# The tables with id, status, attempts, next_attempt_at, lease_until, lease_token, delivered_at
# and last_error.
Leased = type[WebhookDeliveryRow] | type[ReminderMailRow] | type[ReminderPushRow]
Sessions = async_sessionmaker[AsyncSession]


async def claim(
    session: AsyncSession, table: Leased, now: float, limit: int, lease_s: float, max_attempts: int
) -> str | None:
    """Lease up to `limit` due rows to this caller for `lease_s` seconds; the token that marks
    them (select them by `lease_token`), or None if none was due."""
    if limit <= 0:
        return None
    pending = table.status == DeliveryStatus.PENDING
    lease_free = sa.or_(table.lease_until.is_(None), table.lease_until <= now)
    await session.execute(
        sa.update(table)
        .where(pending, table.attempts >= max_attempts, table.lease_until <= now)
        .values(
            status=DeliveryStatus.FAILED,
            lease_until=None,
            lease_token=None,
            last_error=sa.func.coalesce(
                table.last_error, "no outcome reported before the lease ran out"
            ),
        ),
        execution_options=NO_SYNC,
    )
    due = [pending, table.next_attempt_at <= now, table.attempts < max_attempts, lease_free]
    ids = list(
        await session.scalars(
            sa.select(table.id)
            .where(*due)
            .order_by(table.next_attempt_at, table.id)
            .limit(limit)
            # PostgreSQL: concurrent claimers pass over each other's rows instead of queueing
            # behind them. The UPDATE below re-checks `due` either way.
            .with_for_update(skip_locked=True)
        )
    )
    if not ids:
        return None
    token = secrets.token_hex(16)
    await session.execute(
        sa.update(table)
        .where(table.id.in_(ids), *due)
        .values(lease_until=now + lease_s, lease_token=token, attempts=table.attempts + 1),
        execution_options=NO_SYNC,
    )
    return token


async def mark_delivered(session: AsyncSession, table: Leased, row_id: int, now: float) -> bool:
    """The row was delivered; False if it was not pending (already delivered or given up)."""
    result = await session.execute(
        sa.update(table)
        .where(table.id == row_id, table.status == DeliveryStatus.PENDING)
        .values(
            status=DeliveryStatus.DELIVERED, delivered_at=now, lease_until=None, lease_token=None
        ),
        execution_options=NO_SYNC,
    )
    return rowcount(result) > 0


async def mark_failed(
    session: AsyncSession,
    table: Leased,
    row_id: int,
    next_attempt_at: float | None,
    error: str,
    max_attempts: int,
) -> bool | None:
    """The attempt failed: retry at `next_attempt_at`, or give up when that is None or the
    attempts are used up. A given-up row stays, status failed, with its last error, for
    inspection. True if it will be retried, False if not, None if there is no such row."""
    row = (
        await session.execute(
            sa.select(table.status, table.attempts, table.next_attempt_at).where(table.id == row_id)
        )
    ).first()
    if row is None:
        return None
    if row.status is not DeliveryStatus.PENDING:
        return False
    retry = next_attempt_at is not None and row.attempts < max_attempts
    await session.execute(
        sa.update(table)
        .where(table.id == row_id)
        .values(
            status=DeliveryStatus.PENDING if retry else DeliveryStatus.FAILED,
            next_attempt_at=next_attempt_at if retry else row.next_attempt_at,
            last_error=error[:ERROR_TEXT_MAX],
            lease_until=None,
            lease_token=None,
        ),
        execution_options=NO_SYNC,
    )
    return retry


async def claim_due(
    read: Sessions,
    write: Sessions,
    table: Leased,
    claimed: Callable[[str], sa.Executable],
    *,
    now: float,
    limit: int,
    lease_s: float,
    max_attempts: int,
) -> Sequence[Any]:
    """Lease up to `limit` due rows (`claim`) and read them with `claimed(token)`. Every process
    asks every second: a read first, so that asking when nothing is due (nearly always) takes no
    write lock."""
    async with read() as session:
        due = await session.scalar(
            sa.select(table.id)
            .where(table.status == DeliveryStatus.PENDING, table.next_attempt_at <= now)
            .limit(1)
        )
    if due is None:
        return []
    async with write.begin() as session:
        token = await claim(session, table, now, limit, lease_s, max_attempts)
        if token is None:
            return []
        rows: Sequence[Any] = (await session.execute(claimed(token))).all()
        return rows


async def report(
    write: Sessions,
    table: Leased,
    row_id: int,
    now: float,
    *,
    failed: tuple[float | None, str] | None = None,
    max_attempts: int,
) -> bool:
    """The outcome of one attempt at a claimed row: delivered, or with `failed` (when to retry,
    None to give up; the error) retried or given up (`mark_failed`). True: delivered or to be
    retried. NotFound when the row is gone."""
    async with write.begin() as session:
        if failed is None:
            await mark_delivered(session, table, row_id, now)
            return True
        retry = await mark_failed(session, table, row_id, failed[0], failed[1], max_attempts)
        if retry is None:
            raise NotFound(f"no {table.__tablename__} row {row_id}")
        return retry


async def next_due(read: Sessions, table: Leased) -> float | None:
    """When the earliest pending row can next be claimed: its next attempt, or the end of the
    lease another worker holds on it if that is later; None if no row is pending. One read on
    the status index, for a worker deciding how long it may sleep."""
    claimable = sa.case(
        (table.lease_until > table.next_attempt_at, table.lease_until),
        else_=table.next_attempt_at,
    )
    async with read() as session:
        at = await session.scalar(
            sa.select(sa.func.min(claimable)).where(table.status == DeliveryStatus.PENDING)
        )
    return None if at is None else float(at)


SWEEP_S: Final = 10.0  # longest sleep of an idle worker: rows no bell of this process announces
MIN_WAIT_S: Final = 1.0  # shortest, when a row is due but could not be claimed (the old poll)


async def work_forever(
    run_once: Callable[[], Awaitable[int]],
    batch: int | None,
    what: str,
    *,
    bell: Bell,
    due: Callable[[], Awaitable[float | None]],
    clock: Callable[[], float],
    sweep_s: float = SWEEP_S,
) -> None:
    """A worker's loop. A round (`run_once`, which returns how many rows it claimed) at start, at
    once after a full batch (more are waiting; None: no batches), when this process queued work
    (`bell`, state/wakeup.py) and when the earliest pending row falls due (`due`); between them
    asleep, looking at `due` again at least every `sweep_s` for work no bell announced (rows of
    a process that died). An idle worker costs one indexed read per `sweep_s`. No failure ends
    it."""
    rung, at = True, None
    while True:
        wait = sweep_s
        try:
            if not rung and (at is None or at > clock()):  # the safety sweep's wake
                at = await due()
            if rung or (at is not None and at <= clock()):
                if await run_once() == batch:
                    continue
                at = await due()
            if at is not None:
                wait = min(sweep_s, max(MIN_WAIT_S, at - clock()))
        except Exception:  # the worker must outlive any one failure
            logging.getLogger(__name__).exception("%s round failed", what)
        rung = await bell.wait(wait)
