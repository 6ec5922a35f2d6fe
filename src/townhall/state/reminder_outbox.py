"""The reminder mail outbox: who asked to be reminded by email, and the mails queued for them.

A notice (the Space went on air, starts in 10 minutes, moved, was called off) is queued as one
row per person who gave an email address (`queue_notice`), inside the transaction of the change
it reports, the way a webhook is (webhook_outbox.py): a command hands the Records write a
`Notice`, and the change and its mails commit together or not at all. The 10-minute warning
has no change to ride on, so a sweep queues it (`queue_soon_notices`), on every node at once.

One reminder per person per Space, whatever the number of nodes or sweeps: (space, user, key)
is unique and every insert skips a row that exists (ON CONFLICT DO NOTHING, on SQLite and
PostgreSQL alike), so the row is the claim; then the mail senders (reminders/sender.py) work
the rows off under leases like every durable queue here (leased_queue.py), so two processes
never send one row. A sender that dies between the SMTP server's acceptance and marking the row
sent leaves it to be sent again when its lease lapses (at least once; the Message-ID is the
row's, so a mail client can tell). A newer change supersedes what is still waiting: a second
edit of the start time, or a cancellation, drops the unsent notices of the first.

The same notice is queued for the browsers of everyone reminded by Web Push, in the same
transaction and superseded the same way (push_outbox.py keeps that queue and its subscriptions).

`ReminderOutbox` is one part of the records (`Records` in records.py inherits it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from townhall.spaces.model import Space, SpaceId, SpaceState, UserId, Visibility
from townhall.state import leased_queue
from townhall.state.database import NO_SYNC, SqlStore, insert_or_skip, rowcount
from townhall.state.push_outbox import queue_push, unwarned_by_push
from townhall.state.reminder_links import reminder_code
from townhall.state.schema import (
    DeliveryStatus,
    NoticeKind,
    ReminderMailRow,
    ReminderPushRow,
    ReminderRow,
    SpaceRow,
)
from townhall.state.wakeup import Work, queued

__all__ = [
    "DEFAULT_MAX_MAIL_ATTEMPTS",
    "Notice",
    "NoticeKind",
    "ReminderMail",
    "ReminderOutbox",
    "queue_notice",
]

DEFAULT_MAX_MAIL_ATTEMPTS: Final = 8
# Notices a newer change makes stale while they wait: a moved start's warning and its news.
_SUPERSEDED = (NoticeKind.CHANGED, NoticeKind.SOON)
_OUTBOXES = (ReminderMailRow, ReminderPushRow)  # what a notice queues: mail, and push


@dataclass(frozen=True)
class Notice:
    """A mail to everyone reminded of a Space, queued by the Records write that makes the change
    (see the module docstring). `extra` joins the Space's fields in the mail's data (e.g. the
    start time before a change)."""

    kind: NoticeKind
    at: float
    extra: Mapping[str, Any] = field(default_factory=dict)

    def key(self, space: Space | SpaceRow) -> str:
        """What makes the notice unique per person: going on air and cancelling happen once;
        each change is news of its own; a warning is per start time (a new time, a new one)."""
        if self.kind is NoticeKind.CHANGED:
            return f"changed:{self.at!r}"
        if self.kind is NoticeKind.SOON:
            return f"soon:{space.scheduled_start!r}"
        return self.kind.value


@dataclass(frozen=True)
class ReminderMail:
    """One notice for one person, in the durable outbox (sent at least once)."""

    id: int
    space_id: SpaceId
    user_id: UserId
    email: str
    kind: NoticeKind
    data: Mapping[str, Any]  # the Space's title, description, start, state, and the extras
    status: DeliveryStatus
    attempts: int
    created_at: float
    delivered_at: float | None = None
    last_error: str | None = None
    code: str | None = None  # the invite code its link carries, as of the claim (reminder_links)


def _mail(row: ReminderMailRow, code: str | None = None) -> ReminderMail:
    return ReminderMail(
        id=row.id,
        space_id=SpaceId(row.space_id),
        user_id=UserId(row.user_id),
        email=row.email,
        kind=row.kind,
        data=json.loads(row.data),
        status=row.status,
        attempts=row.attempts,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        last_error=row.last_error,
        code=code,
    )


def _data(space: Space | SpaceRow, extra: Mapping[str, Any]) -> str:
    """What a mail says about its Space, as the change left it (plain fields, never the invite
    code: a link gets that when it is sent, see reminder_links.py).
    A Space or its row: the sweep has rows, a command's write the Space it wrote."""
    return json.dumps(
        {
            "id": space.id,
            "title": space.title,
            "description": space.description,
            "state": SpaceState(space.state).value,
            "visibility": Visibility(space.visibility).value,
            "scheduled_start": space.scheduled_start,
            **extra,
        }
    )


