"""The live side of the event outbox: committed events move from the records into the live log.

Theory of operation. A command (spaces/control.py) changes the records and queues the event that
reports the change in the same transaction (state/event_outbox.py), so a change and its event are
committed together or not at all. Then:

1. Before a command writes anything it calls `ready()`: the live store must answer a PING. If it
   is down the command fails with the driver's error (503 at the API) and nothing has changed.
2. After the commit the command calls `deliver(space)`, which appends the Space's queued events
   to its live log in commit order and drops them from the queue (one transaction around both,
   see event_outbox.py). If the live store fails in the short window since `ready()`, the events
   stay queued and the command still succeeds: its change stands, and its event follows.
3. Every process runs a sweep (`start()`): every `sweep_every_s` (5 s) it delivers the events
   of any Space that has one queued for more than `stale_after_s` — left by a process that died
   between its commit and its delivery, or by a live store that was out of reach — and at once
   those this process failed to deliver itself; while it has such failures of its own, it sweeps
   every `retry_every_s` (1 s). An idle node, with nothing left over, wakes once per period: a
   second's sweep was a fair share of an empty server's wakeups, for events that are nearly
   always delivered by the command itself within milliseconds.

So a committed change's event reaches every node even if the process that made it is killed
right after the commit, and in the order the changes committed, whichever process delivers it.
Delivery is at least once (a failure part way through a Space's events repeats them); events carry
the state they set, not a toggle, so a repeat is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from townhall.spaces.model import SpaceId
from townhall.state.event_outbox import EventQueue, QueuedEvent
from townhall.state.live import Event, LiveState
from townhall.state.unavailable import UNAVAILABLE_ERRORS, is_unavailable
from townhall.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 5.0  # another process's leftovers: it died after a commit (rare)
RETRY_EVERY_S = 1.0  # this process's own leftovers: its live store was out of reach
# A process delivers its own events within milliseconds of the commit; the sweep leaves them
# that long before it steps in, so it does not race every command for its own rows.
STALE_AFTER_S = 2.0


class EventOutbox:
    """Moves the records' queued events into `live` (see the module docstring)."""

    def __init__(
        self,
        records: EventQueue,
        live: LiveState,
        *,
        sweep_every_s: float = SWEEP_EVERY_S,
        retry_every_s: float = RETRY_EVERY_S,
        stale_after_s: float = STALE_AFTER_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.records = records
        self.live = live
        self._sweep_every_s = sweep_every_s
        self._retry_every_s = min(retry_every_s, sweep_every_s)
        self._stale_after_s = stale_after_s
        self._clock = clock
        self._undelivered: set[SpaceId] = set()  # ours that failed: swept without waiting
        self._sweeping: asyncio.Task[None] | None = None

    async def ready(self) -> None:
        """Return when the live store takes events; raise the store's error if it does not."""
        await self.live.ping()

    async def deliver(self, space_id: SpaceId) -> bool:
        """Append the Space's queued events to its log; False (they stay queued for the sweep)
        if a store is out of reach. Never raises for that: the changes are already committed."""
        try:
            await self.records.deliver_events(space_id, self._append)
        except UNAVAILABLE_ERRORS as exc:
            if not is_unavailable(exc):
                raise
            log.warning("events of %s stay queued: %s", space_id, exc)
            self._undelivered.add(space_id)
            return False
        self._undelivered.discard(space_id)
        return True

    async def sweep(self) -> int:
        """Deliver what was left queued (see the module docstring); the Spaces delivered."""
        due = set(self._undelivered)
        due.update(await self.records.spaces_with_events(self._clock() - self._stale_after_s))
        delivered = 0
        for space_id in sorted(due):
            if await self.deliver(space_id):
                delivered += 1
        if delivered:
            log.info("delivered the queued events of %d Space(s)", delivered)
        return delivered

    def start(self) -> None:
        """Sweep every `sweep_every_s` (`retry_every_s` while own events wait) until `close()`."""
        if self._sweeping is None:
            self._sweeping = asyncio.create_task(self._sweep_forever(), name="event-outbox")

    async def close(self) -> None:
        """Stop sweeping. What is still queued stays in the records for any process to deliver."""
        if self._sweeping is not None:
            await cancel_and_wait(self._sweeping)
            self._sweeping = None

    async def _append(self, event: QueuedEvent) -> Event:
        return await self.live.append(event.space_id, event.type, event.data, event.at)

    async def _sweep_forever(self) -> None:
        while True:
            # A period, not a wait for a condition: shorter while our own events wait.
            await asyncio.sleep(self._retry_every_s if self._undelivered else self._sweep_every_s)
            try:
                await self.sweep()
            except UNAVAILABLE_ERRORS as exc:
                if not is_unavailable(exc):
                    log.exception("sweeping the event outbox failed")
            except Exception:  # the next sweep tries again, whatever this one hit
                log.exception("sweeping the event outbox failed")
