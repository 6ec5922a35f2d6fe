"""Works off the reminder push outbox: claims due pushes (the 10-minute warnings among them are
queued by reminders/soon.py), sends each to its browser's push service encrypted and signed
(reminders/webpush.py), and records the outcome. It sleeps until this process queues a push or
one falls due (state/wakeup.py).

Every process runs one (app.py); claims are leases, so each browser gets each notice once
whatever the number of processes (state/push_outbox.py). What a push service answers decides
the rest (`webpush.judge`): a subscription that is gone (404/410) is deleted with its queue; a
busy or failing service (429, 5xx, no answer) is tried again later, no sooner than its
Retry-After and on the same growing waits as webhooks (webhooks/retry.py); a refusal (another
4xx) is given up and kept with its reason for inspection.

How long a push service may hold a notice for a browser that is offline (`TTL`) is what the
notice is worth later: "live now" for an hour, the 10-minute warning until the start, a change
or a cancellation for a day. "Live now" and the warning are urgent (they wake a phone).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import Callable
from typing import Final

import httpx

from townhall.reminders.notices import SOON_MINUTES, write
from townhall.reminders.webpush import (
    Outcome,
    PushMessage,
    PushRequest,
    Subscription,
    Urgency,
    VapidKey,
    judge,
    push_request,
)
from townhall.state.leased_queue import SWEEP_S, work_forever
from townhall.state.records import Records, ReminderPush
from townhall.state.schema import NoticeKind
from townhall.state.wakeup import Work
from townhall.webhooks import retry

log = logging.getLogger(__name__)

BATCH = 50
LEASE_S = 60.0  # a batch of 50 at CONCURRENCY, each within TIMEOUT_S, with room to spare
TIMEOUT_S = 10.0
CONCURRENCY = 8  # requests in flight: push services answer in tens of milliseconds
ERROR_BODY_MAX = 200  # bytes of a refusal's body kept with the row
RETRY_AFTER_MAX_S = 3600.0  # a push service's Retry-After is believed up to an hour

# kind → (TTL seconds, urgency): what the notice is worth to a browser that comes online later.
DELIVERY: Final[dict[NoticeKind, tuple[int, Urgency]]] = {
    NoticeKind.STARTING: (3600, Urgency.HIGH),
    NoticeKind.SOON: (SOON_MINUTES * 60, Urgency.HIGH),
    NoticeKind.CHANGED: (86400, Urgency.NORMAL),
    NoticeKind.CANCELLED: (86400, Urgency.NORMAL),
}


def message_of(push: ReminderPush, base_url: str) -> PushMessage:
    """What the notification says: the mail's subject and first sentence, and the Space's page.
    One tag per Space, so a newer notice replaces an older one in the notification tray."""
    written = write(push.kind, push.data, base_url, push.code)
    return PushMessage(written.subject, written.headline, written.url, f"townhall-{push.space_id}")


def _retry_after(response: httpx.Response, now: float) -> float:
    """Seconds the push service asked us to wait (RFC 9110 §10.2.3: seconds or a date), 0 if
    none, at most RETRY_AFTER_MAX_S."""
    raw = response.headers.get("Retry-After", "").strip()
    if not raw:
        return 0.0
    if raw.isdigit():
        wait = float(raw)
    else:
        try:
            wait = email.utils.parsedate_to_datetime(raw).timestamp() - now
        except (TypeError, ValueError):
            return 0.0
    return min(max(wait, 0.0), RETRY_AFTER_MAX_S)


class PushSender:
    def __init__(
        self,
        records: Records,
        key: VapidKey,
        *,
        base_url: str,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.records = records
        self.key = key
        self._base_url = base_url.rstrip("/")
        self._client = client or httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False)
        self._clock = clock
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self.sent = 0
        self.failed = 0
        self.gone = 0

    async def run_once(self) -> int:
        """Send what is due; how many pushes were attempted."""
        due = await self.records.claim_due_push(self._clock(), BATCH, LEASE_S)
        await asyncio.gather(*(self._send(push) for push in due))
        return len(due)

    async def run(self, *, sweep_s: float = SWEEP_S) -> None:
        await work_forever(
            self.run_once,
            BATCH,
            "reminder push",
            bell=self.records.bells[Work.PUSH],
            due=self.records.next_push_due,
            clock=self._clock,
            sweep_s=sweep_s,
        )

    async def close(self) -> None:
        await self._client.aclose()

    def request(self, push: ReminderPush, now: float) -> PushRequest:
        """The encrypted, signed request for one push (CPU: run off the event loop)."""
        ttl, urgency = DELIVERY[push.kind]
        sub = push.subscription
        return push_request(
            self.key,
            Subscription(sub.endpoint, sub.p256dh, sub.auth),
            message_of(push, self._base_url),
            ttl_s=ttl,
            urgency=urgency,
            topic=f"space-{push.space_id}",
            now=now,
        )

    async def _send(self, push: ReminderPush) -> None:
        async with self._slots:
            now = self._clock()
            request = await asyncio.to_thread(self.request, push, now)
            try:
                response, said = await self._post(request)
            except httpx.HTTPError as exc:
                await self._failed(push, f"no answer: {exc!r}", again=True, wait=0.0)
                return
        outcome = judge(response.status_code)
        if outcome is Outcome.DELIVERED:
            await self.records.mark_push_sent(push.id, self._clock())
            self.sent += 1
        elif outcome is Outcome.GONE:
            # The browser unsubscribed or forgot us: nothing will ever reach it there again.
            await self.records.drop_push_subscription(push.subscription.id)
            self.gone += 1
        else:
            error = f"{response.status_code} {said.decode(errors='replace')}"
            wait = _retry_after(response, now)
            await self._failed(push, error, again=outcome is Outcome.RETRY, wait=wait)

    async def _post(self, request: PushRequest) -> tuple[httpx.Response, bytes]:
        """POST the push; the answer and at most ERROR_BODY_MAX bytes of its body (an endpoint
        is whatever a subscriber named: its answer is not read whole)."""
        async with self._client.stream(
            "POST", request.url, content=request.body, headers=request.headers
        ) as response:
            said = b""
            async for chunk in response.aiter_bytes():
                said += chunk
                if len(said) >= ERROR_BODY_MAX:
                    break
            return response, said[:ERROR_BODY_MAX]

    async def _failed(self, push: ReminderPush, error: str, *, again: bool, wait: float) -> None:
        self.failed += 1
        now = self._clock()
        next_at = retry.next_attempt_at(push.attempts, now) if again else None
        if next_at is not None:
            next_at = max(next_at, now + wait)
        await self.records.mark_push_failed(push.id, next_at, error)
        log.warning("reminder push %s failed (%s)", push.id, error)
