"""Following a roster from events: what the events cannot say asks for a fresh read."""

from __future__ import annotations

from typing import Any

import pytest

from townhall.spaces.model import Role, Roster, Space, SpaceId, StageMember, UserId
from townhall.spaces.roster import follow
from townhall.state.live import Event

SPACE = Space(SpaceId("abcdefghij"), "Followed", UserId("u-host00000000"), 1.0)
HOST = StageMember(SPACE.id, SPACE.host_id, Role.HOST, "Hana", 1.0)
ROSTER = Roster(SPACE, (HOST,), frozenset(), frozenset())


def event(seq: int, type: str, **data: Any) -> Event:
    return Event(seq, type, 1.0, {"space_id": SPACE.id, **data})


def test_hands_and_bans_follow_and_a_banned_hand_goes_down() -> None:
    user = UserId("g-fan000000000")
    raised = follow(ROSTER, [event(1, "hand.raised", user_id=user, display_name="Fan")])
    assert raised is not None
    assert raised.hands == {user}
    banned = follow(raised, [event(2, "user.banned", user_id=user, by=HOST.user_id)])
    assert banned is not None
    assert banned.banned == {user}
    assert banned.hands == frozenset()


@pytest.mark.parametrize("type", ["space.state", "space.created", "host.transferred", "new.kind"])
def test_what_only_the_records_know_in_full_asks_for_a_fresh_read(type: str) -> None:
    assert follow(ROSTER, [event(1, type, state="live")]) is None


@pytest.mark.parametrize(
    "data",
    [{}, {"member": {"user_id": "u-x", "role": "listener"}}, {"member": "not a seat"}],
)
def test_an_event_not_as_expected_asks_for_a_fresh_read(data: dict[str, Any]) -> None:
    assert follow(ROSTER, [event(1, "stage.joined", **data)]) is None


def test_a_new_start_time_follows_and_a_change_of_visibility_asks_for_a_fresh_read() -> None:
    edit = {"title": "Moved", "description": "", "visibility": "public"}
    moved = follow(ROSTER, [event(1, "space.edited", scheduled_start=5_000.0, **edit)])
    assert moved is not None
    assert (moved.space.title, moved.space.scheduled_start) == ("Moved", 5_000.0)
    private = {**edit, "visibility": "private"}
    assert follow(ROSTER, [event(1, "space.edited", scheduled_start=None, **private)]) is None
