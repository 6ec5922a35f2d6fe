"""LiveState in Redis, shared by every process and node of a deployment.

Theory of operation.

* **Event log.** One Lua script INCRs the Space's counter, XADDs the event to a Stream under the id
  `<seq>-0` with `MAXLEN = EVENT_LOG_LIMIT`, refreshes both TTLs and PUBLISHes the seq. A script runs
  atomically, so writers on any number of processes get 1, 2, 3, … with no gap and no reordering,
  and nobody can be notified of an event that is not yet readable. `events_since` reads the counter
  and an XRANGE from `<after+1>-0` in one MULTI: if the first entry is not `after+1`, history was
  trimmed (or lost) and the answer is None.
* **Wake-ups.** Each process holds ONE pub/sub connection and subscribes to a Space's channel once,
  however many of its WebSocket clients wait on that Space; a reader task fans notifications out to
  in-process waiters through an `asyncio.Event` per Space. A subscription is confirmed and then the
  counter is read once (GET), so no append can slip between "read latest" and "start listening".
  The same happens after a reconnect (redis-py re-subscribes; each confirmation triggers a fresh
  GET), so notifications lost while disconnected only delay waiters, they are never missed for good.
  A Space nobody has waited on for `_WATCH_LINGER_S` is unsubscribed.
* **Reactions** live in a ring of `_REACTION_SLOTS` hashes per Space (slot = second mod ring size),
  each remembering which second it holds; **listeners** in a ring of HyperLogLogs (slot = bucket
  mod ring size) plus a small hash saying which bucket each slot holds; **who is present** by name
  in a sorted set (score = last seen) and a hash of names, trimmed by the mark script to the
  window and to `AUDIENCE_KEPT` people. Rings give every Space a
  fixed, computable set of keys, so `forget_space` deletes them with one DEL (no SCAN over the
  keyspace), Redis memory per Space is bounded whatever the callers' clocks say, and a listener's
  expiry follows the `now` the caller passes, exactly as in the embedded store. TTLs clean up
  Spaces nobody forgets.
* **Rate limits** are one hash per key updated by a Lua token-bucket script.

Every key of a Space carries the hash tag `{<space id>}`, so in Redis Cluster a Space's keys share
one slot and the scripts may touch several of them. docs/redis-keys.md lists every key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
from collections.abc import Collection, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from townhall.state.live import (
    AUDIENCE_KEPT,
    EVENT_LOG_LIMIT,
    HANDS_LIMIT,
    LISTENER_BUCKET_S,
    LISTENER_WINDOW_S,
    REACTION_RETENTION_S,
    SPEAKING_TTL_S,
    Event,
    Hand,
    HandsFull,
    LogEvent,
    Present,
)
from townhall.tasks import cancel_and_wait

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "townhall"

# ---- Keys (docs/redis-keys.md). Format with prefix=, space= (and slot= / key=). ----------------

# STRING, integer: the Space's newest sequence number. Written by the append script (INCR), read by
# latest_seq, events_since and the wake-up refresh. TTL EVENT_LOG_TTL_S from the last append;
# deleted by forget_space.
EVENT_SEQ_KEY = "{prefix}:space:{{{space}}}:seq"
# STREAM: the last EVENT_LOG_LIMIT events, entry id "<seq>-0", fields t (type), at (UNIX seconds),
# d (JSON data). Written by the append script (XADD MAXLEN), read by events_since (XRANGE). TTL and
# deletion as EVENT_SEQ_KEY.
EVENT_LOG_KEY = "{prefix}:space:{{{space}}}:events"
# STRING: the id of this incarnation of the log, set with its first event, same TTL as the log.
EVENT_LOG_ID_KEY = "{prefix}:space:{{{space}}}:log-id"
# HASH: user id → {"n": display name, "at": raised at} of each raised hand. Written by the hand
# script (a raise or lower and its event in one step), read by hands. TTL as EVENT_SEQ_KEY.
HANDS_KEY = "{prefix}:space:{{{space}}}:hands"
# PUB/SUB CHANNEL (not a key): message "<seq>" after each append, "reset" after forget_space.
# Published by the append script and forget_space; every process waiting on the Space subscribes.
EVENT_CHANNEL = "{prefix}:space:{{{space}}}:appended"
# HASH, one per ring slot 0 … _REACTION_SLOTS-1 (slot = second mod _REACTION_SLOTS): field "s" is
# the whole second the slot holds, field "e:<emoji>" its count. Written by the add-reaction script
# (a newer second resets the slot), read by reaction_totals. TTL REACTION_RETENTION_S from the last
# reaction; deleted by forget_space.
REACTIONS_KEY = "{prefix}:space:{{{space}}}:reactions:{slot}"
# HYPERLOGLOG, one per ring slot 0 … _LISTENER_SLOTS-1 (slot = bucket mod _LISTENER_SLOTS, bucket =
# floor(now / LISTENER_BUCKET_S)): the listener keys marked in that bucket. Written by the mark
# script (PFADD; a newer bucket resets the slot), read by the count script (PFCOUNT over the
# window). TTL _LISTENER_TTL_S from the last mark; deleted by forget_space.
LISTENERS_KEY = "{prefix}:space:{{{space}}}:listeners:{slot}"
# HASH: slot number → the bucket that LISTENERS_KEY slot holds. Written by the mark script, read by
# the count script. TTL _LISTENER_TTL_S from the last mark; deleted by forget_space.
LISTENER_BUCKETS_KEY = "{prefix}:space:{{{space}}}:listener-buckets"
# ZSET: user id → when they were last seen listening (UNIX seconds), at most AUDIENCE_KEPT members,
# none older than LISTENER_WINDOW_S before the latest mark. Written by the mark-present script
# (ZADD GT, then trims the stale and the least recently seen past the cap), read by present
# (ZREVRANGEBYSCORE over the window). TTL _LISTENER_TTL_S from the last mark; deleted by forget_space.
PRESENT_KEY = "{prefix}:space:{{{space}}}:present"
# HASH: user id → display name of each member of PRESENT_KEY (trimmed with it). Written by the
# mark-present script, read by present. TTL and deletion as PRESENT_KEY.
PRESENT_NAMES_KEY = "{prefix}:space:{{{space}}}:present-names"
# HASH: user id → level in dBFS of who is speaking now. Replaced (DEL + HSET in MULTI) by
# set_speaking from the Space's media node, read by speaking. TTL SPEAKING_TTL_S from the last
# publish, so a dead media node leaves nobody speaking; deleted by forget_space.
SPEAKING_KEY = "{prefix}:space:{{{space}}}:speaking"
# HASH: fields tokens, at (the caller's clock, UNIX seconds) of one token bucket. Written and read by
# the take-token script. TTL: the time a bucket takes to refill completely (it is then the same as
# absent). Not per Space; the key names the caller and the limit, e.g. "react:<user id>".
RATE_KEY = "{prefix}:rate:{key}"
# STRING "1": a signed-out session (api/sessions.py: a fingerprint of its token). Written by
# revoke_session, read by session_revoked on every authenticated request. TTL: until the token
# expires by itself. Not per Space.
REVOKED_KEY = "{prefix}:revoked:{key}"

# -------------------------------------------------------------------------------------------------

# An idle Space's log is kept a day after its last event, in case forget_space never comes.
EVENT_LOG_TTL_S = 86_400
_REACTION_SLOTS = REACTION_RETENTION_S + 1
_WINDOW_BUCKETS = LISTENER_WINDOW_S // LISTENER_BUCKET_S
# The window's buckets, the one filling now, and one spare for a caller a bucket ahead.
_LISTENER_SLOTS = _WINDOW_BUCKETS + 2
_LISTENER_TTL_S = _LISTENER_SLOTS * LISTENER_BUCKET_S
_RESET = "reset"
# Keep a Space's subscription this long after its last waiter left: a WebSocket handler waits
# again right after each batch, and re-subscribing for every event would be churn.
_WATCH_LINGER_S = 30.0
_RETRY_S = 1.0
# Lua's unpack() is limited by the C stack; feed PFADD at most this many keys per call.
_MARK_BATCH = 1_000

# The append step, as a Lua function both the append and the hand scripts call. KEYS of the
# append: seq, stream, log id; ARGV: limit, ttl, type, at, data, channel, fresh log id.
_APPEND_FUNCTION = """
local function append(seq_key, stream_key, id_key, limit, ttl, type, at, data, channel, fresh_id)
  -- A counter without its stream (or the reverse) means the log was partly evicted: start afresh
  -- rather than fail XADD on an id below the stream's top.
  if redis.call('EXISTS', seq_key) == 0 then redis.call('DEL', stream_key) end
  local seq = redis.call('INCR', seq_key)
  if seq == 1 then redis.call('SET', id_key, fresh_id) end
  redis.call('XADD', stream_key, 'MAXLEN', limit, seq .. '-0', 't', type, 'at', at, 'd', data)
  redis.call('EXPIRE', seq_key, ttl)
  redis.call('EXPIRE', stream_key, ttl)
  redis.call('EXPIRE', id_key, ttl)
  redis.call('PUBLISH', channel, seq)
  return seq
