"""The audience list's paging and search, without a store: spaces/audience.py."""

from __future__ import annotations

import pytest

from townhall.spaces.audience import BadCursor, audience_page, fold
from townhall.spaces.model import (
    Role,
    Roster,
    Space,
    SpaceId,
    SpaceState,
    StageMember,
    UserId,
)
from townhall.state.live import Present

SPACE = SpaceId("sp_townhall")


def roster(
    stage: tuple[str, ...] = (), hands: tuple[str, ...] = (), banned: tuple[str, ...] = ()
) -> Roster:
    space = Space(SPACE, "Town hall", UserId("u-host00000000"), 0.0, SpaceState.LIVE)
    members = tuple(StageMember(SPACE, UserId(u), Role.SPEAKER, u, 0.0) for u in stage)
    return Roster(space, members, frozenset(map(UserId, banned)), frozenset(map(UserId, hands)))


def test_names_fold_case_and_accents() -> None:
    assert fold("Zoë ÅSA") == fold("zoe asa")
    assert fold("Straße") == fold("STRASSE")


def test_the_stage_is_left_out_and_hands_and_bans_are_marked() -> None:
    present = [Present("u-a", "Ann", 3.0), Present("u-b", "Ben", 2.0), Present("u-c", "Cy", 1.0)]
    page = audience_page(present, roster(stage=("u-a",), hands=("u-b",), banned=("u-c",)))
    assert [(p.display_name, p.hand_raised, p.banned) for p in page.people] == [
        ("Ben", True, False),
        ("Cy", False, True),
    ]
    assert page.matching == 2
    assert page.next_cursor is None


def test_pages_follow_the_names_whoever_arrives_meanwhile() -> None:
    present = [Present(f"g-{n}", f"Name {n:02d}", float(n)) for n in range(7)]
    first = audience_page(present, roster(), size=3)
    assert [p.display_name for p in first.people] == ["Name 00", "Name 01", "Name 02"]
    present.append(Present("g-x", "Name 00a", 9.0))  # sorts before the cursor: not repeated
    second = audience_page(present, roster(), cursor=first.next_cursor, size=3)
    assert [p.display_name for p in second.people] == ["Name 03", "Name 04", "Name 05"]
    third = audience_page(present, roster(), cursor=second.next_cursor, size=3)
    assert [p.display_name for p in third.people] == ["Name 06"]
    assert third.next_cursor is None


@pytest.mark.parametrize("cursor", ["%%%", "bm9zZXA", "//8"])
def test_a_cursor_it_did_not_write_is_refused(cursor: str) -> None:
    with pytest.raises(BadCursor):
        audience_page([], roster(), cursor=cursor)
