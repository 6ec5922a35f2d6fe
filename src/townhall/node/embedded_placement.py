"""Placement for one process: leases and heartbeats in memory, with the same rules as in Redis.

The clock is injectable so the contract suite can let leases lapse without waiting. Fencing tokens
only need to grow within one process's life: a restarted process starts a new stream anyway, and
nothing else holds leases.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from townhall.node.placement import Lease, NodeId, NodeInfo


class EmbeddedPlacement:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._nodes: dict[NodeId, tuple[NodeInfo, float]] = {}  # node → (info, expires at)
        self._leases: dict[str, tuple[Lease, float]] = {}  # space → (lease, expires at)
        self._tokens: dict[str, int] = {}

    def _held(self, space_id: str) -> Lease | None:
        found = self._leases.get(space_id)
        if found is None:
            return None
        if found[1] <= self._clock():
            del self._leases[space_id]
            return None
        return found[0]

    async def heartbeat(self, node: NodeInfo, ttl_s: float) -> None:
        self._nodes[node.node_id] = (node, self._clock() + ttl_s)

    async def leave(self, node_id: NodeId) -> None:
        self._nodes.pop(node_id, None)

    async def nodes(self) -> list[NodeInfo]:
        now = self._clock()
        for node_id in [n for n, (_, expires) in self._nodes.items() if expires <= now]:
            del self._nodes[node_id]
        return [info for info, _ in self._nodes.values()]

    async def acquire(self, space_id: str, node: NodeInfo, ttl_s: float) -> Lease | None:
        if self._held(space_id) is not None:
            return None
        token = self._tokens[space_id] = self._tokens.get(space_id, 0) + 1
        lease = Lease(space_id, node.node_id, node.url, token)
        self._leases[space_id] = (lease, self._clock() + ttl_s)
        return lease

    async def renew(self, lease: Lease, ttl_s: float) -> bool:
        held = self._held(lease.space_id)
        if held is None or held.token != lease.token or held.ended:
            return False
        self._leases[lease.space_id] = (held, self._clock() + ttl_s)
        return True

    async def release(self, lease: Lease, linger_s: float = 0.0) -> None:
        held = self._held(lease.space_id)
        if held is None or held.token != lease.token:
            return
        if linger_s > 0:
            self._leases[lease.space_id] = (replace(held, ended=True), self._clock() + linger_s)
        else:
            del self._leases[lease.space_id]

    async def owners(self, space_ids: list[str]) -> dict[str, Lease]:
        found = {space_id: self._held(space_id) for space_id in space_ids}
        return {space_id: lease for space_id, lease in found.items() if lease is not None}

    async def close(self) -> None:
        return None