async def queue_notice(
    session: AsyncSession, space: Space | SpaceRow, notice: Notice, *, only_soon: bool = False
) -> int:
    """Queue `notice` for everyone reminded of `space` by email, and for the browsers of
    everyone reminded by push (push_outbox.py), in the caller's transaction; with `only_soon`,
    for those who also asked for the 10-minute warning. Returns how many rows are new (a row
    already queued for a person is left as it is)."""
    if notice.kind in (NoticeKind.CHANGED, NoticeKind.CANCELLED):
        for table in _OUTBOXES:
            await session.execute(
                sa.delete(table).where(
                    table.space_id == space.id,
                    table.kind.in_(_SUPERSEDED),
                    table.status == DeliveryStatus.PENDING,
                    table.lease_token.is_(None),
                ),
                execution_options=NO_SYNC,
            )
    data = _data(space, notice.extra)
    queued(session, Work.MAIL)
    pushed = await queue_push(
        session, space.id, notice.kind, notice.key(space), data, notice.at, only_soon=only_soon
    )
    who = sa.and_(ReminderRow.space_id == space.id, ReminderRow.email.is_not(None))
    if only_soon:
        who = sa.and_(who, ReminderRow.soon.is_(sa.true()))
    columns = ("space_id", "user_id", "email", "kind", "key", "data", "status", "attempts")
    rows = sa.select(
        ReminderRow.space_id,
        ReminderRow.user_id,
        ReminderRow.email,
        sa.literal(notice.kind.value, sa.String),
        sa.literal(notice.key(space), sa.String),
        sa.literal(data, sa.Text),
        sa.literal(DeliveryStatus.PENDING.value, sa.String),
        sa.literal(0, sa.Integer),
        sa.literal(notice.at, sa.Double),
        sa.literal(notice.at, sa.Double),
    ).where(who)
    statement = (
        insert_or_skip(session, ReminderMailRow)
        .from_select([*columns, "created_at", "next_attempt_at"], rows)
        .on_conflict_do_nothing()
    )
    return pushed + rowcount(await session.execute(statement, execution_options=NO_SYNC))


def _unwarned(space: SpaceRow, notice: Notice) -> sa.Select[bool]:
    """Whether someone asked for the warning of `space` (by email or push) and has none queued
    for its start yet."""
    by_mail = sa.exists().where(
        ReminderRow.space_id == space.id,
        ReminderRow.soon.is_(sa.true()),
        ReminderRow.email.is_not(None),
        ~sa.exists().where(
            ReminderMailRow.space_id == space.id,
            ReminderMailRow.user_id == ReminderRow.user_id,
            ReminderMailRow.key == notice.key(space),
        ),
    )
    return sa.select(sa.or_(by_mail, unwarned_by_push(space.id, notice.key(space))))


