"""Invite links as records: what a link is, its bounds, whether it still seats anyone, and why not.

A stage invite link (`…/stage#invite=TOKEN`) names one record. The token is signed (api/tokens.py)
so a forged or mangled id is refused without a database read; everything that makes a link valid
lives in the record and is checked, and a use counted, in the same transaction that seats the
person (state/invite_links.py), so that two people opening a one-use link at once never both get
the seat.

Theory of operation — the rule, exactly:

* A link seats whoever opens it as its role (speaker, or co-host for links the host made) while it
  is **open**: not revoked, not expired, uses left, and its creator can still make such a link (a
  speaker link's creator is the host or a co-host, a co-host link's creator is the host). A link
  works on its creator's authority: when that ends (they left the stage, were moved off, removed,
  banned, stepped down, or handed the host role over) their links stop seating anyone.
* A **use** is one person seated by the link. Opening it again — already on the stage, or after
  leaving the stage on one's own — costs no use and needs no uses left (but the link must still be
  open otherwise).
* **Taken off by a moderator, kept off links.** Someone a host or co-host moved to the audience or
  removed from the Space cannot seat themselves with any invite link of that Space, old or new,
  until a host or co-host seats them directly: accepting their raised hand (one click), a direct
  invitation they accept, or making them a co-host. That clears the bar. Leaving the stage on
  one's own sets no bar. Someone banned is refused by every link for good (the ban is the bar).

Pure: values, bounds and sentences; no I/O.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from typing import NewType

from townhall.spaces import rules
from townhall.spaces.model import Role, SpaceId, UserId
from townhall.spaces.rules import Action

InviteLinkId = NewType("InviteLinkId", str)

# The host chooses a link's uses and lifetime within these bounds; one use and a day by default
# (a link is usually for one guest, for today's Space).
USES_DEFAULT = 1
USES_MAX = 100
TTL_DEFAULT_S = 24 * 3600
TTL_MIN_S = 5 * 60
TTL_MAX_S = 7 * 86400
# Bounded per Space: links that may still seat someone (creating more is refused), and how many
# the list shows (newest first).
OPEN_MAX = 50
LISTED_MAX = 200

LINK_ID_LENGTH = 16  # secrets.token_urlsafe(12)
LINK_ID_PATTERN = r"^[A-Za-z0-9_-]{16}$"
ROLES = (Role.SPEAKER, Role.COHOST)


def new_link_id() -> InviteLinkId:
    return InviteLinkId(secrets.token_urlsafe(12))


class LinkState(enum.StrEnum):
    """Where a link stands, as the host's list shows it."""

    OPEN = "open"
    USED_UP = "used_up"
    EXPIRED = "expired"
    REVOKED = "revoked"
    WITHDRAWN = "withdrawn"  # its creator can no longer make such a link


@dataclass(frozen=True)
class LinkUse:
    user_id: UserId
    display_name: str
    at: float


@dataclass(frozen=True)
class InviteLink:
    id: InviteLinkId
    space_id: SpaceId
    role: Role  # SPEAKER or COHOST
    max_uses: int
    uses: int
    created_by: UserId
    created_by_name: str
    created_at: float
    expires_at: float
    revoked_at: float | None = None
    used_by: tuple[LinkUse, ...] = ()  # who it seated, first first

    @property
    def remaining(self) -> int:
        return max(0, self.max_uses - self.uses)

    def state(self, now: float, creator_role: Role) -> LinkState:
        """Revoked and expired first (final); then withdrawn; used up last (a use may be freed by
        nothing, but the other three say more)."""
        if self.revoked_at is not None:
            return LinkState.REVOKED
        if now >= self.expires_at:
            return LinkState.EXPIRED
        if not may_make(creator_role, self.role):
            return LinkState.WITHDRAWN
        if self.remaining == 0:
            return LinkState.USED_UP
        return LinkState.OPEN


def link_action(link_role: Role) -> Action:
    """What making, or revoking, a link for `link_role` is, for the rules."""
    return Action.COHOST_LINKS if link_role is Role.COHOST else Action.SPEAKER_LINKS


def may_make(creator: Role, link_role: Role) -> bool:
    """Whether someone in role `creator` may make (and so keep open) a link for `link_role`
    (rules.py: the host any, a co-host speaker links only)."""
    return rules.decide(creator, link_action(link_role)).allowed


# Why a link did not seat someone: the code the API answers with, and the sentence a person reads.
class Refusal(enum.StrEnum):
    UNKNOWN = "invite_link_unknown"
    REVOKED = "invite_link_revoked"
    EXPIRED = "invite_link_expired"
    USED_UP = "invite_link_used_up"
    WITHDRAWN = "invite_link_withdrawn"
    BARRED = "invite_link_barred"


REFUSAL_SENTENCES: dict[Refusal, str] = {
    Refusal.UNKNOWN: "This invite link is not valid. Ask the host for a new one.",
    Refusal.REVOKED: "This invite link was withdrawn by the host. Ask the host for a new one.",
    Refusal.EXPIRED: "This invite link has expired. Ask the host for a new one.",
    Refusal.USED_UP: "This invite link has been used as many times as the host allowed. "
    "Ask the host for a new one.",
    Refusal.WITHDRAWN: "The person who made this invite link can no longer invite to this stage. "
    "Ask the host for a new one.",
    Refusal.BARRED: "A host took you off this stage, so invite links no longer seat you here. "
    "Raise your hand to ask to come back.",
}

STATE_REFUSALS: dict[LinkState, Refusal] = {
    LinkState.REVOKED: Refusal.REVOKED,
    LinkState.EXPIRED: Refusal.EXPIRED,
    LinkState.WITHDRAWN: Refusal.WITHDRAWN,
    LinkState.USED_UP: Refusal.USED_UP,
}
