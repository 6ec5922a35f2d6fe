"""A Space as a record: identity, title, lifecycle state.

Theory of operation: a Space is created live (scheduling and the green room come with the control
plane) and ends once; `end` is the only transition, and ending twice is an error the caller sees.
"""

from __future__ import annotations

import enum
import re
import secrets
from dataclasses import dataclass, replace
from typing import NewType

SpaceId = NewType("SpaceId", str)

SPACE_ID_RE = re.compile(r"^[a-z0-9]{10}$")
TITLE_MAX = 120


class SpaceState(enum.StrEnum):
    LIVE = "live"
    ENDED = "ended"


class IllegalTransition(Exception):
    """A lifecycle change that the Space's current state does not allow."""


def new_space_id() -> SpaceId:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return SpaceId("".join(secrets.choice(alphabet) for _ in range(10)))


def is_space_id(value: str) -> bool:
    return SPACE_ID_RE.fullmatch(value) is not None


@dataclass(frozen=True)
class Space:
    id: SpaceId
    title: str
    host_id: str
    created_at: float
    state: SpaceState = SpaceState.LIVE
    ended_at: float | None = None

    def ended(self, now: float) -> Space:
        if self.state is not SpaceState.LIVE:
            raise IllegalTransition(f"Space {self.id} is {self.state}, it cannot end")
        return replace(self, state=SpaceState.ENDED, ended_at=now)
