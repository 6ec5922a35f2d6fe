"""Bring a Space's roster up to date from the events appended since it was read.

A process keeps the rosters of the Spaces it serves (spaces/control.py, `SpaceControl.roster`)
and must not answer from one that the log has moved past. Reading the whole roster again after
every event would cost a busy Space (hands going up and down many times a second, thousands of
them raised) a database read per event; instead the events since the roster's position are
applied to it here. Each event carries the state it set (a member's seat and flags, a user id),
which is exactly what the roster holds. Events that change what only the records know in full
(a Space's state and its times, a host hand-over, which seats a Space has) answer None: read the
roster again.

Pure: no I/O, tested without a store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from townhall.spaces.hands import HandSet
from townhall.spaces.model import Role, Roster, SpaceId, StageMember, UserId
from townhall.state.live import Event

# Events that change nothing a roster holds.
_NOTHING = frozenset(
    {"delay.dumped", "stage.invited", "invite_link.created", "invite_link.revoked"}
)
_RANK = {Role.HOST: 0, Role.COHOST: 1}


def follow(roster: Roster, events: Iterable[Event]) -> Roster | None:
    """`roster` with `events` applied in order, or None if one of them needs a fresh read."""
    for event in events:
        try:
            moved = _apply(roster, event.type, event.data)
        except (KeyError, TypeError, ValueError):
            return None  # not as this module knows it: the records know better
        if moved is None:
            return None
        roster = moved
    return roster


def _apply(roster: Roster, type: str, data: Mapping[str, Any]) -> Roster | None:
    if type in _NOTHING:
        return roster
    if type == "hand.raised":
        return replace(roster, hands=HandSet.of(roster.hands).plus(UserId(data["user_id"])))
    if type in ("hand.lowered", "hand.declined"):
        return replace(roster, hands=HandSet.of(roster.hands).minus(UserId(data["user_id"])))
    if type in ("stage.joined", "stage.role", "stage.muted"):
        member = _member(roster.space.id, data["member"])
        seated = _ordered([m for m in roster.stage if m.user_id != member.user_id] + [member])
        if type == "stage.muted":
            return replace(roster, stage=seated)
        seated_hands = HandSet.of(roster.hands).minus(member.user_id)
        return replace(roster, stage=seated, hands=seated_hands)  # seated: no longer waiting
    if type in ("stage.left", "user.removed", "user.banned"):
        user = UserId(data["user_id"])
        left = replace(
            roster,
            stage=tuple(m for m in roster.stage if m.user_id != user),
            hands=roster.hands if type == "stage.left" else HandSet.of(roster.hands).minus(user),
        )
        return replace(left, banned=left.banned | {user}) if type == "user.banned" else left
    if type == "delay.set":
        return replace(roster, space=replace(roster.space, delay_s=float(data["delay_s"])))
    if type == "space.pinned":
        url = data["url"]
        return replace(roster, space=replace(roster.space, pinned_link=str(url) if url else None))
    if type == "space.edited":
        if data.get("visibility", roster.space.visibility.value) != roster.space.visibility:
            return None  # a Space made private has an invite code the event does not carry
        start = data.get("scheduled_start", roster.space.scheduled_start)
        edited = replace(
            roster.space,
            title=str(data["title"]),
            description=str(data["description"]),
            scheduled_start=float(start) if start is not None else None,
        )
        return replace(roster, space=edited)
    return None  # space.created, space.state, host.transferred, and whatever comes later


def _member(space_id: SpaceId, raw: Mapping[str, Any]) -> StageMember:
    role = Role(raw["role"])
    if not role.on_stage:
        raise ValueError(f"a seat is not for a {role}")
    return StageMember(
        space_id,
        UserId(raw["user_id"]),
        role,
        str(raw["display_name"]),
        float(raw["joined_at"]),
        muted_by_host=bool(raw["muted_by_host"]),
        self_muted=bool(raw["self_muted"]),
    )


def _ordered(stage: Iterable[StageMember]) -> tuple[StageMember, ...]:
    """Display order, as the records give it: host, co-hosts, speakers; then who joined first."""
    return tuple(sorted(stage, key=lambda m: (_RANK.get(m.role, 2), m.joined_at, m.user_id)))
