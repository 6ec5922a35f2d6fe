"""The push outbox: the browsers that accept Web Push for a person, and the pushes queued for them.

A person subscribes a browser (`add_push_subscription`) and asks for a Space's reminder by push
(`ReminderRow.push`). A notice is queued exactly as the mail is (reminder_outbox.py calls
`queue_push` in the same transaction as the change it reports), as one row per browser of each
person reminded by push; (subscription, space, key) is unique and inserts skip a row that
exists, so however many nodes or sweeps queue a notice, each browser gets it once. The push
senders (reminders/push_sender.py) work the rows off under leases (leased_queue.py), and delete
a subscription its push service says is gone, which takes its rows with it.

A person has at most `max_subscriptions` browsers: subscribing one more forgets the oldest
(a browser whose data was cleared never says goodbye, and refusing would lock its owner out).

`PushOutbox` is one part of the records (`Records` in records.py inherits it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from townhall.spaces.model import SpaceId, UserId
from townhall.state import leased_queue
from townhall.state.database import NO_SYNC, SqlStore, insert_or_skip, rowcount
from townhall.state.reminder_links import reminder_code
from townhall.state.schema import (
    DeliveryStatus,
    NoticeKind,
    PushSubscriptionRow,
    ReminderPushRow,
    ReminderRow,
)
from townhall.state.wakeup import Work, queued

__all__ = [
    "DEFAULT_MAX_PUSH_ATTEMPTS",
    "DEFAULT_MAX_SUBSCRIPTIONS",
    "PushOutbox",
    "PushSubscription",
    "ReminderPush",
    "queue_push",
    "unwarned_by_push",
]

DEFAULT_MAX_PUSH_ATTEMPTS: Final = 8
DEFAULT_MAX_SUBSCRIPTIONS: Final = 10  # browsers per person: phones, laptops, a few profiles


@dataclass(frozen=True)
class PushSubscription:
    id: int
    user_id: UserId
    endpoint: str
    p256dh: str
    auth: str
    created_at: float


@dataclass(frozen=True)
class ReminderPush:
    """One notice for one browser, in the durable outbox (sent at least once)."""

    id: int
    space_id: SpaceId
    user_id: UserId
    subscription: PushSubscription
    kind: NoticeKind
    data: Mapping[str, Any]  # the Space's title, description, start, state, and the extras
    status: DeliveryStatus
    attempts: int
    created_at: float
    last_error: str | None = None
    code: str | None = None  # the invite code its link carries, as of the claim (reminder_links)


def _subscription(row: PushSubscriptionRow) -> PushSubscription:
    return PushSubscription(
        row.id, UserId(row.user_id), row.endpoint, row.p256dh, row.auth, row.created_at
    )


def _push(
    row: ReminderPushRow, subscription: PushSubscriptionRow, code: str | None = None
) -> ReminderPush:
    return ReminderPush(
        id=row.id,
        space_id=SpaceId(row.space_id),
        user_id=UserId(row.user_id),
        subscription=_subscription(subscription),
        kind=row.kind,
        data=json.loads(row.data),
        status=row.status,
        attempts=row.attempts,
        created_at=row.created_at,
        last_error=row.last_error,
        code=code,
    )


async def queue_push(
    session: AsyncSession,
    space_id: str,
    kind: NoticeKind,
    key: str,
    data: str,
    at: float,
    *,
    only_soon: bool = False,
) -> int:
    """Queue a notice (its `kind`, unique `key` and JSON `data`) for every browser of everyone
    reminded of the Space by push, in the caller's transaction; how many rows are new."""
    queued(session, Work.PUSH)
    who = sa.and_(ReminderRow.space_id == space_id, ReminderRow.push.is_(sa.true()))
    if only_soon:
        who = sa.and_(who, ReminderRow.soon.is_(sa.true()))
    rows = (
        sa.select(
            ReminderRow.space_id,
            PushSubscriptionRow.id,
            ReminderRow.user_id,
            sa.literal(kind.value, sa.String),
            sa.literal(key, sa.String),
            sa.literal(data, sa.Text),
            sa.literal(DeliveryStatus.PENDING.value, sa.String),
            sa.literal(0, sa.Integer),
            sa.literal(at, sa.Double),
            sa.literal(at, sa.Double),
        )
        .join(PushSubscriptionRow, PushSubscriptionRow.user_id == ReminderRow.user_id)
        .where(who)
    )
    columns = [
        "space_id",
        "subscription_id",
        "user_id",
        "kind",
        "key",
        "data",
        "status",
        "attempts",
        "created_at",
        "next_attempt_at",
    ]
    statement = (
        insert_or_skip(session, ReminderPushRow).from_select(columns, rows).on_conflict_do_nothing()
    )
    return rowcount(await session.execute(statement, execution_options=NO_SYNC))


def unwarned_by_push(space_id: str, key: str) -> sa.Exists:
    """Someone asked for the warning of the Space by push and a browser of theirs has none
    queued for this start (`key`) yet."""
    return sa.exists().where(
        ReminderRow.space_id == space_id,
        ReminderRow.soon.is_(sa.true()),
        ReminderRow.push.is_(sa.true()),
        PushSubscriptionRow.user_id == ReminderRow.user_id,
        ~sa.exists().where(
            ReminderPushRow.subscription_id == PushSubscriptionRow.id,
            ReminderPushRow.space_id == space_id,
            ReminderPushRow.key == key,
        ),
    )