class ReminderOutbox(SqlStore):
    """Reminders with an email address, and their mail queue, over one engine."""

    max_mail_attempts: int = DEFAULT_MAX_MAIL_ATTEMPTS

    async def queue_soon_notices(self, now: float, lead_s: float, *, limit: int = 100) -> int:
        """Queue the warning for every Space (scheduled or in the green room) that starts within
        `lead_s`, for those who asked for it; how many mails are new. Every node sweeps: the
        unique key keeps each warning to one. Looked for in a read first, so a sweep that finds
        nothing new (nearly all of them) takes no write lock."""
        query = (
            sa.select(SpaceRow)
            .where(
                SpaceRow.state.in_([SpaceState.SCHEDULED, SpaceState.GREEN_ROOM]),
                SpaceRow.scheduled_start > now,
                SpaceRow.scheduled_start <= now + lead_s,
            )
            .order_by(SpaceRow.scheduled_start)
            .limit(limit)
        )
        notice = Notice(NoticeKind.SOON, now)
        async with self._read() as session:
            due = [
                space
                for space in await session.scalars(query)
                if await session.scalar(_unwarned(space, notice))
            ]
        queued = 0
        if due:
            async with self._write.begin() as session:
                for space in due:
                    queued += await queue_notice(session, space, notice, only_soon=True)
        return queued

    async def next_soon_notice_at(self, now: float, lead_s: float) -> float | None:
        """When the next warning falls due: `lead_s` before the earliest start of a Space
        (scheduled or in the green room) that is not yet within `lead_s` of its start; None if
        there is none. One read on the (state, scheduled_start) index."""
        async with self._read() as session:
            start = await session.scalar(
                sa.select(sa.func.min(SpaceRow.scheduled_start)).where(
                    SpaceRow.state.in_([SpaceState.SCHEDULED, SpaceState.GREEN_ROOM]),
                    SpaceRow.scheduled_start > now + lead_s,
                )
            )
        return None if start is None else float(start) - lead_s

    async def claim_due_mail(self, now: float, limit: int, lease_s: float) -> list[ReminderMail]:
        """Lease up to `limit` due mails to this caller for `lease_s` seconds (leased_queue.py)."""
        rows = await leased_queue.claim_due(
            self._read,
            self._write,
            ReminderMailRow,
            lambda token: (
                sa.select(
                    ReminderMailRow,
                    reminder_code(ReminderMailRow.space_id, ReminderMailRow.user_id),
                )
                .where(ReminderMailRow.lease_token == token)
                .order_by(ReminderMailRow.next_attempt_at, ReminderMailRow.id)
            ),
            now=now,
            limit=limit,
            lease_s=lease_s,
            max_attempts=self.max_mail_attempts,
        )
        return [_mail(row, code) for row, code in rows]

    async def next_mail_due(self) -> float | None:
        """When the earliest pending mail can next be claimed (leased_queue.next_due)."""
        return await leased_queue.next_due(self._read, ReminderMailRow)

    async def mark_mail_sent(self, mail_id: int, now: float) -> None:
        await leased_queue.report(
            self._write, ReminderMailRow, mail_id, now, max_attempts=self.max_mail_attempts
        )

    async def mark_mail_failed(
        self, mail_id: int, next_attempt_at: float | None, error: str
    ) -> bool:
        """Retry at `next_attempt_at` or give up (see leased_queue.mark_failed); True: retried."""
        return await leased_queue.report(
            self._write,
            ReminderMailRow,
            mail_id,
            0.0,
            failed=(next_attempt_at, error),
            max_attempts=self.max_mail_attempts,
        )

    async def reminder_mail(
        self, space_id: SpaceId | None = None, *, limit: int = 1_000
    ) -> list[ReminderMail]:
        """The queued and sent mails, oldest first (of one Space, or all): for inspection."""
        query = sa.select(ReminderMailRow).order_by(ReminderMailRow.id).limit(limit)
        if space_id is not None:
            query = query.where(ReminderMailRow.space_id == space_id)
        async with self._read() as session:
            return [_mail(row) for row in await session.scalars(query)]

    async def unsubscribe(self, space_id: SpaceId, user_id: UserId) -> bool:
        """Stop mailing this person about this Space: their reminder goes, and what is still
        waiting for them with it. False if there was nothing to stop (a second click)."""
        async with self._write.begin() as session:
            gone = await session.execute(
                sa.delete(ReminderRow).where(
                    ReminderRow.space_id == space_id, ReminderRow.user_id == user_id
                ),
                execution_options=NO_SYNC,
            )
            for table in _OUTBOXES:
                await session.execute(
                    sa.delete(table).where(
                        table.space_id == space_id,
                        table.user_id == user_id,
                        table.status == DeliveryStatus.PENDING,
                        table.lease_token.is_(None),
                    ),
                    execution_options=NO_SYNC,
                )
            return rowcount(gone) > 0
