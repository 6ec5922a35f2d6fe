"""Invite links in the records, on SQLite and PostgreSQL: a use is counted in the seat's own
transaction, so concurrent redemptions from two processes never seat more people than the link
allows, and a seat refused for a full stage costs the link no use."""

from __future__ import annotations

import asyncio

import pytest

from townhall.spaces.invite_links import InviteLink, InviteLinkId, Refusal, new_link_id
from townhall.spaces.model import Role, Space, SpaceId, StageLimits, StageMember, UserId
from townhall.state.records import LinkRefused, Records, StageFull

NOW = 1_800_000_000.0
HOST = UserId("u-host00000000")
ROOMY = StageLimits()


async def a_space(records: Records, limits: StageLimits = ROOMY) -> Space:
    space = Space(SpaceId("spaceinvit"), "Invites", HOST, NOW, limits=limits)
    host = StageMember(space.id, HOST, Role.HOST, "Hana", NOW)
    return await records.create_space(space, host=host)


async def a_link(records: Records, space: Space, max_uses: int) -> InviteLink:
    link = InviteLink(
        new_link_id(), space.id, Role.SPEAKER, max_uses, 0, HOST, "Hana", NOW, NOW + 3600
    )
    return await records.create_invite_link(link, open_max=50)


def guest(n: int, space: Space) -> StageMember:
    return StageMember(space.id, UserId(f"g-guest{n:07d}"), Role.SPEAKER, f"Guest {n}", NOW)


async def redeem(
    records: Records, member: StageMember, link: InviteLinkId, limits: StageLimits = ROOMY
) -> Refusal | None:
    """None if seated, else why not."""
    try:
        await records.seat_with_invite_link(member, limits, link, NOW + 1)
    except LinkRefused as exc:
        return exc.refusal
    return None


async def test_ten_people_opening_a_three_use_link_at_once_from_two_processes_seat_three(
    records: Records, other_process: Records
) -> None:
    space = await a_space(records)
    link = await a_link(records, space, max_uses=3)
    seated = await asyncio.gather(
        *(redeem(records if n % 2 else other_process, guest(n, space), link.id) for n in range(10))
    )
    assert sorted(seated, key=str) == [None] * 3 + [Refusal.USED_UP] * 7
    stored = (await records.invite_links(space.id, limit=10))[0]
    assert (stored.uses, stored.remaining, len(stored.used_by)) == (3, 0, 3)
    speakers = [m for m in await records.stage(space.id) if m.role is Role.SPEAKER]
    assert {m.user_id for m in speakers} == {u.user_id for u in stored.used_by}


async def test_a_seat_refused_for_a_full_stage_costs_the_link_no_use(records: Records) -> None:
    one_seat = StageLimits(max_speakers=1)
    space = await a_space(records, one_seat)
    link = await a_link(records, space, max_uses=5)
    assert await redeem(records, guest(1, space), link.id, one_seat) is None
    with pytest.raises(StageFull):
        await redeem(records, guest(2, space), link.id, one_seat)
    stored = await records.invite_link(space.id, link.id)
    assert stored is not None
    assert stored.uses == 1


async def test_a_link_of_another_space_or_no_link_at_all_seats_nobody(records: Records) -> None:
    space = await a_space(records)
    with pytest.raises(LinkRefused) as refused:
        await records.seat_with_invite_link(
            guest(1, space), StageLimits(), InviteLinkId("A" * 16), NOW
        )
    assert refused.value.refusal is Refusal.UNKNOWN
    assert [m.role for m in await records.stage(space.id)] == [Role.HOST]
