"""Which invite code a reminder's link may carry: the capability of a private Space, in the mail
and push that remind a person of it, decided when the notice is sent.

Theory of operation. A private Space opens only with its current invite code (spaces/control.py),
so a reminder whose link lacks it leads to "Not found". The code goes only to those it was
already given: "Remind me" keeps the code the person showed (`ReminderRow.invite_code`; they asked
from a page the code opened). When a notice is claimed for sending — every attempt, retries too —
its link carries that code if, and only if, the Space is still private and the code is still the
Space's own. So:

* nobody learns a code they never held (the code is never copied into a queued notice's data);
* after the host replaces the invite link (`rotate_invite`, to shut someone out), no reminder
  hands out the new code to anyone who held only the old one, and none sends the dead old one:
  the notice says the link changed instead (reminders/notices.py);
* a Space made private after someone asked (they showed no code) gets no code either.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute

from townhall.spaces.model import Visibility
from townhall.state.schema import ReminderRow, SpaceRow

__all__ = ["reminder_code"]


def reminder_code(
    space_id: InstrumentedAttribute[str], user_id: InstrumentedAttribute[str]
) -> sa.ScalarSelect[str | None]:
    """A column for a claim query of an outbox row (its `space_id` and `user_id` columns): the
    invite code its link may carry, or NULL (see the module docstring)."""
    return (
        sa.select(ReminderRow.invite_code)
        .join(SpaceRow, SpaceRow.id == ReminderRow.space_id)
        .where(
            ReminderRow.space_id == space_id,
            ReminderRow.user_id == user_id,
            SpaceRow.visibility == Visibility.PRIVATE,
            SpaceRow.invite_code == ReminderRow.invite_code,
        )
        .scalar_subquery()
    )
