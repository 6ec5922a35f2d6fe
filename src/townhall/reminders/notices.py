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
from urllib.parse import quote

from townhall.state.schema import NoticeKind

__all__ = ["Written", "when", "write"]

SOON_MINUTES = 10  # the optional warning before the start (reminders/sender.py queues it)
# A private Space's notice to someone whose invite code is no longer the Space's.
REPLACED = (
    "The invite link you asked with no longer opens this private Space: "
    "ask the host for the new one."
)


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


def write(
    kind: NoticeKind, data: Mapping[str, Any], base_url: str, code: str | None = None
) -> Written:
    """The subject and plain-text body of one notice about the Space in `data`. `code`: the
    private Space's invite code this reader's links carry (state/reminder_links.py decides). A
    private Space's notice without one carries no link, which would only lead to "Not found",
    and says why."""
    title = _one_line(str(data.get("title", "")))
    space = str(data["id"])
    query = f"?code={quote(code, safe='')}" if code else ""
    listen = f"{base_url}/s/{space}{query}"
    calendar = f"{base_url}/api/spaces/{space}/calendar.ics{query}"
    start = data.get("scheduled_start")
    if kind is NoticeKind.STARTING:
        subject = f"Live now: {title}"
        lines = [f"“{title}” is on air now."]
        links = [f"Listen: {listen}"]
    elif kind is NoticeKind.SOON:
        subject = f"In {SOON_MINUTES} minutes: {title}"
        lines = [f"“{title}” starts in {SOON_MINUTES} minutes, at {when(start)}."]
        links = [f"Listen: {listen}"]
    elif kind is NoticeKind.CHANGED:
        subject = f"New time: {title}"
        lines = [
            f"“{title}” has moved to {when(start)}.",
            f"It was to start {when(data.get('before'))}.",
        ]
        links = [f"The Space: {listen}", f"Update your calendar: {calendar}"]
    else:
        subject = f"Cancelled: {title}"
        lines = [f"“{title}”, planned for {when(start)}, has been cancelled."]
        links = []
    if links and not code and data.get("visibility") == "private":
        links = [REPLACED]
    if links:
        lines += ["", *links]
    return Written(subject, "\n".join(lines) + "\n", listen)
