"""The LiveState contract: what every implementation (embedded, Redis) must do, and nothing more.

Theory of operation. Each Space has an ordered event log: `append` assigns the next sequence number
(1, 2, 3, … per Space, never reused, never out of order, even with many writers) and keeps the most
recent `EVENT_LOG_LIMIT` events. A stage client that reconnects asks for `events_since(seq)`; if the
events it missed are no longer held (or the log was lost, e.g. the embedded store restarted) it gets
`None` and must re-fetch the full state, then continue from `latest_seq`. `wait_for_events` blocks
until the log passes a sequence number or a timeout; that is how WebSocket handlers on any process
learn of new events without polling. Event data travels as JSON in every implementation (tuples come
back as lists, keys as strings), so what works on one box works on many.

Reactions are counted per (Space, whole second, emoji) and held for the last `REACTION_RETENTION_S`
seconds. The listener count is approximate: distinct listener keys marked in the last
`LISTENER_WINDOW_S` seconds, counted with HyperLogLog (about 0.8 % standard error). The window slides
in steps of `LISTENER_BUCKET_S`, so a listener stops counting between `LISTENER_WINDOW_S` and
`LISTENER_WINDOW_S + LISTENER_BUCKET_S` seconds after their last mark. Speaking flags are whatever the
media node last published. Counters expire by themselves: nothing here grows without bound.

Who is present, by name: a beacon (or a reaction, a raised hand) from a listener who has an
identity marks `(user id, display name)` as seen at `now`; `present` answers those seen in the last
`LISTENER_WINDOW_S` seconds, most recently seen first. At most `AUDIENCE_KEPT` people are held per
Space: past that the least recently seen are dropped first, so at a very large audience the list
is the most recently seen sample of those who beacon (and beacons are themselves sampled, see
api/live_routes.py), never everyone.
Raised hands live here, not in the records: a hand is the audience asking, minutes long, raised
and lowered by thousands in a busy Space, and lost with nothing of value if the store is lost (the
page raises it again). Raising or lowering one and appending the event that says so is one atomic
step, so the log, and every roster followed from it (spaces/roster.py), never disagrees with the
hands held. They are kept as long as the Space's log.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

EVENT_LOG_LIMIT = 1_000
REACTION_RETENTION_S = 120
LISTENER_WINDOW_S = 60
# The listener window is made of buckets this long; both implementations use the same steps, so
# they agree on exactly when a listener stops counting.
LISTENER_BUCKET_S = 10
# Speaking flags published through a shared store vanish this long after the last `set_speaking`,
# so a media node that dies mid-sentence does not leave someone "speaking" forever. Publishers
# re-publish at least every couple of seconds while anyone speaks.
SPEAKING_TTL_S = 5.0
# Named listeners held per Space for the host's audience list (the most recently seen win): enough
# for a host to find anyone in a Space of a few thousand, small enough to read whole per request.
AUDIENCE_KEPT = 1_000
# Hands up at once in one Space, at most: a bound on what one Space holds, far above what a host
# can read (the host console pages them).
HANDS_LIMIT = 10_000


class HandsFull(Exception):
    """The Space already holds HANDS_LIMIT raised hands."""


@dataclass(frozen=True)
class LogEvent:
    """An event to append to a Space's log (the log gives it its sequence number)."""

    type: str
    data: Mapping[str, Any]  # JSON-serialisable
    at: float  # UNIX seconds


@dataclass(frozen=True)
class Hand:
    """Someone in the audience asking to speak."""

    user_id: str
    display_name: str
    raised_at: float  # UNIX seconds


@dataclass(frozen=True)
class Event:
    seq: int
    type: str  # e.g. "stage.changed", "space.live", "hand.raised"
    at: float  # UNIX seconds
    data: Mapping[str, Any]  # JSON-serialisable


@dataclass(frozen=True)
class Present:
    """A listener with an identity seen recently in a Space."""

    user_id: str
    display_name: str
    seen: float  # UNIX seconds of their latest mark


