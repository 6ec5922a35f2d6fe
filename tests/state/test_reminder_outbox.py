"""The reminder mail outbox, on SQLite and PostgreSQL, with two processes on one database: a
notice is one mail per person however often it is queued, one sender gets each mail, and a
cancellation or unsubscribe drops what is still waiting."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

from tests.state.test_records import T0, a_space
from townhall.spaces.model import SpaceState, UserId, Visibility
from townhall.state.records import DeliveryStatus, Notice, NoticeKind, Records

ADA, BOB, CY = UserId("u-ada000000001"), UserId("u-bob000000001"), UserId("u-cy0000000001")


async def reminded(records: Records) -> None:
    space = a_space(state=SpaceState.SCHEDULED, scheduled_start=T0 + 300)
    await records.create_space(space)
    await records.add_reminder(space.id, ADA, email="ada@example.org", soon=True)
    await records.add_reminder(space.id, BOB, email="bob@example.org")
    await records.add_reminder(space.id, CY)  # no address: reminded on the page only


async def test_a_notice_queued_by_two_processes_is_one_mail_per_person_sent_by_one(
    records: Records, other_process: Records
) -> None:
    await reminded(records)
    space = a_space(state=SpaceState.LIVE, scheduled_start=T0 + 300)
    await asyncio.gather(
        records.update_space(space, notify=Notice(NoticeKind.STARTING, T0)),
        other_process.update_space(space, notify=Notice(NoticeKind.STARTING, T0 + 1)),
    )
    mail = await records.reminder_mail(space.id)
    assert sorted((m.email, m.kind) for m in mail) == [
        ("ada@example.org", NoticeKind.STARTING),
        ("bob@example.org", NoticeKind.STARTING),
    ]
    claims = await asyncio.gather(
        *(store.claim_due_mail(T0 + 2, 10, 60) for store in [records, other_process] * 3)
    )
    claimed = [m.id for batch in claims for m in batch]
    assert sorted(claimed) == sorted(m.id for m in mail)  # each once, by one claimer
    for m in mail:
        await records.mark_mail_sent(m.id, T0 + 3)
    assert await records.claim_due_mail(T0 + 1_000, 10, 60) == []


async def test_the_warning_is_queued_once_for_those_who_asked_whatever_the_sweeps(
    records: Records, other_process: Records
) -> None:
    await reminded(records)
    assert await records.queue_soon_notices(T0, 600) == 1
    await asyncio.gather(
        records.queue_soon_notices(T0 + 1, 600), other_process.queue_soon_notices(T0 + 2, 600)
    )
    [warning] = await records.reminder_mail()
    assert (warning.user_id, warning.kind) == (ADA, NoticeKind.SOON)
    assert await records.queue_soon_notices(T0 - 1_000, 600) == 0  # not yet due


async def test_a_cancellation_drops_the_waiting_warning_and_unsubscribing_drops_the_rest(
    records: Records,
) -> None:
    await reminded(records)
    await records.queue_soon_notices(T0, 600)
    cancelled = a_space(state=SpaceState.CANCELLED, scheduled_start=T0 + 300)
    await records.update_space(cancelled, notify=Notice(NoticeKind.CANCELLED, T0 + 5))
    waiting = await records.reminder_mail()
    assert sorted((m.user_id, m.kind) for m in waiting) == [
        (ADA, NoticeKind.CANCELLED),
        (BOB, NoticeKind.CANCELLED),
    ]
    assert await records.unsubscribe(cancelled.id, ADA) is True
    assert await records.unsubscribe(cancelled.id, ADA) is False
    [left] = await records.reminder_mail()
    assert (left.user_id, left.status) == (BOB, DeliveryStatus.PENDING)
    assert await records.reminders(cancelled.id) == [BOB, CY]


async def test_a_claimed_mail_carries_the_invite_code_only_while_it_is_the_spaces(
    records: Records,
) -> None:
    """state/reminder_links.py: decided at each claim, never copied into the queued notice."""
    space = a_space(
        state=SpaceState.SCHEDULED,
        scheduled_start=T0 + 300,
        visibility=Visibility.PRIVATE,
        invite_code="code-one",
    )
    await records.create_space(space)
    await records.add_reminder(space.id, ADA, email="ada@example.org", invite_code="code-one")
    await records.add_reminder(space.id, BOB, email="bob@example.org", invite_code="made-up")
    live = replace(space, state=SpaceState.LIVE)
    await records.update_space(live, notify=Notice(NoticeKind.STARTING, T0))
    claimed = {m.user_id: m for m in await records.claim_due_mail(T0 + 1, 10, 60)}
    assert (claimed[ADA].code, claimed[BOB].code) == ("code-one", None)
    assert "code-one" not in json.dumps(claimed[ADA].data)
    # The host replaces the link before a retry: the retry carries no code at all.
    await records.update_space(replace(live, invite_code="code-two"))
    await records.mark_mail_failed(claimed[ADA].id, T0 + 2, "busy")
    [again] = await records.claim_due_mail(T0 + 3, 10, 60)
    assert (again.user_id, again.code) == (ADA, None)
