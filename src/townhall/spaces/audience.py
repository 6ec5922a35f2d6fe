"""The host's audience list: who of those present (by name) is in the audience, searched and paged.

Theory of operation. The live state holds, per Space, the people with an identity (account or
guest) seen listening in the last minute, at most `state.live.AUDIENCE_KEPT` of them (a presence
beacon, a reaction or a raised hand marks them; beacons are sampled at large audiences, so the list
is then a sample). This module turns that set and the Space's roster into one page:

* the stage is left out (it has its own list), the banned stay in, marked, so a host sees that a
  banned person is still listening to the public stream;
* a search matches when every word of the query appears in the name, compared case- and
  accent-insensitively ("zoe" finds "Zoë Adams", "ADA zo" too);
* the order is by name (then user id), and a page's cursor is the last (name, id) it showed, so
  paging stays consistent while people come and go: nobody is shown twice, and nobody present
  throughout is skipped.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import functools
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from townhall.spaces.model import Roster, UserId, is_guest
from townhall.state.live import AUDIENCE_KEPT, Present

PAGE_SIZE = 50
QUERY_MAX = 40  # a display name has at most 40 characters (api/identity.py)


class BadCursor(ValueError):
    """A cursor this module did not write."""


@dataclass(frozen=True)
class Listener:
    user_id: UserId
    display_name: str
    guest: bool
    seen: float  # UNIX seconds
    hand_raised: bool
    banned: bool


@dataclass(frozen=True)
class AudiencePage:
    people: tuple[Listener, ...]
    matching: int  # how many of those present match the search (all pages)
    next_cursor: str | None  # None on the last page


# Every request folds every name present (up to AUDIENCE_KEPT), the same names each time: that was
# over a third of the list's own work (py-spy); remembered, it is a dictionary lookup per name.
@functools.lru_cache(maxsize=4 * AUDIENCE_KEPT)
def fold(text: str) -> str:
    """Case- and accent-insensitive form of a name or a query, for matching and ordering."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _encode(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode("\0".join(key).encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor(cursor) from None
    name, sep, user = raw.partition("\0")
    if not sep:
        raise BadCursor(cursor)
    return name, user


def audience_page(
    present: Iterable[Present],
    roster: Roster,
    query: str = "",
    cursor: str | None = None,
    size: int = PAGE_SIZE,
) -> AudiencePage:
    """One page of the audience present; raises BadCursor for a cursor it did not write."""
    after = _decode(cursor) if cursor else None
    words = fold(query).split()
    on_stage = {m.user_id for m in roster.stage}
    keyed: list[tuple[tuple[str, str], Present]] = []
    for person in present:
        name = fold(person.display_name)
        if person.user_id in on_stage or not all(w in name for w in words):
            continue
        keyed.append(((name, person.user_id), person))
    keyed.sort(key=lambda pair: pair[0])
    rest = [pair for pair in keyed if after is None or pair[0] > after]
    shown = rest[:size]
    people = tuple(
        Listener(
            user_id=UserId(p.user_id),
            display_name=p.display_name,
            guest=is_guest(UserId(p.user_id)),
            seen=p.seen,
            hand_raised=UserId(p.user_id) in roster.hands,
            banned=UserId(p.user_id) in roster.banned,
        )
        for _, p in shown
    )
    more = len(rest) > size
    return AudiencePage(people, len(keyed), _encode(shown[-1][0]) if more else None)
