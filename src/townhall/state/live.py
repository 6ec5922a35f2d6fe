"""The LiveState contract: what every implementation (embedded, Redis) must do, and nothing more.

Theory of operation. Each Space has an ordered event log: `append` assigns the next sequence number
(1, 2, 3, … per Space, never reused, never out of order, even with many writers) and keeps the most
recent `EVENT_LOG_LIMIT` events. A stage client that reconnects asks for `events_since(seq)`; if the
events it missed are no longer held (or the log was lost, e.g. the embedded store restarted) it gets
`None` and must re-fetch the full state, then continue from `latest_seq`. `wait_for_events` blocks
until the log passes a sequence number or a timeout; that is how WebSocket handlers on any process
learn of new events without polling.

Reactions are counted per (Space, whole second, emoji); the listener count is approximate (distinct
listener keys seen in the last `LISTENER_WINDOW_S` seconds — HyperLogLog in Redis); speaking flags are
whatever the media node last published. Counters expire by themselves: nothing here grows without
bound.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

EVENT_LOG_LIMIT = 1_000
REACTION_RETENTION_S = 120
LISTENER_WINDOW_S = 60


@dataclass(frozen=True)
class Event:
    seq: int
    type: str  # e.g. "stage.changed", "space.live", "hand.raised"
    at: float  # UNIX seconds
    data: Mapping[str, Any]  # JSON-serialisable


class LiveState(Protocol):
    async def append(self, space_id: str, type: str, data: Mapping[str, Any], at: float) -> Event: ...

    async def events_since(self, space_id: str, after_seq: int, limit: int = 500) -> list[Event] | None:
        """Events with seq > after_seq in order (at most `limit`), or None if some were already dropped."""
        ...

    async def latest_seq(self, space_id: str) -> int: ...

    async def wait_for_events(self, space_id: str, after_seq: int, timeout: float) -> bool:
        """True as soon as latest_seq > after_seq; False after `timeout` seconds."""
        ...

    async def add_reaction(self, space_id: str, emoji: str, second: int, count: int = 1) -> None: ...

    async def reaction_totals(self, space_id: str, since_second: int, until_second: int) -> dict[str, int]:
        """Sum per emoji over the whole seconds in [since_second, until_second]."""
        ...

    async def mark_listener(self, space_id: str, listener_key: str, now: float) -> None: ...

    async def listener_count(self, space_id: str, now: float) -> int:
        """Approximate distinct listeners marked in the last LISTENER_WINDOW_S seconds."""
        ...

    async def set_speaking(self, space_id: str, speaking: Mapping[str, float], now: float) -> None:
        """Publish who is speaking (user id → level dBFS); replaces the previous set."""
        ...

    async def speaking(self, space_id: str) -> dict[str, float]: ...

    async def take_token(self, key: str, per_second: float, burst: int, now: float) -> float:
        """Shared token bucket: 0.0 if allowed, else seconds until a token is available."""
        ...

    async def forget_space(self, space_id: str) -> None:
        """Drop everything held for a Space (it ended a while ago)."""
        ...

    async def close(self) -> None: ...
