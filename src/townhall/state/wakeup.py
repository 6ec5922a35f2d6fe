"""Wakes this process's background workers when a committed transaction queued work for them, so
that a node with nothing to do sleeps instead of polling.

Theory of operation. The outbox workers (webhook deliveries, reminder mail, reminder pushes) and
the 10-minute-warning sweep used to ask the records every second or two whether there was work.
On an idle node that was most of its wakeups: each question is a few round trips to the
database's connection thread. Now:

1. A function that queues work in the caller's transaction says so: `queued(session, Work.X)`.
2. When that transaction commits, the store rings the bell of each kind of work it queued
   (`Bells.ring`; an after-commit hook of the write sessions, installed by `SqlStore`). A rolled
   back transaction rings nothing: nothing was queued.
3. A worker waits on its bell (`Bell.wait`) for at most a safety period, or until the earliest
   row it knows of falls due (a retry's time, another worker's lease running out), whichever is
   sooner. The safety period catches what no bell of this process announces: rows queued by
   another process that died before working them off.

So work queued on this node leaves at once (sooner than a 1 s poll did), work queued on another
node is worked off there at once (every process runs every worker), and an idle node wakes once
per safety period per worker. Bells are per store and per event loop: ring and wait from the
loop the store is used on.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

__all__ = ["BELLS_KEY", "Bell", "Bells", "RingingSession", "Work", "queued"]

BELLS_KEY: Final = "townhall.bells"  # Session.info: the store's bells (set by its sessionmaker)
_QUEUED_KEY: Final = "townhall.queued"  # Session.info: the kinds of work this transaction queued


class Work(enum.Enum):
    """A kind of queued work, one bell each."""

    WEBHOOKS = "webhooks"
    MAIL = "mail"
    PUSH = "push"
    SCHEDULE = "schedule"  # a Space's start time was set: the 10-minute warnings' sweep replans


class Bell:
    """One worker's wake-up: rung by commits, waited on by the worker."""

    def __init__(self) -> None:
        self._rung = asyncio.Event()

    def ring(self) -> None:
        self._rung.set()

    async def wait(self, timeout_s: float) -> bool:
        """Return when rung (at once if rung since the last wait) or after `timeout_s`; True if
        rung. Each ring wakes one wait: work queued while the worker works wakes it again."""
        if timeout_s > 0 and not self._rung.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._rung.wait()
        rung = self._rung.is_set()
        self._rung.clear()
        return rung


class Bells:
    """A store's bells, one per kind of work."""

    def __init__(self) -> None:
        self._bells = {work: Bell() for work in Work}

    def __getitem__(self, work: Work) -> Bell:
        return self._bells[work]

    def ring(self, work: Work) -> None:
        self._bells[work].ring()


def queued(session: AsyncSession, work: Work) -> None:
    """The caller's transaction queues `work`: ring its bell when (and if) it commits."""
    session.info.setdefault(_QUEUED_KEY, set()).add(work)


class RingingSession(Session):
    """The write sessions' class: rings the bells of the work a transaction queued when it
    commits (a class of our own, so the hook touches no other user of SQLAlchemy's Session)."""


@sa.event.listens_for(RingingSession, "after_commit")
def _ring(session: Session) -> None:
    work: set[Work] = session.info.pop(_QUEUED_KEY, set())
    bells: Any = session.info.get(BELLS_KEY)
    if isinstance(bells, Bells):
        for kind in work:
            bells.ring(kind)


@sa.event.listens_for(RingingSession, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_QUEUED_KEY, None)
