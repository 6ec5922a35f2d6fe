"""The errors the durable records raise on purpose (records.py and webhook_outbox.py).

A database failure surfaces as SQLAlchemy's own exception, not as one of these::

    RecordsError
     ├── NotFound        no such Space / stage member / webhook delivery to change
     ├── Conflict        the record exists already, or changed under us (compare-and-set lost)
     │    └── UsernameTaken   another account has this username (compared lower-case)
     ├── StageFull       the role's seats (StageLimits) are all taken
     └── Banned          the user is banned from this Space
"""

from __future__ import annotations

__all__ = ["Banned", "Conflict", "NotFound", "RecordsError", "StageFull", "UsernameTaken"]


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