class PushOutbox(SqlStore):
    """Push subscriptions, and the push queue, over one engine."""

    max_push_attempts: int = DEFAULT_MAX_PUSH_ATTEMPTS
    max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS

    async def add_push_subscription(
        self, user_id: UserId, endpoint: str, p256dh: str, auth: str, now: float
    ) -> int:
        """Keep a browser's subscription for `user_id` (one already known moves to them, with its
        new keys, and what still waited there for its previous owner is dropped); forget their
        oldest beyond `max_subscriptions`. Returns its id."""
        async with self._write.begin() as session:
            existing = (
                await session.execute(
                    sa.select(PushSubscriptionRow.id, PushSubscriptionRow.user_id).where(
                        PushSubscriptionRow.endpoint == endpoint
                    )
                )
            ).first()
            if existing is not None:
                sub_id = int(existing.id)
                await session.execute(
                    sa.update(PushSubscriptionRow)
                    .where(PushSubscriptionRow.id == sub_id)
                    .values(user_id=user_id, p256dh=p256dh, auth=auth, created_at=now),
                    execution_options=NO_SYNC,
                )
                if existing.user_id != user_id:  # another person signed in on this browser
                    await session.execute(
                        sa.delete(ReminderPushRow).where(
                            ReminderPushRow.subscription_id == sub_id,
                            ReminderPushRow.status == DeliveryStatus.PENDING,
                            ReminderPushRow.lease_token.is_(None),
                        ),
                        execution_options=NO_SYNC,
                    )
            else:
                sub_id = int(
                    await session.scalar(
                        sa.insert(PushSubscriptionRow)
                        .values(
                            user_id=user_id,
                            endpoint=endpoint,
                            p256dh=p256dh,
                            auth=auth,
                            created_at=now,
                        )
                        .returning(PushSubscriptionRow.id)
                    )
                    or 0
                )
            keep = (
                sa.select(PushSubscriptionRow.id)
                .where(PushSubscriptionRow.user_id == user_id)
                .order_by(PushSubscriptionRow.created_at.desc(), PushSubscriptionRow.id.desc())
                .limit(self.max_subscriptions)
            )
            await session.execute(
                sa.delete(PushSubscriptionRow).where(
                    PushSubscriptionRow.user_id == user_id,
                    PushSubscriptionRow.id.not_in(keep.scalar_subquery()),
                ),
                execution_options=NO_SYNC,
            )
            return sub_id

    async def remove_push_subscription(self, user_id: UserId, endpoint: str) -> bool:
        """Forget a browser of `user_id`'s (and what still waits for it); False if unknown."""
        async with self._write.begin() as session:
            gone = await session.execute(
                sa.delete(PushSubscriptionRow).where(
                    PushSubscriptionRow.user_id == user_id,
                    PushSubscriptionRow.endpoint == endpoint,
                ),
                execution_options=NO_SYNC,
            )
            return rowcount(gone) > 0

    async def drop_push_subscription(self, subscription_id: int) -> None:
        """Its push service says it is gone (404/410): forget it and its queued pushes."""
        async with self._write.begin() as session:
            await session.execute(
                sa.delete(PushSubscriptionRow).where(PushSubscriptionRow.id == subscription_id),
                execution_options=NO_SYNC,
            )

    async def push_subscriptions(self, user_id: UserId) -> list[PushSubscription]:
        query = (
            sa.select(PushSubscriptionRow)
            .where(PushSubscriptionRow.user_id == user_id)
            .order_by(PushSubscriptionRow.created_at, PushSubscriptionRow.id)
        )
        async with self._read() as session:
            return [_subscription(row) for row in await session.scalars(query)]

    async def claim_due_push(self, now: float, limit: int, lease_s: float) -> list[ReminderPush]:
        """Lease up to `limit` due pushes to this caller for `lease_s` seconds (leased_queue.py),
        each with the browser it goes to."""
        rows = await leased_queue.claim_due(
            self._read,
            self._write,
            ReminderPushRow,
            lambda token: (
                sa.select(
                    ReminderPushRow,
                    PushSubscriptionRow,
                    reminder_code(ReminderPushRow.space_id, ReminderPushRow.user_id),
                )
                .join_from(ReminderPushRow, PushSubscriptionRow)
                .where(ReminderPushRow.lease_token == token)
                .order_by(ReminderPushRow.next_attempt_at, ReminderPushRow.id)
            ),
            now=now,
            limit=limit,
            lease_s=lease_s,
            max_attempts=self.max_push_attempts,
        )
        return [_push(push, subscription, code) for push, subscription, code in rows]

    async def next_push_due(self) -> float | None:
        """When the earliest pending push can next be claimed (leased_queue.next_due)."""
        return await leased_queue.next_due(self._read, ReminderPushRow)

    async def mark_push_sent(self, push_id: int, now: float) -> None:
        await leased_queue.report(
            self._write, ReminderPushRow, push_id, now, max_attempts=self.max_push_attempts
        )

    async def mark_push_failed(
        self, push_id: int, next_attempt_at: float | None, error: str
    ) -> bool:
        """Retry at `next_attempt_at` or give up (see leased_queue.mark_failed); True: retried."""
        return await leased_queue.report(
            self._write,
            ReminderPushRow,
            push_id,
            0.0,
            failed=(next_attempt_at, error),
            max_attempts=self.max_push_attempts,
        )

    async def reminder_pushes(
        self, space_id: SpaceId | None = None, *, limit: int = 1_000
    ) -> list[ReminderPush]:
        """The queued and sent pushes, oldest first (of one Space, or all): for inspection."""
        query = (
            sa.select(ReminderPushRow, PushSubscriptionRow)
            .join(PushSubscriptionRow)
            .order_by(ReminderPushRow.id)
            .limit(limit)
        )
        if space_id is not None:
            query = query.where(ReminderPushRow.space_id == space_id)
        async with self._read() as session:
            return [_push(push, sub) for push, sub in await session.execute(query)]