end
"""

_APPEND = (
    _APPEND_FUNCTION
    + """
return append(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
"""
)

# KEYS: hands, then the append's; ARGV: "raise" or "lower", user id, hand (JSON), hands limit,
# then the append's ARGV (type "" for no event). Returns the event's seq, 0 when nothing changed
# (the hand was already up, or not up), -1 when the Space holds the limit of hands.
_SET_HAND = (
    _APPEND_FUNCTION
    + """
local changed
if ARGV[1] == 'raise' then
  if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then return 0 end
  if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return -1 end
  changed = redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
else
  changed = redis.call('HDEL', KEYS[1], ARGV[2])
end
if changed == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[6])
if ARGV[7] == '' then return 0 end
return append(KEYS[2], KEYS[3], KEYS[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11])
"""
)

_ADD_REACTION = """
-- KEYS: ring slot hash; ARGV: second, field, count, ttl
local held = tonumber(redis.call('HGET', KEYS[1], 's'))
local second = tonumber(ARGV[1])
if held ~= nil and held > second then return 0 end  -- the slot moved on: too old to keep
if held == nil or held < second then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 's', ARGV[1])
end
redis.call('HINCRBY', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

_MARK_LISTENERS = """
-- KEYS: bucket map, ring slot HLL; ARGV: slot, bucket, ttl, listener keys...
local held = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
local bucket = tonumber(ARGV[2])
if held ~= nil and held > bucket then return 0 end  -- the slot moved on: too old to count
if held == nil or held < bucket then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('PFADD', KEYS[2], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

_COUNT_LISTENERS = """
-- KEYS: bucket map, then ring slot HLLs 0..n-1; ARGV: lowest bucket, highest bucket
local lo, hi = tonumber(ARGV[1]), tonumber(ARGV[2])
local held = redis.call('HGETALL', KEYS[1])
local window = {}
for i = 1, #held, 2 do
  local bucket = tonumber(held[i + 1])
  if bucket >= lo and bucket <= hi then table.insert(window, KEYS[tonumber(held[i]) + 2]) end
end
if #window == 0 then return 0 end
return redis.call('PFCOUNT', unpack(window))
"""

_MARK_PRESENT = """
-- KEYS: present zset, names hash; ARGV: user id, display name, now, oldest kept, cap, ttl
redis.call('ZADD', KEYS[1], 'GT', ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[4])
local over = redis.call('ZCARD', KEYS[1]) - #gone - tonumber(ARGV[5])
if over > 0 then  -- past the cap: the least recently seen of those still in the window go
  for _, user in ipairs(redis.call('ZRANGE', KEYS[1], #gone, #gone + over - 1)) do
    table.insert(gone, user)
  end
end
if #gone > 0 then
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('HDEL', KEYS[2], unpack(gone))
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return #gone
"""

_TAKE_TOKEN = """
-- KEYS: bucket hash; ARGV: per_second, burst, now, ttl_ms, cost (negative: a refund). Returns the
-- wait as a string (a Lua number would be truncated to an integer on the way out).
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cost = tonumber(ARGV[5])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil or at == nil then tokens, at = burst, now end
-- Processes' clocks differ a little: time never runs backwards for a bucket.
local elapsed = math.max(0, now - at)
tokens = math.min(burst, tokens + elapsed * rate)
local wait = 0
if tokens >= cost then tokens = math.min(burst, tokens - cost) else wait = (cost - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%.17g', math.max(at, now)))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return string.format('%.17g', wait)
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(eq=False)
class _Watch:
    """This process's view of one Space's log head, shared by all its waiters."""

    channel: str
    seq_key: str
    latest: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # subscribed, then latest read
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # set and replaced on news
    refs: int = 0
    blocked: int = 0
    idle_since: float | None = None
    subscribe_sent: bool = False

    def bump(self, seq: int) -> None:
        if seq > self.latest:
            self.latest = seq
            self.wake()

    def reset(self) -> None:
        self.latest = 0
        self.wake()

    def wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class RedisLiveState:
    """LiveState on Redis (see the module docstring for the data design)."""

    def __init__(
        self, redis: Redis, *, prefix: str = DEFAULT_PREFIX, owns_client: bool = False
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._owns_client = owns_client
        self._append_script = redis.register_script(_APPEND)
        self._hand_script = redis.register_script(_SET_HAND)
        self._reaction_script = redis.register_script(_ADD_REACTION)
        self._mark_script = redis.register_script(_MARK_LISTENERS)
        self._count_script = redis.register_script(_COUNT_LISTENERS)
        self._present_script = redis.register_script(_MARK_PRESENT)
        self._token_script = redis.register_script(_TAKE_TOKEN)
        self._pubsub = redis.pubsub()
        self._watches: dict[str, _Watch] = {}  # by channel
        self._dirty = asyncio.Event()  # the set of watches changed: (un)subscribe
        self._manager: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        max_connections: int = 64,
        pool_timeout: float = 5.0,
    ) -> RedisLiveState:
        """A store with its own client. Connections are bounded: past `max_connections` in use,
        callers queue for up to `pool_timeout` seconds, then get a ConnectionError (answer 503)."""
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_timeout,
            decode_responses=True,
            socket_keepalive=True,  # notice a half-open subscription connection
            # An unreachable host fails a call (503) within seconds instead of hanging it.
            socket_connect_timeout=pool_timeout,
        )
        return cls(Redis.from_pool(pool), prefix=prefix, owns_client=True)

    def _key(self, template: str, space_id: str, **more: object) -> str:
        return template.format(prefix=self._prefix, space=space_id, **more)

    def space_keys(self, space_id: str) -> list[str]:
        """Every key this store may hold for a Space (what forget_space deletes)."""
        return [
            self._key(EVENT_SEQ_KEY, space_id),
            self._key(EVENT_LOG_KEY, space_id),
            self._key(EVENT_LOG_ID_KEY, space_id),
            self._key(HANDS_KEY, space_id),
            self._key(SPEAKING_KEY, space_id),
            self._key(LISTENER_BUCKETS_KEY, space_id),
            self._key(PRESENT_KEY, space_id),
            self._key(PRESENT_NAMES_KEY, space_id),
            *(self._key(LISTENERS_KEY, space_id, slot=s) for s in range(_LISTENER_SLOTS)),
            *(self._key(REACTIONS_KEY, space_id, slot=s) for s in range(_REACTION_SLOTS)),
        ]

    # -- event log ---------------------------------------------------------------------------

    def _log_keys(self, space_id: str) -> list[str]:
        return [
            self._key(EVENT_SEQ_KEY, space_id),
            self._key(EVENT_LOG_KEY, space_id),
            self._key(EVENT_LOG_ID_KEY, space_id),
        ]

    def _append_args(self, space_id: str, event: LogEvent | None) -> list[str | int]:
        """The append step's ARGV for `event` (no event: an empty type, and nothing appended)."""
        return [
            EVENT_LOG_LIMIT,
            EVENT_LOG_TTL_S,
            event.type if event is not None else "",
            repr(float(event.at)) if event is not None else "0",
            json.dumps(event.data, separators=(",", ":")) if event is not None else "{}",
            self._key(EVENT_CHANNEL, space_id),
            secrets.token_hex(6),
        ]

    async def append(self, space_id: str, type: str, data: Mapping[str, Any], at: float) -> Event:
        event = LogEvent(type, data, at)
        seq = await self._append_script(
            keys=self._log_keys(space_id), args=self._append_args(space_id, event)
        )
        return self._appended(int(seq), event)

    @staticmethod
    def _appended(seq: int, event: LogEvent) -> Event:
        # The same JSON round trip a reader of the log makes.
        data = json.loads(json.dumps(event.data, separators=(",", ":")))
        return Event(seq=seq, type=event.type, at=float(event.at), data=data)

    async def _set_hand(
        self, space_id: str, mode: str, user_id: str, hand: str, event: LogEvent | None
    ) -> int:
        return int(
            await self._hand_script(
                keys=[self._key(HANDS_KEY, space_id), *self._log_keys(space_id)],
                args=[mode, user_id, hand, HANDS_LIMIT, *self._append_args(space_id, event)],
            )
        )

    async def raise_hand(self, space_id: str, hand: Hand, event: LogEvent) -> Event | None:
        raw = json.dumps({"n": hand.display_name, "at": hand.raised_at}, separators=(",", ":"))
        seq = await self._set_hand(space_id, "raise", hand.user_id, raw, event)
        if seq < 0:
            raise HandsFull(space_id)
        return self._appended(seq, event) if seq > 0 else None

    async def lower_hand(
        self, space_id: str, user_id: str, event: LogEvent | None = None
    ) -> Event | None:
        seq = await self._set_hand(space_id, "lower", user_id, "", event)
        return self._appended(seq, event) if seq > 0 and event is not None else None

    async def hands(self, space_id: str) -> list[Hand]:
        raw = await self._redis.hgetall(self._key(HANDS_KEY, space_id))
        found = []
        for user, value in raw.items():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                hand = json.loads(value)
                found.append(Hand(str(user), str(hand["n"]), float(hand["at"])))
        return sorted(found, key=lambda h: (h.raised_at, h.user_id))

    async def events_since(
        self, space_id: str, after_seq: int, limit: int = 500
    ) -> list[Event] | None:
        if limit < 1 or after_seq < 0:
            raise ValueError("after_seq must be at least 0 and limit at least 1")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self._key(EVENT_SEQ_KEY, space_id))
            pipe.xrange(self._key(EVENT_LOG_KEY, space_id), f"{after_seq + 1}-0", "+", count=limit)
            raw_latest, entries = await pipe.execute()
        latest = int(raw_latest or 0)
        if after_seq > latest:
            # The log was lost (forget_space, expiry, a flushed Redis) and started again.
            return None
        if after_seq == latest:
            return []
        events = [self._event(entry_id, fields) for entry_id, fields in entries]
        if not events or events[0].seq != after_seq + 1:
            return None  # trimmed past the client's position
        return events

    @staticmethod
    def _event(entry_id: Any, fields: Mapping[Any, Any]) -> Event:
        values = {_text(k): _text(v) for k, v in fields.items()}
        return Event(
            seq=int(_text(entry_id).partition("-")[0]),
            type=values["t"],
            at=float(values["at"]),
            data=json.loads(values["d"]),
        )

    async def latest_seq(self, space_id: str) -> int:
        return int(await self._redis.get(self._key(EVENT_SEQ_KEY, space_id)) or 0)

    async def log_id(self, space_id: str) -> str:
        raw = await self._redis.get(self._key(EVENT_LOG_ID_KEY, space_id))
        return raw.decode() if isinstance(raw, bytes) else str(raw or "")

    async def position(self, space_id: str) -> tuple[str, int]:
        log_id, seq = await self._redis.mget(
            self._key(EVENT_LOG_ID_KEY, space_id), self._key(EVENT_SEQ_KEY, space_id)
        )
        text = log_id.decode() if isinstance(log_id, bytes) else str(log_id or "")
        return (text, int(seq or 0)) if seq else ("", 0)

    async def wait_for_events(self, space_id: str, after_seq: int, timeout: float) -> bool:  # noqa: ASYNC109
        if self._closed:
            return False
        if timeout <= 0:
            return await self.latest_seq(space_id) > after_seq
        channel = self._key(EVENT_CHANNEL, space_id)
        watch = self._watches.get(channel)
        if watch is None:
            watch = self._watches[channel] = _Watch(channel, self._key(EVENT_SEQ_KEY, space_id))
            self._start_manager()
            self._dirty.set()
        watch.refs += 1
        watch.idle_since = None
        try:
            async with asyncio.timeout(timeout):
                await watch.ready.wait()
                while watch.latest <= after_seq and not self._closed:
                    changed = watch.changed
                    watch.blocked += 1
                    try:
                        await changed.wait()
                    finally:
                        watch.blocked -= 1
        except TimeoutError:
            pass
        finally:
            watch.refs -= 1
            if watch.refs == 0:
                watch.idle_since = asyncio.get_running_loop().time()
        return watch.latest > after_seq

    def waiting(self, space_id: str) -> int:
        watch = self._watches.get(self._key(EVENT_CHANNEL, space_id))
        return watch.blocked if watch is not None else 0

    def _start_manager(self) -> None:
        if self._manager is None:
            self._manager = asyncio.create_task(self._manage_subscriptions())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _manage_subscriptions(self) -> None:
        """The only task that sends (UN)SUBSCRIBE, so they reach Redis in the order decided."""
        loop = asyncio.get_running_loop()
        stale: set[str] = set()  # unsubscribes that failed, retried
        while not self._closed:
            # Wake on a new watch, or every linger period to drop idle ones.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_WATCH_LINGER_S):
                    await self._dirty.wait()
            self._dirty.clear()
            now = loop.time()
            for channel, watch in list(self._watches.items()):
                if (
                    watch.refs == 0
                    and watch.idle_since is not None
                    and now - watch.idle_since >= _WATCH_LINGER_S
                ):
                    del self._watches[channel]
                    stale.add(channel)
            stale -= self._watches.keys()
            new = [w for w in self._watches.values() if not w.subscribe_sent]
            for watch in new:
                watch.subscribe_sent = True
            try:
                if stale:
                    await self._pubsub.unsubscribe(*stale)
                    stale.clear()
                if new:
                    await self._pubsub.subscribe(*(w.channel for w in new))
                    if self._reader is None:
                        self._reader = asyncio.create_task(self._read_notifications())
            except (RedisError, OSError) as exc:
                log.warning("live state: pub/sub (un)subscribe failed, retrying: %s", exc)
                for watch in new:
                    watch.subscribe_sent = False
                self._dirty.set()
                await asyncio.sleep(_RETRY_S)  # back off before retrying

    async def _read_notifications(self) -> None:
        while not self._closed:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except (RedisError, OSError) as exc:
                log.warning("live state: pub/sub connection lost, reconnecting: %s", exc)
                await asyncio.sleep(_RETRY_S)  # back off before reconnecting
                continue
            if message is None:
                continue
            watch = self._watches.get(_text(message["channel"]))
            if watch is None:
                continue
            kind = _text(message["type"])
            if kind == "subscribe":
                # Subscribed (first time or after a reconnect): anything appended before this
                # point is in the counter, anything after will be published to us.
                self._spawn(self._refresh(watch))
            elif kind == "message":
                data = _text(message["data"])
                if data == _RESET:
                    watch.reset()
                else:
                    watch.bump(int(data))

    async def _refresh(self, watch: _Watch) -> None:
        # Retried until it works: until then the watch's waiters would only ever time out.
        while not self._closed and self._watches.get(watch.channel) is watch:
            try:
                latest = int(await self._redis.get(watch.seq_key) or 0)
            except (RedisError, OSError) as exc:
                log.warning("live state: reading %s failed, retrying: %s", watch.seq_key, exc)
                await asyncio.sleep(_RETRY_S)  # back off before retrying
                continue
            watch.bump(latest)
            watch.ready.set()
            return

    # -- reactions ---------------------------------------------------------------------------

    async def add_reaction(self, space_id: str, emoji: str, second: int, count: int = 1) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        await self._reaction_script(
            keys=[self._key(REACTIONS_KEY, space_id, slot=second % _REACTION_SLOTS)],
            args=[second, f"e:{emoji}", count, REACTION_RETENTION_S],
        )

    async def reaction_totals(
        self, space_id: str, since_second: int, until_second: int
    ) -> dict[str, int]:
        seconds = range(max(since_second, until_second - REACTION_RETENTION_S), until_second + 1)
        if not seconds:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for second in seconds:
                pipe.hgetall(self._key(REACTIONS_KEY, space_id, slot=second % _REACTION_SLOTS))
            slots = await pipe.execute()
        totals: dict[str, int] = {}
        for second, raw in zip(seconds, slots, strict=True):
            held = {_text(k): _text(v) for k, v in raw.items()}
            if held.get("s") != str(second):
                continue  # empty, or holding another second
            for name, value in held.items():
                if name.startswith("e:"):
                    totals[name[2:]] = totals.get(name[2:], 0) + int(value)
        return totals

    # -- listeners ---------------------------------------------------------------------------

    async def mark_listener(self, space_id: str, listener_key: str, now: float) -> None:
        await self.mark_listeners(space_id, (listener_key,), now)

    async def mark_listeners(
        self, space_id: str, listener_keys: Collection[str], now: float
    ) -> None:
        bucket = math.floor(now / LISTENER_BUCKET_S)
        slot = bucket % _LISTENER_SLOTS
        keys = [
            self._key(LISTENER_BUCKETS_KEY, space_id),
            self._key(LISTENERS_KEY, space_id, slot=slot),
        ]
        batch = list(listener_keys)
        for start in range(0, len(batch), _MARK_BATCH):
            await self._mark_script(
                keys=keys,
                args=[slot, bucket, _LISTENER_TTL_S, *batch[start : start + _MARK_BATCH]],
            )

    async def listener_count(self, space_id: str, now: float) -> int:
        bucket = math.floor(now / LISTENER_BUCKET_S)
        count = await self._count_script(
            keys=[
                self._key(LISTENER_BUCKETS_KEY, space_id),
                *(self._key(LISTENERS_KEY, space_id, slot=s) for s in range(_LISTENER_SLOTS)),
            ],
            args=[bucket - _WINDOW_BUCKETS, bucket],
        )
        return int(count)

    # -- who is present ----------------------------------------------------------------------

    async def mark_present(
        self, space_id: str, user_id: str, display_name: str, now: float
    ) -> None:
        await self._present_script(
            keys=[self._key(PRESENT_KEY, space_id), self._key(PRESENT_NAMES_KEY, space_id)],
            args=[
                user_id,
                display_name,
                repr(float(now)),
                repr(float(now - LISTENER_WINDOW_S)),
                AUDIENCE_KEPT,
                _LISTENER_TTL_S,
            ],
        )

    async def present(self, space_id: str, now: float) -> list[Present]:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrevrangebyscore(
                self._key(PRESENT_KEY, space_id),
                "+inf",
                repr(float(now - LISTENER_WINDOW_S)),
                withscores=True,
            )
            pipe.hgetall(self._key(PRESENT_NAMES_KEY, space_id))
            seen, names = await pipe.execute()
        held = {_text(user): _text(name) for user, name in names.items()}
        return [
            Present(_text(user), held[_text(user)], float(at))
            for user, at in seen
            if _text(user) in held
        ]

    # -- speaking ----------------------------------------------------------------------------

    async def set_speaking(self, space_id: str, speaking: Mapping[str, float], now: float) -> None:
        key = self._key(SPEAKING_KEY, space_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if speaking:
                pipe.hset(key, mapping={user: repr(float(v)) for user, v in speaking.items()})
                pipe.pexpire(key, int(SPEAKING_TTL_S * 1000))
            await pipe.execute()

    async def speaking(self, space_id: str) -> dict[str, float]:
        held = await self._redis.hgetall(self._key(SPEAKING_KEY, space_id))
        return {_text(user): float(_text(level)) for user, level in held.items()}

    # -- rate limits -------------------------------------------------------------------------

    async def take_token(
        self, key: str, per_second: float, burst: int, now: float, cost: float = 1.0
    ) -> float:
        if per_second <= 0 or burst < 1:
            raise ValueError("a rate limit needs per_second > 0 and burst >= 1")
        refill_ms = math.ceil(burst / per_second * 1000) + 1000
        wait = await self._token_script(
            keys=[RATE_KEY.format(prefix=self._prefix, key=key)],
            args=[repr(float(per_second)), burst, repr(float(now)), refill_ms, repr(float(cost))],
        )
        return float(_text(wait))

    # -- sessions ----------------------------------------------------------------------------

    async def revoke_session(self, session: str, until: float, now: float) -> None:
        ttl_ms = math.ceil((until - now) * 1000)
        if ttl_ms > 0:
            key = REVOKED_KEY.format(prefix=self._prefix, key=session)
            await self._redis.set(key, "1", px=ttl_ms)

    async def session_revoked(self, session: str, now: float) -> bool:
        key = REVOKED_KEY.format(prefix=self._prefix, key=session)
        return bool(await self._redis.exists(key))

    # -- lifecycle ---------------------------------------------------------------------------

    async def forget_space(self, space_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*self.space_keys(space_id))
            pipe.publish(self._key(EVENT_CHANNEL, space_id), _RESET)
            await pipe.execute()

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        self._closed = True
        for watch in self._watches.values():
            watch.ready.set()
            watch.wake()
        await cancel_and_wait(
            *(t for t in (self._manager, self._reader, *self._tasks) if t is not None)
        )
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        if self._owns_client:
            await self._redis.aclose()
