"""Placement in Redis, shared by every node of a cluster.

Theory of operation. A lease is one string key set with NX and a PX expiry by a script that also
INCRs the Space's fencing counter, so acquiring is atomic: of any number of nodes racing for a free
Space exactly one gets it, with a token larger than every earlier owner's. Renew and release are
scripts that act only while the key still holds the caller's token, so a node whose lease lapsed
and was taken cannot extend or delete the new owner's. Expiry runs on the Redis server's clock:
callers' clocks never decide who owns what. Heartbeats are keys with an expiry plus a sorted set
of node ids (scored by the last heartbeat's wall-clock time) to enumerate them; ids whose key has
lapsed are pruned when listed. docs/redis-keys.md lists every key.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

from townhall.node.placement import Lease, NodeId, NodeInfo

DEFAULT_PREFIX = "townhall"

# ---- Keys (docs/redis-keys.md). Format with prefix=, space=, node=. -------------------------------

# STRING "<token> <ended 0|1> <node id> <node url>": the Space's media lease. Set NX with a PX expiry
# by the acquire script, extended by renew, deleted (or turned into an `ended` pointer) by release.
LEASE_KEY = "{prefix}:space:{{{space}}}:lease"
# STRING, integer: the Space's fencing counter, INCRed by every acquisition. TTL FENCE_TTL_S from the
# last acquisition (longer than any Space stays open without a media owner).
FENCE_KEY = "{prefix}:space:{{{space}}}:fence"
# STRING, JSON NodeInfo: a media node's heartbeat, with a PX expiry of the heartbeat's ttl.
NODE_KEY = "{prefix}:node:{node}"
# SORTED SET: node id → UNIX seconds of its last heartbeat; listed by `nodes`, pruned of ids whose
# NODE_KEY has lapsed.
NODES_KEY = "{prefix}:nodes"

FENCE_TTL_S = 30 * 86_400

_ACQUIRE = """
-- KEYS: lease, fence; ARGV: node id, url, ttl ms, fence ttl s
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local token = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('SET', KEYS[1], token .. ' 0 ' .. ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[3])
return token
"""

_RENEW = """
-- KEYS: lease; ARGV: token, ttl ms
local held = redis.call('GET', KEYS[1])
if not held then return 0 end
local token, ended = string.match(held, '^(%d+) (%d) ')
if token ~= ARGV[1] or ended ~= '0' then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

_RELEASE = """
-- KEYS: lease; ARGV: token, linger ms
local held = redis.call('GET', KEYS[1])
if not held then return 0 end
local token, rest = string.match(held, '^(%d+) %d (.*)$')
if token ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], token .. ' 1 ' .. rest, 'PX', ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _lease(space_id: str, raw: str) -> Lease | None:
    token, ended, node_id, url = [*raw.split(" ", 3), "", "", ""][:4]
    if not token.isdigit() or not node_id or not url:
        return None
    return Lease(space_id, NodeId(node_id), url, int(token), ended == "1")


class RedisPlacement:
    def __init__(self, redis: Redis, *, prefix: str = DEFAULT_PREFIX, owns_client: bool = False):
        self._redis = redis
        self._prefix = prefix
        self._owns_client = owns_client
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = DEFAULT_PREFIX, pool_timeout: float = 2.0
    ) -> RedisPlacement:
        """Its own small pool: lease renewals must not queue behind the API's Redis traffic."""
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=16,
            timeout=pool_timeout,
            decode_responses=True,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
        )
        return cls(Redis.from_pool(pool), prefix=prefix, owns_client=True)

    def _key(self, template: str, **names: str) -> str:
        return template.format(prefix=self._prefix, **names)

    async def heartbeat(self, node: NodeInfo, ttl_s: float) -> None:
        info = {
            "url": node.url,
            "capacity": node.capacity,
            "running": node.running,
            "draining": node.draining,
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key(NODE_KEY, node=node.node_id), json.dumps(info), px=_ms(ttl_s))
            pipe.zadd(self._key(NODES_KEY), {node.node_id: time.time()})
            await pipe.execute()

    async def leave(self, node_id: NodeId) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(NODE_KEY, node=node_id))
            pipe.zrem(self._key(NODES_KEY), node_id)
            await pipe.execute()

    async def nodes(self) -> list[NodeInfo]:
        ids = [_text(i) for i in await self._redis.zrange(self._key(NODES_KEY), 0, -1)]
        if not ids:
            return []
        raws = await self._redis.mget([self._key(NODE_KEY, node=node_id) for node_id in ids])
        found, lapsed = [], []
        for node_id, raw in zip(ids, raws, strict=True):
            info = _node(NodeId(node_id), _text(raw) if raw else None)
            if info is None:
                lapsed.append(node_id)
            else:
                found.append(info)
        if lapsed:
            await self._redis.zrem(self._key(NODES_KEY), *lapsed)
        return found

    async def acquire(self, space_id: str, node: NodeInfo, ttl_s: float) -> Lease | None:
        keys = [self._key(LEASE_KEY, space=space_id), self._key(FENCE_KEY, space=space_id)]
        token = int(await self._acquire(keys, [node.node_id, node.url, _ms(ttl_s), FENCE_TTL_S]))
        return Lease(space_id, node.node_id, node.url, token) if token > 0 else None

    async def renew(self, lease: Lease, ttl_s: float) -> bool:
        key = self._key(LEASE_KEY, space=lease.space_id)
        return bool(int(await self._renew([key], [lease.token, _ms(ttl_s)])))

    async def release(self, lease: Lease, linger_s: float = 0.0) -> None:
        key = self._key(LEASE_KEY, space=lease.space_id)
        await self._release([key], [lease.token, _ms(linger_s) if linger_s > 0 else 0])

    async def owners(self, space_ids: list[str]) -> dict[str, Lease]:
        if not space_ids:
            return {}
        raws = await self._redis.mget([self._key(LEASE_KEY, space=s) for s in space_ids])
        found = {}
        for space_id, raw in zip(space_ids, raws, strict=True):
            lease = _lease(space_id, _text(raw)) if raw else None
            if lease is not None:
                found[space_id] = lease
        return found

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()


def _node(node_id: NodeId, raw: str | None) -> NodeInfo | None:
    if not raw:
        return None
    try:
        info: Any = json.loads(raw)
        return NodeInfo(
            node_id,
            str(info["url"]),
            int(info["capacity"]),
            int(info["running"]),
            bool(info.get("draining", False)),
        )
    except (ValueError, KeyError, TypeError):
        return None
