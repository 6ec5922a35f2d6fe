"""Add to calendar: a Space as an iCalendar event (RFC 5545), one per Space and a host's feed.

Written with `icalendar`. An event's UID is the Space's id at this server's host, so a calendar
that imported a Space's `.ics` or subscribed to its host's feed updates the same entry when the
start time moves, and shows it cancelled (STATUS:CANCELLED) when it is called off. SEQUENCE must
grow for a calendar to take a newer copy over the one it has (RFC 5546 §2.1.4); the records keep
no count of a Space's changes, so it is the minute the file was made, which only grows: the
newest copy always wins.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Final
from urllib.parse import quote, urlsplit

import icalendar

from townhall.spaces.model import Space, SpaceState

__all__ = ["DEFAULT_LENGTH_S", "calendar_of"]

# A Space has no planned end; calendars need one. An hour is what most are.
DEFAULT_LENGTH_S: Final = 3600.0
PRODID: Final = "-//townhall//Spaces//EN"


def _utc(at: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(at, datetime.UTC)


def _event(space: Space, base_url: str, now: float, code: str | None) -> icalendar.Event:
    host = urlsplit(base_url).hostname or "townhall"
    start = space.scheduled_start or space.started_at or space.created_at
    end = space.ended_at if space.state is SpaceState.ENDED and space.ended_at else None
    event = icalendar.Event()
    event.add("uid", f"{space.id}@{host}")
    event.add("dtstamp", _utc(now))
    event.add("dtstart", _utc(start))
    event.add("dtend", _utc(end if end is not None and end > start else start + DEFAULT_LENGTH_S))
    event.add("summary", space.title)
    listen = f"{base_url}/s/{space.id}" + (f"?code={quote(code, safe='')}" if code else "")
    event.add("description", f"{space.description}\n\n{listen}".strip())
    event.add("url", listen)
    event.add("location", listen)
    event.add("status", "CANCELLED" if space.state is SpaceState.CANCELLED else "CONFIRMED")
    event.add("sequence", int(now // 60))
    return event


def calendar_of(
    spaces: Iterable[Space], base_url: str, now: float, *, name: str, code: str | None = None
) -> bytes:
    """An iCalendar file with one event per Space; `name` is the calendar's display name. `code`:
    the private Space's invite code its links carry (the caller showed it to get the file; a
    link without it would open "Not found")."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", name)
    for space in spaces:
        calendar.add_component(_event(space, base_url.rstrip("/"), now, code))
    data: bytes = calendar.to_ical()
    return data