class LiveState(Protocol):
    async def append(
        self, space_id: str, type: str, data: Mapping[str, Any], at: float
    ) -> Event: ...

    async def events_since(
        self, space_id: str, after_seq: int, limit: int = 500
    ) -> list[Event] | None:
        """Events with seq > after_seq in order (at most `limit`), or None if some were already dropped.

        None also when `after_seq` is beyond `latest_seq` (the log was lost and started again)."""
        ...

    async def latest_seq(self, space_id: str) -> int: ...

    async def log_id(self, space_id: str) -> str:
        """Which incarnation of the Space's log this is: it changes whenever the log starts again
        (a restart of the embedded store, a flushed or expired Redis log, forget_space), so a client
        that resumes with the id it saw can tell "after seq N" of an older log from this one's.
        "" while the log has no event."""
        ...

    async def position(self, space_id: str) -> tuple[str, int]:
        """`(log_id, latest_seq)` read together: where the Space's log stands. Anything derived
        from the records of a Space and tagged with this is current while it does not change,
        since every change to a Space's records is followed by an event in its log."""
        ...

    # A bound that answers False (rather than cancelling) lets a WebSocket loop send a keepalive.
    async def wait_for_events(self, space_id: str, after_seq: int, timeout: float) -> bool:  # noqa: ASYNC109
        """True as soon as latest_seq > after_seq; False after `timeout` seconds."""
        ...

    def waiting(self, space_id: str) -> int:
        """How many `wait_for_events` calls in this process are blocked on the Space (a gauge)."""
        ...

    async def raise_hand(self, space_id: str, hand: Hand, event: LogEvent) -> Event | None:
        """Put `hand` up and append `event`, as one step; None (and no event) if that user's hand
        was already up. Raises HandsFull when HANDS_LIMIT hands are up."""
        ...

    async def lower_hand(
        self, space_id: str, user_id: str, event: LogEvent | None = None
    ) -> Event | None:
        """Take `user_id`'s hand down and append `event` (if given), as one step; None (and no
        event) if it was not up. Without an event: the hand goes because of a change whose own
        event says so (seated, removed, banned)."""
        ...

    async def hands(self, space_id: str) -> list[Hand]:
        """The hands up, first raised first."""
        ...

    async def add_reaction(
        self, space_id: str, emoji: str, second: int, count: int = 1
    ) -> None: ...

    async def reaction_totals(
        self, space_id: str, since_second: int, until_second: int
    ) -> dict[str, int]:
        """Sum per emoji over the whole seconds in [since_second, until_second].

        Only the last REACTION_RETENTION_S seconds up to `until_second` are held, so an older
        `since_second` counts from there."""
        ...

    async def mark_listener(self, space_id: str, listener_key: str, now: float) -> None: ...

    async def mark_listeners(
        self, space_id: str, listener_keys: Collection[str], now: float
    ) -> None:
        """`mark_listener` for many keys in one round trip (an origin flushes what it saw each second)."""
        ...

    async def listener_count(self, space_id: str, now: float) -> int:
        """Approximate distinct listeners marked in the last LISTENER_WINDOW_S seconds."""
        ...

    async def mark_present(
        self, space_id: str, user_id: str, display_name: str, now: float
    ) -> None:
        """`user_id` (called `display_name`) was seen listening at `now`: one write, bounded.

        A later mark replaces the name; an earlier `now` than the one held does not move the
        person back in time (callers' clocks differ a little)."""
        ...

    async def present(self, space_id: str, now: float) -> list[Present]:
        """Those marked in the last LISTENER_WINDOW_S seconds, most recently seen first; at most
        AUDIENCE_KEPT of them."""
        ...

    async def set_speaking(self, space_id: str, speaking: Mapping[str, float], now: float) -> None:
        """Publish who is speaking (user id → level dBFS); replaces the previous set."""
        ...

    async def speaking(self, space_id: str) -> dict[str, float]: ...

    async def take_token(
        self, key: str, per_second: float, burst: int, now: float, cost: float = 1.0
    ) -> float:
        """Shared token bucket: take `cost` tokens (one a request; bytes for a storage quota):
        0.0 if allowed, else seconds until that many are available (and nothing is taken). A
        negative cost gives tokens back (a refund), never past `burst`.

        `key` names both the caller and the limit (e.g. "react:<user id>"): use one
        (per_second, burst) per key."""
        ...

    async def forget_space(self, space_id: str) -> None:
        """Drop everything held for a Space (it ended a while ago)."""
        ...

    async def revoke_session(self, session: str, until: float, now: float) -> None:
        """Remember, for every process, that `session` (a signed-out token's fingerprint) is no
        longer valid, until `until` (UNIX seconds: when the token expires by itself, after which
        nothing needs remembering). Forgotten then, so the set holds only live tokens."""
        ...

    async def session_revoked(self, session: str, now: float) -> bool:
        """Whether `session` was revoked (and its token has not expired since). One lookup: it is
        asked on every authenticated request."""
        ...

    async def ping(self) -> None:
        """Return if the store answers now; raise the driver's error (state.unavailable) if not.

        A command asks this before it writes any record, so that a store that is down refuses
        the command before anything changes (see state/outbox.py)."""
        ...

    async def close(self) -> None: ...
