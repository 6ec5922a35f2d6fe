"""The 10-minute warnings: one sweep per process queues each Space's warning, for those who
asked for it, when its start comes within `SOON_MINUTES`; the mail and push senders deliver it.

It sleeps until the next Space's start comes that close (a read of the earliest start beyond the
window), or until this process changes a Space's start or someone asks for the warning (the
SCHEDULE bell, state/wakeup.py), or at most `leased_queue.SWEEP_S` (changes made by another
process). Every process sweeps; the outboxes' unique keys keep each warning to one per person and
browser (state/reminder_outbox.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from townhall.reminders.notices import SOON_MINUTES
from townhall.state.leased_queue import SWEEP_S, work_forever
from townhall.state.records import Records
from townhall.state.wakeup import Work

LEAD_S = SOON_MINUTES * 60.0


class SoonSweep:
    def __init__(self, records: Records, *, clock: Callable[[], float] = time.time) -> None:
        self.records = records
        self._clock = clock

    async def run_once(self) -> int:
        """Queue the warnings now due; how many mails and pushes are new."""
        return await self.records.queue_soon_notices(self._clock(), LEAD_S)

    async def next_at(self) -> float | None:
        return await self.records.next_soon_notice_at(self._clock(), LEAD_S)

    async def run(self, *, sweep_s: float = SWEEP_S) -> None:
        await work_forever(
            self.run_once,
            None,
            "10-minute warnings",
            bell=self.records.bells[Work.SCHEDULE],
            due=self.next_at,
            clock=self._clock,
            sweep_s=sweep_s,
        )
