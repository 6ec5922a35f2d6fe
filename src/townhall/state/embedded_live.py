"""LiveState for one process: everything in memory, every structure bounded.

The default for one box. Nothing is shared with other processes and nothing survives a restart: a
stage client that reconnects after one is told `None` by `events_since` and re-syncs, exactly as the
contract says. Memory per Space is bounded whatever the audience:

* the event log is a deque of at most `EVENT_LOG_LIMIT` events;
* reactions keep at most `REACTION_RETENTION_S + 1` seconds (older ones are dropped as newer arrive);
* the listener count keeps one `HyperLogLog` per `LISTENER_BUCKET_S` bucket and at most
  `_LISTENER_BUCKETS_HELD` buckets. A sketch stores 64-bit hashes exactly while it has seen few
  listeners and turns into 16 KiB of registers past `HyperLogLog.SPARSE_LIMIT`: small Spaces count
  exactly and cost little, a million listeners cost the same 16 KiB per bucket as a thousand, and
  no listener key string is ever held. (Exact sets capped at some size would either stop counting
  at the cap or hold the cap's worth of strings; HyperLogLog is what Redis uses, so both
  implementations have the same error.)
* who is present by name: an insertion-ordered map per Space, least recently seen first, of at
  most `AUDIENCE_KEPT` people; a mark moves its person to the end and drops, from the front,
  whoever fell out of the window or past the cap;
* raised hands go with the Space's log, at most `HANDS_LIMIT`;
* rate-limit buckets reuse the sans-I/O `townhall.ratelimit.bucket.RateLimiter` (one per distinct
  (per_second, burst), at most `_MAX_LIMITS`), which forgets the least recently seen caller past
  its table size.

`wait_for_events` sleeps on one `asyncio.Event` per Space that `append` sets and replaces, so every
waiter wakes once per append and nothing polls.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import secrets
from collections import Counter, OrderedDict, deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np

from townhall.ratelimit.bucket import RateLimit, RateLimiter
from townhall.state.live import (
    AUDIENCE_KEPT,
    EVENT_LOG_LIMIT,
    HANDS_LIMIT,
    LISTENER_BUCKET_S,
    LISTENER_WINDOW_S,
    REACTION_RETENTION_S,
    Event,
    Hand,
    HandsFull,
    LogEvent,
    Present,
)

# Buckets in one window, plus one partly elapsed; one more is held for callers whose clocks differ
# by a bucket (the Redis ring holds the same number).
_WINDOW_BUCKETS = LISTENER_WINDOW_S // LISTENER_BUCKET_S
_LISTENER_BUCKETS_HELD = _WINDOW_BUCKETS + 2
# Distinct (per_second, burst) limits come from ratelimit/table.py; a handful in practice.
_MAX_LIMITS = 64
# Expired revocations are dropped when the set doubles since the last sweep (at least this many).
_REVOKED_SWEEP_MIN = 1_024


class HyperLogLog:
    """Approximate distinct count in bounded memory: Redis's layout and estimator, in Python.

    2**14 six-bit registers (stored one per byte), a 64-bit hash per element: standard error
    1.04 / sqrt(2**14) ≈ 0.81 %. The count uses Ertl's improved estimator ("New cardinality
    estimation algorithms for HyperLogLog sketches", 2017), as Redis does, which needs no bias
    tables and is accurate from one element up. Until `SPARSE_LIMIT` distinct hashes the sketch
    keeps the hashes themselves (exact, and smaller than the registers).
    """

    P = 14
    M = 1 << P
    Q = 64 - P
    SPARSE_LIMIT = 256
    _ALPHA_INF = 0.5 / math.log(2.0)

    __slots__ = ("_hashes", "_registers")

    def __init__(self) -> None:
        self._hashes: set[int] | None = set()
        self._registers: bytearray | None = None

    @staticmethod
    def hash(key: str) -> int:
        # Stable across processes and runs (unlike hash()), so counts are reproducible.
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")

    def add(self, h: int) -> None:
        if self._hashes is not None:
            self._hashes.add(h)
            if len(self._hashes) > self.SPARSE_LIMIT:
                self._registers = bytearray(self.M)
                for old in self._hashes:
                    self._set_register(self._registers, old)
                self._hashes = None
        else:
            assert self._registers is not None
            self._set_register(self._registers, h)

    @property
    def nbytes(self) -> int:
        """Payload held: 8 bytes per exact hash, or the registers."""
        if self._hashes is not None:
            return 8 * len(self._hashes)
        return self.M

    @classmethod
    def count_union(cls, sketches: Iterable[HyperLogLog]) -> int:
        """Distinct elements added to any of `sketches` (like PFCOUNT over several keys)."""
        exact: set[int] = set()
        dense: list[bytearray] = []
        for sketch in sketches:
            if sketch._hashes is not None:
                exact |= sketch._hashes
            else:
                assert sketch._registers is not None
                dense.append(sketch._registers)
        if not dense:
            return len(exact)
        merged = np.frombuffer(dense[0], dtype=np.uint8).copy()
        for registers in dense[1:]:
            np.maximum(merged, np.frombuffer(registers, dtype=np.uint8), out=merged)
        if exact:
            scratch = bytearray(merged.tobytes())
            for h in exact:
                cls._set_register(scratch, h)
            merged = np.frombuffer(scratch, dtype=np.uint8)
        histogram = np.bincount(merged, minlength=cls.Q + 2)
        return cls._estimate([int(n) for n in histogram])

    @classmethod
    def _set_register(cls, registers: bytearray, h: int) -> None:
        index = h & (cls.M - 1)
        # Position of the lowest set bit of the remaining Q bits (Q + 1 if none), as Redis does.
        rest = (h >> cls.P) | (1 << cls.Q)
        rank = (rest & -rest).bit_length()
        if rank > registers[index]:
            registers[index] = rank

    @classmethod
    def _estimate(cls, histogram: list[int]) -> int:
        m = float(cls.M)
        z = m * _tau((m - histogram[cls.Q + 1]) / m)
        for j in range(cls.Q, 0, -1):
            z += histogram[j]
            z *= 0.5
        z += m * _sigma(histogram[0] / m)
        return round(cls._ALPHA_INF * m * m / z)


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        previous = z
        z += x * y
        y += y
        if z == previous:
            return z


def _tau(x: float) -> float:
    if x in (0.0, 1.0):
        return 0.0
    y, z = 1.0, 1.0 - x
    while True:
        x = math.sqrt(x)
        previous = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == previous:
            return z / 3.0


@dataclass
class _Log:
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=EVENT_LOG_LIMIT))
    latest: int = 0
    id: str = field(default_factory=lambda: secrets.token_hex(6))  # new for every new log
    # Set and replaced by every append: each waiter holds the one it saw, so none misses a wake-up.
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0
    hands: dict[str, Hand] = field(default_factory=dict)  # user id → hand, first raised first


@dataclass
class _Reactions:
    newest: int
    seconds: dict[int, Counter[str]] = field(default_factory=dict)


@dataclass
class _Listeners:
    newest: int
    buckets: dict[int, HyperLogLog] = field(default_factory=dict)


def _as_json(data: Mapping[str, Any]) -> dict[str, Any]:
    # The same round trip the Redis implementation makes, so both hand back the same data.
    decoded: dict[str, Any] = json.loads(json.dumps(data, separators=(",", ":")))
    return decoded


class EmbeddedLiveState:
    """In-process LiveState (see the module docstring for what it holds and how much)."""

    def __init__(self) -> None:
        self._logs: dict[str, _Log] = {}
        self._reactions: dict[str, _Reactions] = {}
        self._listeners: dict[str, _Listeners] = {}
        # space → user id → (display name, seen), least recently seen first
        self._present: dict[str, OrderedDict[str, tuple[str, float]]] = {}
        self._speaking: dict[str, dict[str, float]] = {}
        self._limiters: OrderedDict[RateLimit, RateLimiter] = OrderedDict()
        self._revoked: dict[str, float] = {}  # session → until
        self._revoked_sweep_at = _REVOKED_SWEEP_MIN
        self._closed = False

    # -- event log ---------------------------------------------------------------------------

    def _log(self, space_id: str) -> _Log:
        log = self._logs.get(space_id)
        if log is None:
            log = self._logs[space_id] = _Log()
        return log

    async def append(self, space_id: str, type: str, data: Mapping[str, Any], at: float) -> Event:
        log = self._log(space_id)
        # No await between reading and bumping `latest`: appends on one loop cannot interleave.
        event = Event(seq=log.latest + 1, type=type, at=at, data=_as_json(data))
        log.events.append(event)
        log.latest = event.seq
        log.changed.set()
        log.changed = asyncio.Event()
        return event

    async def raise_hand(self, space_id: str, hand: Hand, event: LogEvent) -> Event | None:
        log = self._log(space_id)
        if hand.user_id in log.hands:
            return None
        if len(log.hands) >= HANDS_LIMIT:
            raise HandsFull(space_id)
        log.hands[hand.user_id] = hand
        return await self.append(space_id, event.type, event.data, event.at)

    async def lower_hand(
        self, space_id: str, user_id: str, event: LogEvent | None = None
    ) -> Event | None:
        log = self._logs.get(space_id)
        if log is None or log.hands.pop(user_id, None) is None or event is None:
            return None
        return await self.append(space_id, event.type, event.data, event.at)

    async def hands(self, space_id: str) -> list[Hand]:
        log = self._logs.get(space_id)
        held = log.hands.values() if log is not None else ()
        return sorted(held, key=lambda h: (h.raised_at, h.user_id))  # as the Redis store lists them

    async def events_since(
        self, space_id: str, after_seq: int, limit: int = 500
    ) -> list[Event] | None:
        if limit < 1 or after_seq < 0:
            raise ValueError("after_seq must be at least 0 and limit at least 1")
        log = self._logs.get(space_id)
        latest = log.latest if log is not None else 0
        if after_seq > latest:
            return None  # the log was lost (restart, forget_space) and started again
        if after_seq == latest or log is None:
            return []
        first_held = log.latest - len(log.events) + 1
        if after_seq + 1 < first_held:
            return None
        start = after_seq + 1 - first_held
        newer = len(log.events) - start
        if newer <= limit:
            # The usual ask: the few newest events (a kept roster or a follower one event behind).
            # Walked from the right end: islice from the left would step over the whole log
            # (up to EVENT_LOG_LIMIT entries) to reach them, on every hand raised in a busy Space.
            found = list(islice(reversed(log.events), newer))
            found.reverse()
            return found
        return list(islice(log.events, start, start + limit))

    async def latest_seq(self, space_id: str) -> int:
        log = self._logs.get(space_id)
        return log.latest if log is not None else 0

    async def log_id(self, space_id: str) -> str:
        log = self._logs.get(space_id)
        return log.id if log is not None and log.latest > 0 else ""

    async def position(self, space_id: str) -> tuple[str, int]:
        log = self._logs.get(space_id)
        if log is None or log.latest == 0:
            return "", 0
        return log.id, log.latest

    async def wait_for_events(self, space_id: str, after_seq: int, timeout: float) -> bool:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            # Looked up afresh each time: forget_space replaces the Space's log and wakes us.
            log = self._log(space_id)
            if log.latest > after_seq:
                return True
            if self._closed or loop.time() >= deadline:
                return False
            changed = log.changed
            log.waiting += 1
            try:
                async with asyncio.timeout_at(deadline):
                    await changed.wait()
            except TimeoutError:
                pass
            finally:
                log.waiting -= 1

    def waiting(self, space_id: str) -> int:
        log = self._logs.get(space_id)
        return log.waiting if log is not None else 0

    # -- reactions ---------------------------------------------------------------------------

    async def add_reaction(self, space_id: str, emoji: str, second: int, count: int = 1) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        held = self._reactions.get(space_id)
        if held is None:
            held = self._reactions[space_id] = _Reactions(newest=second)
        if second > held.newest:
            held.newest = second
            oldest = second - REACTION_RETENTION_S
            for old in [s for s in held.seconds if s < oldest]:
                del held.seconds[old]
        elif second < held.newest - REACTION_RETENTION_S:
            return  # already past retention: it would be pruned at once
        held.seconds.setdefault(second, Counter())[emoji] += count

    async def reaction_totals(
        self, space_id: str, since_second: int, until_second: int
    ) -> dict[str, int]:
        held = self._reactions.get(space_id)
        totals: Counter[str] = Counter()
        if held is None:
            return {}
        since_second = max(since_second, until_second - REACTION_RETENTION_S)
        for second, counts in held.seconds.items():
            if since_second <= second <= until_second:
                totals.update(counts)
        return dict(totals)

    # -- listeners ---------------------------------------------------------------------------

    async def mark_listener(self, space_id: str, listener_key: str, now: float) -> None:
        await self.mark_listeners(space_id, (listener_key,), now)

    async def mark_listeners(
        self, space_id: str, listener_keys: Collection[str], now: float
    ) -> None:
        if not listener_keys:
            return
        bucket = math.floor(now / LISTENER_BUCKET_S)
        held = self._listeners.get(space_id)
        if held is None:
            held = self._listeners[space_id] = _Listeners(newest=bucket)
        if bucket > held.newest:
            held.newest = bucket
            oldest = bucket - _LISTENER_BUCKETS_HELD + 1
            for old in [b for b in held.buckets if b < oldest]:
                del held.buckets[old]
        elif bucket <= held.newest - _LISTENER_BUCKETS_HELD:
            return  # too old to fall in any window still counted
        sketch = held.buckets.get(bucket)
        if sketch is None:
            sketch = held.buckets[bucket] = HyperLogLog()
        for key in listener_keys:
            sketch.add(HyperLogLog.hash(key))

    async def listener_count(self, space_id: str, now: float) -> int:
        held = self._listeners.get(space_id)
        if held is None:
            return 0
        bucket = math.floor(now / LISTENER_BUCKET_S)
        window = range(bucket - _WINDOW_BUCKETS, bucket + 1)
        return HyperLogLog.count_union(s for b, s in held.buckets.items() if b in window)

    # -- who is present ----------------------------------------------------------------------

    async def mark_present(
        self, space_id: str, user_id: str, display_name: str, now: float
    ) -> None:
        held = self._present.setdefault(space_id, OrderedDict())
        previous = held.pop(user_id, None)
        held[user_id] = (display_name, max(now, previous[1]) if previous else now)
        oldest = now - LISTENER_WINDOW_S
        while held and (len(held) > AUDIENCE_KEPT or next(iter(held.values()))[1] < oldest):
            held.popitem(last=False)

    async def present(self, space_id: str, now: float) -> list[Present]:
        held = self._present.get(space_id)
        if held is None:
            return []
        oldest = now - LISTENER_WINDOW_S
        found = [Present(u, name, seen) for u, (name, seen) in held.items() if seen >= oldest]
        return sorted(found, key=lambda p: p.seen, reverse=True)

    # -- speaking ----------------------------------------------------------------------------

    async def set_speaking(self, space_id: str, speaking: Mapping[str, float], now: float) -> None:
        # In one process the publisher and the readers live and die together: no expiry needed.
        if speaking:
            self._speaking[space_id] = {user: float(level) for user, level in speaking.items()}
        else:
            self._speaking.pop(space_id, None)

    async def speaking(self, space_id: str) -> dict[str, float]:
        return dict(self._speaking.get(space_id, {}))

    # -- rate limits -------------------------------------------------------------------------

    async def take_token(
        self, key: str, per_second: float, burst: int, now: float, cost: float = 1.0
    ) -> float:
        if per_second <= 0 or burst < 1:
            raise ValueError("a rate limit needs per_second > 0 and burst >= 1")
        limit = RateLimit(per_second=per_second, burst=burst)
        limiter = self._limiters.pop(limit, None) or RateLimiter(limit)
        self._limiters[limit] = limiter
        while len(self._limiters) > _MAX_LIMITS:
            self._limiters.popitem(last=False)
        return limiter.check(key, now, cost)

    # -- sessions ----------------------------------------------------------------------------

    async def revoke_session(self, session: str, until: float, now: float) -> None:
        if until <= now:
            return
        self._revoked[session] = until
        if len(self._revoked) >= self._revoked_sweep_at:
            self._revoked = {s: end for s, end in self._revoked.items() if end > now}
            self._revoked_sweep_at = max(_REVOKED_SWEEP_MIN, 2 * len(self._revoked))

    async def session_revoked(self, session: str, now: float) -> bool:
        return self._revoked.get(session, 0.0) > now

    # -- lifecycle ---------------------------------------------------------------------------

    async def forget_space(self, space_id: str) -> None:
        log = self._logs.pop(space_id, None)
        if log is not None:
            log.changed.set()  # waiters re-check against the fresh (empty) log
        self._reactions.pop(space_id, None)
        self._listeners.pop(space_id, None)
        self._present.pop(space_id, None)
        self._speaking.pop(space_id, None)

    async def ping(self) -> None:
        return None  # in this process: reachable whenever the caller is running

    async def close(self) -> None:
        self._closed = True
        for log in self._logs.values():
            log.changed.set()
