"""The webhook outbox: registered endpoints and the durable queue of deliveries to them.

An event is queued once per endpoint that wants it (`queue_deliveries`); any number of sender
processes work the queue off (webhooks/sender.py) by claiming due rows under a lease
(`claim_due_deliveries`) and reporting the outcome (`mark_delivered`, `mark_failed`), the way
every leased queue is worked (leased_queue.py). Delivery is at least once: a claimer that dies
leaves its rows to come back when the lease lapses, and receivers dedupe on the delivery id.

`WebhookOutbox` is one part of the records (`Records` in records.py inherits it), so callers use
it as `records.add_webhook(…)`, `records.claim_due_deliveries(…)`, ….

Queued with the change it announces. A webhook reports a change, so it must be committed exactly
when the change is: a command hands the Records write an `Announcement`, and the write queues its
deliveries inside its own transaction, after its own statements (records.py, `_announce`). If the
change fails the deliveries were never queued; if the queueing fails the change is rolled back.
The payload is built there from what the transaction wrote (`Announced`), not from what the caller
expected it to write.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from townhall.spaces.model import Space, UserId
from townhall.state import leased_queue
from townhall.state.database import NO_SYNC, SqlStore, rowcount
from townhall.state.errors import NotFound
from townhall.state.schema import DeliveryStatus, WebhookDeliveryRow, WebhookEndpointRow
from townhall.state.wakeup import Work, queued

__all__ = [
    "DEFAULT_MAX_DELIVERY_ATTEMPTS",
    "Announced",
    "Announcement",
    "DeliveryStatus",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookOutbox",
    "queue_deliveries",
]

DEFAULT_MAX_DELIVERY_ATTEMPTS: Final = 8


@dataclass(frozen=True)
class WebhookEndpoint:
    id: int
    url: str
    secret: str = field(repr=False)  # signs the bodies; kept out of logs
    events: tuple[str, ...]  # event types; "*" matches all, "stage.*" every "stage.…" type
    created_at: float

    def wants(self, event_type: str) -> bool:
        return any(
            pattern in ("*", event_type)
            or (pattern.endswith(".*") and event_type.startswith(pattern[:-1]))
            for pattern in self.events
        )


@dataclass(frozen=True)
class WebhookDelivery:
    """One event for one endpoint, in the durable outbox (delivered at least once)."""

    id: int
    endpoint: WebhookEndpoint
    event_type: str
    payload: str  # the JSON body, exactly as queued
    status: DeliveryStatus
    attempts: int  # how many times it was claimed for delivery
    created_at: float
    next_attempt_at: float
    delivered_at: float | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class Announced:
    """What a change's transaction wrote, as its announcement's payload is built from it."""

    space: Space  # the Space as the transaction left it
    reminders: tuple[UserId, ...] = ()  # who asked to be reminded, if the announcement asked


@dataclass(frozen=True)
class Announcement:
    """A webhook event that a Records write queues in its own transaction (see the module doc).

    `payload` turns what the transaction wrote into the JSON body; it runs inside the transaction,
    so it must be quick and must not do I/O. `reminders`: how many of the Space's reminders
    (first by user id) the transaction should read for it (none by default).
    """

    event_type: str
    at: float  # when it was announced: the deliveries are due from then
    payload: Callable[[Announced], str]
    reminders: int = 0


def _endpoint(row: WebhookEndpointRow) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row.id,
        url=row.url,
        secret=row.secret,
        events=tuple(json.loads(row.events)),
        created_at=row.created_at,
    )


def _delivery(row: WebhookDeliveryRow, endpoint: WebhookEndpointRow) -> WebhookDelivery:
    return WebhookDelivery(
        id=row.id,
        endpoint=_endpoint(endpoint),
        event_type=row.event_type,
        payload=row.payload,
        status=row.status,
        attempts=row.attempts,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        delivered_at=row.delivered_at,
        last_error=row.last_error,
    )


async def queue_deliveries(
    session: AsyncSession, event_type: str, payload_json: str, now: float
) -> int:
    """Queue `payload_json` for every endpoint that wants `event_type`, due at `now`, in the
    caller's transaction: committed with it or not at all. Returns how many were queued."""
    endpoints = [_endpoint(row) for row in await session.scalars(sa.select(WebhookEndpointRow))]
    wanted = [endpoint.id for endpoint in endpoints if endpoint.wants(event_type)]
    if wanted:
        queued(session, Work.WEBHOOKS)
        await session.execute(
            sa.insert(WebhookDeliveryRow),
            [
                {
                    "endpoint_id": endpoint_id,
                    "event_type": event_type,
                    "payload": payload_json,
                    "status": DeliveryStatus.PENDING,
                    "attempts": 0,
                    "created_at": now,
                    "next_attempt_at": now,
                }
                for endpoint_id in wanted
            ],
        )
    return len(wanted)


