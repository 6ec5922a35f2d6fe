"""Recording accounts in the records, on SQLite and PostgreSQL: opened with the Space that pays
its first hour, read by any process with the Space's host now as the payer, and charged by
increments that two processes add up."""

from __future__ import annotations

import asyncio

from townhall.spaces.model import Role, Space, SpaceId, StageLimits, StageMember, UserId
from townhall.state.recording_accounts import RecordingAccount, RecordingDeposit
from townhall.state.records import Records

NOW = 1_800_000_000.0
HOST = UserId("g-host000000")
COHOST = UserId("g-cohost0000")
HOUR = 31_680_000
ROOMY = StageLimits()


async def a_recorded_space(records: Records, deposit: RecordingDeposit | None) -> Space:
    space = Space(SpaceId("spacerecor"), "Recorded", HOST, NOW, record=True)
    host = StageMember(space.id, HOST, Role.HOST, "Hana", NOW)
    return await records.create_space(space, host=host, deposit=deposit)


async def test_a_recorded_space_keeps_the_address_that_paid_its_first_hour(
    records: Records, other_process: Records
) -> None:
    space = await a_recorded_space(records, RecordingDeposit("198.51.100.7", HOUR))
    # Another process (the media node recording it) reads what this one wrote.
    account = await other_process.recording_account(space.id, opened_with=0)
    assert account == RecordingAccount(HOST, "198.51.100.7", HOUR)


async def test_the_payer_is_the_host_now_and_the_address_stays_the_creators(
    records: Records,
) -> None:
    space = await a_recorded_space(records, RecordingDeposit("2001:db8:1:2::/64", HOUR))
    await records.put_stage_member(StageMember(space.id, COHOST, Role.COHOST, "Co", NOW), ROOMY)
    await records.transfer_host(space.id, HOST, COHOST, ROOMY)
    account = await records.recording_account(space.id, opened_with=0)
    assert account == RecordingAccount(COHOST, "2001:db8:1:2::/64", HOUR)


async def test_a_space_recorded_before_there_were_accounts_gets_one_with_its_first_hour_paid(
    records: Records,
) -> None:
    space = await a_recorded_space(records, None)
    first = await records.recording_account(space.id, opened_with=HOUR)
    assert first == RecordingAccount(HOST, None, HOUR)
    await records.add_recording_paid(space.id, 1_000)
    # Opened once: a later read (with another reserve) finds what was paid.
    assert await records.recording_account(space.id, opened_with=5) == RecordingAccount(
        HOST, None, HOUR + 1_000
    )
    assert await records.recording_account(SpaceId("nosuchspace"), opened_with=HOUR) is None


async def test_charges_from_two_processes_at_once_add_up(
    records: Records, other_process: Records
) -> None:
    space = await a_recorded_space(records, RecordingDeposit("198.51.100.7", HOUR))
    await asyncio.gather(
        *(
            (records if n % 2 else other_process).add_recording_paid(space.id, 1_000_000)
            for n in range(6)
        )
    )
    account = await records.recording_account(space.id, opened_with=0)
    assert account is not None
    assert account.paid == HOUR + 6_000_000
