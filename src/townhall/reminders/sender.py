"""Works off the reminder mail outbox: claims due mails, sends them over SMTP, records the
outcome, and tries a failed one again later.

Every process runs one (app.py). A claimed mail is leased to one sender, so however many
processes run, each person gets each notice once (state/reminder_outbox.py); the 10-minute
warnings are queued by one sweep per process (reminders/soon.py). A sender sleeps until this
process queues mail or a mail falls due (state/wakeup.py). Sending is paced by a token bucket in
the shared store (`SmtpConfig.per_second` for the whole deployment, as mail providers limit the
account, not the machine), and a failure waits longer each time (webhooks/retry.py), then is
given up and kept for inspection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from townhall.ratelimit.table import TokenStore
from townhall.reminders.mailer import MailError, SmtpMailer
from townhall.reminders.notices import write
from townhall.state.leased_queue import SWEEP_S, work_forever
from townhall.state.records import Records, ReminderMail
from townhall.state.wakeup import Work
from townhall.webhooks import retry

log = logging.getLogger(__name__)

BATCH = 50
LEASE_S = 120.0  # more than a batch takes at the slowest pace a provider allows
PACE_KEY = "mail-send:all"


class ReminderSender:
    def __init__(
        self,
        records: Records,
        mailer: SmtpMailer,
        pace: TokenStore,
        *,
        base_url: str,
        unsubscribe_url: Callable[[ReminderMail], str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.records = records
        self.mailer = mailer
        self._pace = pace
        self._base_url = base_url.rstrip("/")
        self._unsubscribe_url = unsubscribe_url
        self._clock = clock
        self.sent = 0
        self.failed = 0

    async def run_once(self) -> int:
        """Send what is due; how many mails were attempted."""
        due = await self.records.claim_due_mail(self._clock(), BATCH, LEASE_S)
        for mail in due:  # one at a time: the pace, not concurrency, bounds the rate
            await self._paced()
            await self._send(mail)
        return len(due)

    async def run(self, *, sweep_s: float = SWEEP_S) -> None:
        await work_forever(
            self.run_once,
            BATCH,
            "reminder mail",
            bell=self.records.bells[Work.MAIL],
            due=self.records.next_mail_due,
            clock=self._clock,
            sweep_s=sweep_s,
        )

    async def _paced(self) -> None:
        """Wait for a token of the deployment's sending rate."""
        per_second = self.mailer.config.per_second
        burst = max(1, int(per_second))
        for _ in range(BATCH):  # bounded: a token is at most 1 / per_second away
            wait = await self._pace.take_token(PACE_KEY, per_second, burst, self._clock())
            if wait <= 0:
                return
            await asyncio.sleep(wait)  # pacing: the bucket says how long

    async def _send(self, mail: ReminderMail) -> None:
        written = write(mail.kind, mail.data, self._base_url, mail.code)
        unsubscribe = self._unsubscribe_url(mail)
        text = (
            f"{written.text}\n--\nYou asked to be reminded of this Space on townhall.\n"
            f"Stop these mails: {unsubscribe}\n"
        )
        message = self.mailer.message(
            mail.email,
            written.subject,
            text,
            message_id=self.mailer.message_id(f"reminder-{mail.id}"),
            headers={
                # RFC 8058: one POST to this address unsubscribes, with no page to click through.
                "List-Unsubscribe": f"<{unsubscribe}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "Auto-Submitted": "auto-generated",  # RFC 3834: no vacation replies
            },
        )
        try:
            await self.mailer.send(message)
        except MailError as exc:
            self.failed += 1
            next_at = retry.next_attempt_at(mail.attempts, self._clock())
            await self.records.mark_mail_failed(mail.id, next_at, str(exc))
            log.warning("reminder mail %s failed (%s)", mail.id, exc)
            return
        await self.records.mark_mail_sent(mail.id, self._clock())
        self.sent += 1
