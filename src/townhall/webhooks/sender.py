"""Delivers queued webhooks: claims due rows from the durable outbox, POSTs them signed, and
records the outcome. At least once: a receiver de-duplicates by the `Townhall-Delivery` id.

Several processes may run a sender: a claim is a lease, so two never deliver the same row at the
same time, and a sender that dies mid-delivery leaves a lease that simply expires.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import httpx

from townhall.state.leased_queue import SWEEP_S, work_forever
from townhall.state.records import Records, WebhookDelivery
from townhall.state.wakeup import Work
from townhall.webhooks import retry, signing

log = logging.getLogger(__name__)

BATCH = 50
LEASE_S = 60.0
TIMEOUT_S = 10.0
CONCURRENCY = 8


class WebhookSender:
    def __init__(
        self,
        records: Records,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.records = records
        self._client = client or httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False)
        self._clock = clock
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self.delivered = 0
        self.failed = 0

    async def run_once(self) -> int:
        """Deliver what is due now; returns how many were attempted."""
        due = await self.records.claim_due_deliveries(self._clock(), BATCH, LEASE_S)
        await asyncio.gather(*(self._deliver(d) for d in due))
        return len(due)

    async def run(self, *, sweep_s: float = SWEEP_S) -> None:
        await work_forever(
            self.run_once,
            BATCH,
            "webhook delivery",
            bell=self.records.bells[Work.WEBHOOKS],
            due=self.records.next_delivery_due,
            clock=self._clock,
            sweep_s=sweep_s,
        )

    async def _deliver(self, delivery: WebhookDelivery) -> None:
        body = delivery.payload.encode()
        now = self._clock()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "townhall-webhooks",
            "Townhall-Event": delivery.event_type,
            "Townhall-Delivery": str(delivery.id),
            signing.HEADER: signing.sign(delivery.endpoint.secret, body, int(now)),
        }
        async with self._slots:
            try:
                response = await self._client.post(
                    delivery.endpoint.url, content=body, headers=headers
                )
                error = (
                    None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
                )
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
        if error is None:
            await self.records.mark_delivered(delivery.id, self._clock())
            self.delivered += 1
            return
        self.failed += 1
        next_at = retry.next_attempt_at(delivery.attempts, self._clock())
        await self.records.mark_failed(delivery.id, self._clock(), next_at, error)
        log.warning("webhook %s to %s failed (%s)", delivery.id, delivery.endpoint.url, error)

    async def close(self) -> None:
        await self._client.aclose()
