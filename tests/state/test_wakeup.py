"""Idle workers sleep and wake on work: a commit that queued work rings its bell, a rollback
rings nothing, and a sleeping worker is woken by this process's commits, by the time its
earliest row falls due, and by a new start time entering the 10-minute window."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from tests.state.test_outbox import eventually
from tests.state.test_records import T0, a_space
from townhall.reminders.soon import LEAD_S, SoonSweep
from townhall.spaces.model import Space, SpaceState, UserId
from townhall.state.records import Records
from townhall.state.wakeup import BELLS_KEY, Bells, RingingSession, Work, queued

ADA = UserId("u-ada000000001")


async def test_a_commit_rings_the_bells_of_what_it_queued_and_a_rollback_rings_none() -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    bells = Bells()
    sessions = async_sessionmaker(
        engine, sync_session_class=RingingSession, info={BELLS_KEY: bells}
    )
    try:
        with contextlib.suppress(RuntimeError):
            async with sessions.begin() as session:
                queued(session, Work.MAIL)
                await session.execute(sa.text("SELECT 1"))
                raise RuntimeError("the change failed")
        assert await bells[Work.MAIL].wait(0) is False

        async with sessions.begin() as session:
            queued(session, Work.MAIL)
            await session.execute(sa.text("SELECT 1"))
        assert await bells[Work.MAIL].wait(0) is True
        assert await bells[Work.MAIL].wait(0) is False  # one ring wakes one wait
        assert await bells[Work.PUSH].wait(0) is False  # other workers sleep on
    finally:
        await engine.dispose()


async def mails(records: Records, space: Space) -> int:
    return len(await records.reminder_mail(space.id))


@pytest.fixture
async def sweeping(records: Records) -> AsyncIterator[SoonSweep]:
    """The 10-minute-warning sweep running with an hour's safety period: only its bell and its
    own timer can wake it."""
    sweep = SoonSweep(records)
    task = asyncio.create_task(sweep.run(sweep_s=3600))
    yield sweep
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_asking_for_the_warning_of_a_space_about_to_start_wakes_the_sweep(
    records: Records, sweeping: SoonSweep
) -> None:
    space = a_space(state=SpaceState.SCHEDULED, scheduled_start=time.time() + 300)
    await records.create_space(space)
    await records.add_reminder(space.id, ADA, email="ada@example.org", soon=True)

    await eventually(lambda: mails(records, space), 1, "the warning queued")


async def test_the_sweep_wakes_when_a_start_enters_the_window(
    records: Records, sweeping: SoonSweep
) -> None:
    start = time.time() + LEAD_S + 1.5  # its warning falls due in 1.5 s
    space = a_space(state=SpaceState.SCHEDULED, scheduled_start=start)
    await records.create_space(space)
    await records.add_reminder(space.id, ADA, email="ada@example.org", soon=True)
    assert await records.next_soon_notice_at(time.time(), LEAD_S) == pytest.approx(start - LEAD_S)
    await eventually(lambda: mails(records, space), 1, "the warning queued", within=30)
    assert time.time() >= start - LEAD_S  # not before it was due


async def test_the_earliest_pending_delivery_says_when_a_sleeping_sender_must_wake(
    records: Records,
) -> None:
    assert await records.next_delivery_due() is None
    await records.add_webhook("http://127.0.0.1:9/hooks", "secret", ["*"])
    await records.enqueue_delivery("space.started", "{}", T0)
    assert await records.next_delivery_due() == T0
    [claimed] = await records.claim_due_deliveries(T0, 10, 60)
    assert await records.next_delivery_due() == T0 + 60  # another worker's lease ends
    await records.mark_failed(claimed.id, T0 + 1, T0 + 30, "HTTP 503")
    assert await records.next_delivery_due() == T0 + 30  # its retry
