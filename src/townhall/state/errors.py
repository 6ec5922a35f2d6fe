"""The errors the durable records raise on purpose (records.py and webhook_outbox.py).

A database failure surfaces as SQLAlchemy's own exception, not as one of these::

    RecordsError
     ├── NotFound        no such Space / stage member / webhook delivery to change
     ├── Conflict        the record exists already, or changed under us (compare-and-set lost)
     │    └── UsernameTaken   another account has this username (compared lower-case)
     ├── StageFull       the role's seats (StageLimits) are all taken
     ├── Banned          the user is banned from this Space
     ├── LinkRefused     an invite link does not seat this person now (it says why)
     └── TooManyLinks    a Space has as many open invite links as allowed
"""

from __future__ import annotations

from townhall.spaces.invite_links import Refusal

__all__ = [
    "Banned",
    "Conflict",
    "LinkRefused",
    "NotFound",
    "RecordsError",
    "StageFull",
    "TooManyLinks",
    "UsernameTaken",
]


class RecordsError(Exception):
    """Base of every error the records raise on purpose."""


class NotFound(RecordsError):
    """The Space, stage member or webhook delivery to change does not exist."""


class Conflict(RecordsError):
    """The record already exists, or it changed since the caller read it."""


class UsernameTaken(Conflict):
    """Another account has this username (usernames are unique ignoring case)."""


class StageFull(RecordsError):
    """Every seat of the requested stage role is taken (see StageLimits)."""


class Banned(RecordsError):
    """The user is banned from this Space: no seat on its stage, no raised hand, no invitation."""


class LinkRefused(RecordsError):
    """An invite link does not seat this person now; `refusal` says why (spaces/invite_links.py)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.value)
        self.refusal = refusal


class TooManyLinks(RecordsError):
    """The Space has as many invite links that may still seat someone as allowed."""