class WebhookOutbox(SqlStore):
    """Webhook endpoints and their delivery queue, over one engine."""

    def __init__(
        self, engine: AsyncEngine, *, max_delivery_attempts: int = DEFAULT_MAX_DELIVERY_ATTEMPTS
    ) -> None:
        if max_delivery_attempts < 1:
            raise ValueError("max_delivery_attempts must be at least 1")
        super().__init__(engine)
        self.max_delivery_attempts = max_delivery_attempts

    @staticmethod
    async def _delivery_exists(session: AsyncSession, delivery_id: int) -> bool:
        found = await session.scalar(
            sa.select(WebhookDeliveryRow.id).where(WebhookDeliveryRow.id == delivery_id)
        )
        return found is not None

    async def add_webhook(
        self, url: str, secret: str, events: Iterable[str], *, now: float | None = None
    ) -> WebhookEndpoint:
        """Register an endpoint for `events` (exact types, "*" for all, "stage.*" for a family)."""
        created_at = time.time() if now is None else now
        patterns = sorted(set(events))
        async with self._write.begin() as session:
            endpoint_id = await session.scalar(
                sa.insert(WebhookEndpointRow)
                .values(url=url, secret=secret, events=json.dumps(patterns), created_at=created_at)
                .returning(WebhookEndpointRow.id)
            )
        assert endpoint_id is not None
        return WebhookEndpoint(endpoint_id, url, secret, tuple(patterns), created_at)

    async def webhooks(self) -> list[WebhookEndpoint]:
        async with self._read() as session:
            rows = await session.scalars(
                sa.select(WebhookEndpointRow).order_by(WebhookEndpointRow.id)
            )
            return [_endpoint(row) for row in rows]

    async def remove_webhook(self, endpoint_id: int) -> bool:
        """Unregister an endpoint; its queued and past deliveries go with it."""
        async with self._write.begin() as session:
            result = await session.execute(
                sa.delete(WebhookEndpointRow).where(WebhookEndpointRow.id == endpoint_id),
                execution_options=NO_SYNC,
            )
            return rowcount(result) > 0

    async def enqueue_delivery(self, event_type: str, payload_json: str, now: float) -> int:
        """Queue `payload_json` for every endpoint that wants `event_type`, due at once, in a
        transaction of its own (a change's announcement goes in the change's: see the module doc).
        Returns how many deliveries were queued."""
        async with self._write.begin() as session:
            return await queue_deliveries(session, event_type, payload_json, now)

    async def pending_deliveries(self) -> int:
        """Deliveries neither delivered nor given up yet, due or waiting to retry: the webhook
        backlog (a gauge; counted on the status index)."""
        async with self._read() as session:
            count = await session.scalar(
                sa.select(sa.func.count())
                .select_from(WebhookDeliveryRow)
                .where(WebhookDeliveryRow.status == DeliveryStatus.PENDING)
            )
            return int(count or 0)

    async def claim_due_deliveries(
        self, now: float, limit: int, lease_s: float
    ) -> list[WebhookDelivery]:
        """Lease up to `limit` due deliveries to this caller for `lease_s` seconds (see
        leased_queue.py: never two processes on one row; at least once, so receivers dedupe on
        the delivery id)."""
        async with self._write.begin() as session:
            token = await leased_queue.claim(
                session, WebhookDeliveryRow, now, limit, lease_s, self.max_delivery_attempts
            )
            if token is None:
                return []
            rows = await session.execute(
                sa.select(WebhookDeliveryRow, WebhookEndpointRow)
                .join(WebhookEndpointRow)
                .where(WebhookDeliveryRow.lease_token == token)
                .order_by(WebhookDeliveryRow.next_attempt_at, WebhookDeliveryRow.id)
            )
            return [_delivery(delivery, endpoint) for delivery, endpoint in rows]

    async def next_delivery_due(self) -> float | None:
        """When the earliest pending delivery can next be claimed (leased_queue.next_due)."""
        return await leased_queue.next_due(self._read, WebhookDeliveryRow)

    async def mark_delivered(self, delivery_id: int, now: float) -> None:
        """The endpoint accepted it. A row already delivered or given up is left as it is."""
        async with self._write.begin() as session:
            done = await leased_queue.mark_delivered(session, WebhookDeliveryRow, delivery_id, now)
            if not done and not await self._delivery_exists(session, delivery_id):
                raise NotFound(f"no webhook delivery {delivery_id}")

    async def mark_failed(
        self, delivery_id: int, now: float, next_attempt_at: float | None, error: str
    ) -> bool:
        """The attempt failed: retry at `next_attempt_at`, or give up when that is None or the
        attempts are used up (`max_delivery_attempts`). A given-up row stays, status failed, with
        its last error, for inspection. Returns True if it will be retried."""
        async with self._write.begin() as session:
            retry = await leased_queue.mark_failed(
                session,
                WebhookDeliveryRow,
                delivery_id,
                next_attempt_at,
                error,
                self.max_delivery_attempts,
            )
            if retry is None:
                raise NotFound(f"no webhook delivery {delivery_id}")
            return retry

    async def delivery(self, delivery_id: int) -> WebhookDelivery | None:
        async with self._read() as session:
            found = (
                await session.execute(
                    sa.select(WebhookDeliveryRow, WebhookEndpointRow)
                    .join(WebhookEndpointRow)
                    .where(WebhookDeliveryRow.id == delivery_id)
                )
            ).first()
            return None if found is None else _delivery(*found)

    async def deliveries(
        self, status: DeliveryStatus | None = None, *, limit: int = 100
    ) -> list[WebhookDelivery]:
        """Newest first, for inspection (e.g. the ones given up on)."""
        query = sa.select(WebhookDeliveryRow, WebhookEndpointRow).join(WebhookEndpointRow)
        if status is not None:
            query = query.where(WebhookDeliveryRow.status == status)
        query = query.order_by(WebhookDeliveryRow.id.desc()).limit(limit)
        async with self._read() as session:
            rows = await session.execute(query)
            return [_delivery(delivery, endpoint) for delivery, endpoint in rows]
