"""What a reminder mail says, written from the mail's data alone (sans-I/O: no clock, no server).

Times are written in UTC with the weekday, as a person reads them; the links lead to the Space's
page, which shows the time in the reader's own zone, and to its calendar entry.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from townhall.state.schema import NoticeKind

__all__ = ["Written", "when", "write"]

SOON_MINUTES = 10  # the optional warning before the start (reminders/sender.py queues it)


@dataclass(frozen=True)
class Written:
    subject: str
    text: str
    url: str  # the Space's page: where a click on the notice leads

    @property
    def headline(self) -> str:
        """The first sentence: the body of a push notification, where there is room for one."""
        return self.text.split("\n", 1)[0]


def when(at: float | None) -> str:
    """ "Saturday 5 December 2026, 18:00 UTC" (or "no time set")."""
    if at is None:
        return "no time set"
    t = time.gmtime(at)
    return f"{time.strftime('%A', t)} {t.tm_mday} {time.strftime('%B %Y, %H:%M', t)} UTC"


def _one_line(value: str) -> str:
    """A title may hold line breaks; a mail header may not (they would start a new header)."""
    return re.sub(r"\s+", " ", value).strip()


def write(kind: NoticeKind, data: Mapping[str, Any], base_url: str) -> Written:
    """The subject and plain-text body of one notice about the Space in `data`."""
    title = _one_line(str(data.get("title", "")))
    space = str(data["id"])
    listen = f"{base_url}/s/{space}"
    calendar = f"{base_url}/api/spaces/{space}/calendar.ics"
    start = data.get("scheduled_start")
    if kind is NoticeKind.STARTING:
        subject = f"Live now: {title}"
        lines = [f"“{title}” is on air now.", "", f"Listen: {listen}"]
    elif kind is NoticeKind.SOON:
        subject = f"In {SOON_MINUTES} minutes: {title}"
        lines = [
            f"“{title}” starts in {SOON_MINUTES} minutes, at {when(start)}.",
            "",
            f"Listen: {listen}",
        ]
    elif kind is NoticeKind.CHANGED:
        subject = f"New time: {title}"
        lines = [
            f"“{title}” has moved to {when(start)}.",
            f"It was to start {when(data.get('before'))}.",
            "",
            f"The Space: {listen}",
            f"Update your calendar: {calendar}",
        ]
    else:
        subject = f"Cancelled: {title}"
        lines = [f"“{title}”, planned for {when(start)}, has been cancelled."]
    return Written(subject, "\n".join(lines) + "\n", listen)
