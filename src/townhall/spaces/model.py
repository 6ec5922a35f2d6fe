"""The control plane's records as frozen values: Spaces, accounts, stage members, bans, hands.

Every module that crosses a boundary (store, rules, API) speaks these types; plain dicts do not
travel between modules. Ids are typed so that a user id cannot be passed where a Space id goes.
"""

from __future__ import annotations

import enum
import re
import secrets
from collections.abc import Set
from dataclasses import dataclass, replace
from typing import NewType

SpaceId = NewType("SpaceId", str)
UserId = NewType("UserId", str)

SPACE_ID_RE = re.compile(r"^[a-z0-9]{10}$")
USER_ID_RE = re.compile(r"^[ug]-[a-z0-9]{12}$")  # u- accounts, g- guests
TITLE_MAX = 120
DESCRIPTION_MAX = 2_000
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def _random_id(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_space_id() -> SpaceId:
    return SpaceId(_random_id(10))


def new_account_id() -> UserId:
    return UserId(f"u-{_random_id(12)}")


def new_guest_id() -> UserId:
    return UserId(f"g-{_random_id(12)}")


def is_space_id(value: str) -> bool:
    return SPACE_ID_RE.fullmatch(value) is not None


def is_user_id(value: str) -> bool:
    return USER_ID_RE.fullmatch(value) is not None


def is_guest(user: UserId) -> bool:
    return user.startswith("g-")


class SpaceState(enum.StrEnum):
    """scheduled → green_room → live → ended; scheduled/green_room → cancelled (see lifecycle.py)."""

    SCHEDULED = "scheduled"
    GREEN_ROOM = "green_room"
    LIVE = "live"
    ENDED = "ended"
    CANCELLED = "cancelled"

    @property
    def is_over(self) -> bool:
        return self in (SpaceState.ENDED, SpaceState.CANCELLED)


class Visibility(enum.StrEnum):
    PUBLIC = "public"  # listed on the home page
    UNLISTED = "unlisted"  # anyone with the link
    PRIVATE = "private"  # only with an invite link (carries the Space's invite code)


class Role(enum.StrEnum):
    """A person's place in one Space. Ordered by authority: host > cohost > speaker > listener."""

    HOST = "host"
    COHOST = "cohost"
    SPEAKER = "speaker"
    LISTENER = "listener"

    @property
    def on_stage(self) -> bool:
        return self is not Role.LISTENER


class IllegalTransition(Exception):
    """A lifecycle change that the Space's current state does not allow."""


@dataclass(frozen=True)
class StageLimits:
    max_cohosts: int = 2
    max_speakers: int = 10


@dataclass(frozen=True)
class Space:
    id: SpaceId
    title: str
    host_id: UserId
    created_at: float
    state: SpaceState = SpaceState.GREEN_ROOM
    description: str = ""
    visibility: Visibility = Visibility.PUBLIC
    invite_code: str = ""  # secret part of a private Space's invite link
    scheduled_start: float | None = None  # UNIX seconds, for scheduled Spaces
    started_at: float | None = None  # went live
    ended_at: float | None = None
    record: bool = False
    captions: bool = False  # live captions (the host's choice; the server must allow them)
    limits: StageLimits = StageLimits()
    delay_s: float = 0.0  # broadcast delay on the listener program, 0–30 s
    pinned_link: str | None = None

    def with_state(self, state: SpaceState, now: float) -> Space:
        started = now if state is SpaceState.LIVE and self.started_at is None else self.started_at
        ended = now if state.is_over else self.ended_at
        return replace(self, state=state, started_at=started, ended_at=ended)

    # Kept for the audio-path code that ends a Space directly; lifecycle.py owns the full table.
    def ended(self, now: float) -> Space:
        if self.state.is_over:
            raise IllegalTransition(f"Space {self.id} is {self.state}, it cannot end")
        return self.with_state(SpaceState.ENDED, now)


@dataclass(frozen=True)
class Account:
    id: UserId
    username: str  # unique, lower-case, 3–32 of [a-z0-9_]
    display_name: str
    password_hash: str  # argon2id
    created_at: float


@dataclass(frozen=True)
class StageMember:
    space_id: SpaceId
    user_id: UserId
    role: Role  # never LISTENER: listeners are not stored
    display_name: str
    joined_at: float
    muted_by_host: bool = False  # only the member can clear this, by unmuting themselves
    self_muted: bool = False


@dataclass(frozen=True)
class Ban:
    space_id: SpaceId
    user_id: UserId
    banned_by: UserId
    at: float


@dataclass(frozen=True)
class RaisedHand:
    space_id: SpaceId
    user_id: UserId
    display_name: str
    raised_at: float


@dataclass(frozen=True)
class Standing:
    """A Space and where one person stands in it (and, for a command on someone, the target)."""

    space: Space
    member: StageMember | None  # their seat on the stage; None for a listener
    banned: bool
    hand_raised: bool
    target: StageMember | None = None  # the target's seat (the same as `member` for oneself)

    @property
    def role(self) -> Role:
        return self.member.role if self.member is not None else Role.LISTENER


@dataclass(frozen=True)
class Roster:
    """A Space and everyone in it who is not simply in the audience: the stage, the banned and
    those with a hand up. Small next to the audience, and enough to answer `standing` for anyone."""

    space: Space
    stage: tuple[StageMember, ...]  # display order: host, co-hosts, speakers
    banned: frozenset[UserId]
    hands: Set[UserId]  # a frozenset when read, a HandSet once followed (spaces/hands.py)

    def seat(self, user: UserId) -> StageMember | None:
        return next((m for m in self.stage if m.user_id == user), None)

    def standing(self, user: UserId | None, target: UserId | None = None) -> Standing:
        """Where `user` (None: an anonymous listener) and `target` stand in this Space."""
        return Standing(
            space=self.space,
            member=self.seat(user) if user is not None else None,
            banned=user in self.banned,
            hand_raised=user in self.hands,
            target=self.seat(target) if target is not None else None,
        )
