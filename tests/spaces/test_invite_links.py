"""Invite links as the host uses them (spaces/invite_links.py has the rule), against real records
on SQLite and PostgreSQL with a clock the tests move: use limits, expiry, revocation, people a
moderator took off the stage, and links whose creator can no longer invite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tests.spaces.test_control import COHOST, HOST, Clock, refused
from townhall.spaces.control import Actor, NewSpace, SpaceControl
from townhall.spaces.invite_links import LinkState
from townhall.spaces.model import Role, Space, UserId
from townhall.state.embedded_live import EmbeddedLiveState
from townhall.state.records import open_records

ANN = Actor(UserId("g-ann000000000"), "Ann", is_guest=True)
BOB = Actor(UserId("g-bob000000000"), "Bob", is_guest=True)


@dataclass
class Stage:
    control: SpaceControl
    clock: Clock
    space: Space

    async def role(self, who: Actor) -> Role:
        return (await self.control.standing(self.space.id, who.user_id)).role


@pytest.fixture
async def stage(database_url: str) -> AsyncIterator[Stage]:
    """A Space in its green room with Hana as host, on each database the records run on."""
    records = await open_records(database_url)
    live = EmbeddedLiveState()
    clock = Clock()
    control = SpaceControl(records, live, clock=clock)
    yield Stage(control, clock, await control.create(HOST, NewSpace("Invites")))
    await live.close()
    await records.close()


async def test_a_one_use_link_seats_one_person_and_opening_it_again_costs_nothing(
    stage: Stage,
) -> None:
    c, space = stage.control, stage.space
    link = await c.create_invite_link(HOST, space.id, Role.SPEAKER)
    assert (link.max_uses, link.expires_at - link.created_at) == (1, 24 * 3600)
    assert (await c.join_with_invite_link(ANN, space.id, link.id)).role is Role.SPEAKER
    await refused("invite_link_used_up", c.join_with_invite_link(BOB, space.id, link.id))
    # Ann opens it again, on the stage and after leaving on her own: no use, no refusal.
    await c.join_with_invite_link(ANN, space.id, link.id)
    await c.leave_stage(ANN, space.id)
    assert (await c.join_with_invite_link(ANN, space.id, link.id)).role is Role.SPEAKER
    [(listed, state)] = await c.invite_links(HOST, space.id)
    assert (listed.uses, listed.remaining, state) == (1, 0, LinkState.USED_UP)
    assert [u.display_name for u in listed.used_by] == ["Ann"]


async def test_a_link_stops_at_its_expiry(stage: Stage) -> None:
    c, space = stage.control, stage.space
    link = await c.create_invite_link(HOST, space.id, Role.SPEAKER, max_uses=5, ttl_s=600)
    stage.clock.now += 599
    await c.join_with_invite_link(ANN, space.id, link.id)
    stage.clock.now += 1
    await refused("invite_link_expired", c.join_with_invite_link(BOB, space.id, link.id))
    assert [s for _, s in await c.invite_links(HOST, space.id)] == [LinkState.EXPIRED]


async def test_a_revoked_link_seats_nobody_but_whom_it_seated_stays(stage: Stage) -> None:
    c, space = stage.control, stage.space
    link = await c.create_invite_link(HOST, space.id, Role.SPEAKER, max_uses=5)
    await c.join_with_invite_link(ANN, space.id, link.id)
    revoked = await c.revoke_invite_link(HOST, space.id, link.id)
    assert revoked.revoked_at == stage.clock.now
    await refused("invite_link_revoked", c.join_with_invite_link(BOB, space.id, link.id))
    assert await stage.role(ANN) is Role.SPEAKER
    again = await c.revoke_invite_link(HOST, space.id, link.id)  # nothing changes
    assert again.revoked_at == revoked.revoked_at
    events = await c.live.events_since(space.id, 0)
    assert events is not None
    assert [e.type for e in events].count("invite_link.revoked") == 1


async def test_someone_moved_off_the_stage_cannot_come_back_by_any_link_until_seated_by_a_host(
    stage: Stage,
) -> None:
    c, space = stage.control, stage.space
    link = await c.create_invite_link(HOST, space.id, Role.SPEAKER, max_uses=10)
    await c.join_with_invite_link(ANN, space.id, link.id)
    await c.move_to_audience(HOST, space.id, ANN.user_id)
    await refused("invite_link_barred", c.join_with_invite_link(ANN, space.id, link.id))
    fresh = await c.create_invite_link(HOST, space.id, Role.SPEAKER)
    await refused("invite_link_barred", c.join_with_invite_link(ANN, space.id, fresh.id))
    # One click on her raised hand brings her back, and links work for her again.
    await c.raise_hand(ANN, space.id)
    await c.accept_request(HOST, space.id, ANN.user_id)
    await c.leave_stage(ANN, space.id)
    assert (await c.join_with_invite_link(ANN, space.id, link.id)).role is Role.SPEAKER


async def test_a_removed_person_is_barred_too_and_a_direct_invitation_lifts_it(
    stage: Stage,
) -> None:
    c, space = stage.control, stage.space
    link = await c.create_invite_link(HOST, space.id, Role.SPEAKER, max_uses=10)
    await c.join_with_invite_link(BOB, space.id, link.id)
    await c.remove(HOST, space.id, BOB.user_id)
    await refused("invite_link_barred", c.join_with_invite_link(BOB, space.id, link.id))
    await c.invite_to_speak(HOST, space.id, BOB.user_id)
    assert (await c.accept_invitation(BOB, space.id)).role is Role.SPEAKER


async def test_a_banned_person_is_refused_by_every_link(stage: Stage) -> None:
    c, space = stage.control, stage.space
    link = await c.create_invite_link(HOST, space.id, Role.SPEAKER, max_uses=10)
    await c.join_with_invite_link(BOB, space.id, link.id)
    await c.ban(HOST, space.id, BOB.user_id)
    await refused("banned", c.join_with_invite_link(BOB, space.id, link.id))


async def test_co_host_links_are_the_hosts_and_a_co_hosts_links_end_with_their_role(
    stage: Stage,
) -> None:
    c, space = stage.control, stage.space
    await c.add_cohost(HOST, space.id, COHOST.user_id, COHOST.display_name)
    await refused("not_host", c.create_invite_link(COHOST, space.id, Role.COHOST))
    hosts = await c.create_invite_link(HOST, space.id, Role.COHOST)
    await refused("not_host", c.revoke_invite_link(COHOST, space.id, hosts.id))
    await refused("not_moderator", c.create_invite_link(ANN, space.id, Role.SPEAKER))
    await refused("not_moderator", c.invite_links(ANN, space.id))
    coles = await c.create_invite_link(COHOST, space.id, Role.SPEAKER, max_uses=3)
    await c.join_with_invite_link(ANN, space.id, coles.id)
    await c.remove_cohost(HOST, space.id, COHOST.user_id)  # Cole is a speaker now
    await refused("invite_link_withdrawn", c.join_with_invite_link(BOB, space.id, coles.id))
    states = {link.id: state for link, state in await c.invite_links(HOST, space.id)}
    assert states == {coles.id: LinkState.WITHDRAWN, hosts.id: LinkState.OPEN}
    # A speaker opening the host's co-host link is made a co-host.
    assert (await c.join_with_invite_link(ANN, space.id, hosts.id)).role is Role.COHOST


async def test_the_host_chooses_uses_and_lifetime_within_bounds(stage: Stage) -> None:
    c, space = stage.control, stage.space
    await refused("bad_max_uses", c.create_invite_link(HOST, space.id, Role.SPEAKER, max_uses=0))
    await refused("bad_max_uses", c.create_invite_link(HOST, space.id, Role.SPEAKER, max_uses=101))
    await refused("bad_expiry", c.create_invite_link(HOST, space.id, Role.SPEAKER, ttl_s=60))
    await refused("bad_expiry", c.create_invite_link(HOST, space.id, Role.SPEAKER, ttl_s=8 * 86400))
    for _ in range(50):
        await c.create_invite_link(HOST, space.id, Role.SPEAKER)
    await refused("too_many_invite_links", c.create_invite_link(HOST, space.id, Role.SPEAKER))
