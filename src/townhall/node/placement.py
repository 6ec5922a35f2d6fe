"""Placement: which node runs each open Space's media, decided with leases.

Theory of operation. Every media node announces itself with a heartbeat (`NodeInfo`: where peers
reach it, how many Spaces it may run and runs now, whether it is draining) that lapses unless renewed.
Each open Space has at most one owner: the node holding its *lease*. `acquire` succeeds only while
nobody holds the lease, and hands out a *fencing token* that grows with every acquisition of that
Space, so a later owner always has a larger token than any earlier one. The owner `renew`s the lease
well inside its time to live; a node that cannot renew (dead, paused, cut off) stops publishing
before the lease can lapse (see `node.keeper`), and once it has lapsed another node acquires it
and takes the Space over from the records. `release` gives the lease up at once (drain, end); with
`linger_s` it leaves a non-renewable pointer behind for that long, so requests for an ended
Space's final playlist still find the node that holds it.

Two implementations with one contract suite: `EmbeddedPlacement` (one process, in memory) and
`RedisPlacement` (a cluster). They are chosen in the composition root, like `LiveState`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType, Protocol

NodeId = NewType("NodeId", str)

# How long a lease lives unless renewed, and how often its owner renews it: a dead owner is
# replaced within about LEASE_TTL_S + one scan, and two missed renewals are tolerated.
LEASE_TTL_S = 3.0
RENEW_EVERY_S = 1.0
# How long a node's heartbeat lives unless renewed.
NODE_TTL_S = 3.0


@dataclass(frozen=True)
class NodeInfo:
    """What a media node announces about itself."""

    node_id: NodeId
    url: str  # where other nodes reach its HTTP server, e.g. http://10.0.0.5:8080
    capacity: int  # open Spaces it may run
    running: int  # open Spaces it runs now
    draining: bool = False  # handing its Spaces over; takes no new ones

    @property
    def has_room(self) -> bool:
        return not self.draining and self.running < self.capacity

    @property
    def load(self) -> float:
        return self.running / self.capacity if self.capacity > 0 else 1.0


@dataclass(frozen=True)
class Lease:
    """One node's right to run one Space's media, until it lapses or is released."""

    space_id: str
    node_id: NodeId
    url: str  # the owner's NodeInfo.url, so a request can be forwarded without another lookup
    token: int  # fencing token: larger for every later acquisition of the same Space
    ended: bool = False  # a lingering pointer to an ended stream's node (not renewable)


class Placement(Protocol):
    async def heartbeat(self, node: NodeInfo, ttl_s: float) -> None:
        """Announce (or refresh) a node for `ttl_s` seconds."""
        ...

    async def leave(self, node_id: NodeId) -> None:
        """Withdraw a node's announcement at once (it is stopping)."""
        ...

    async def nodes(self) -> list[NodeInfo]:
        """Every node whose heartbeat has not lapsed, in no particular order."""
        ...

    async def acquire(self, space_id: str, node: NodeInfo, ttl_s: float) -> Lease | None:
        """The Space's lease for `node` if nobody holds it now, else None."""
        ...

    async def renew(self, lease: Lease, ttl_s: float) -> bool:
        """Extend a lease still held with the same token; False if it lapsed or was taken."""
        ...

    async def release(self, lease: Lease, linger_s: float = 0.0) -> None:
        """Give a held lease up (no-op if it is no longer ours). With `linger_s` > 0 an `ended`
        pointer to this node stays for that long; nobody can acquire the Space meanwhile."""
        ...

    async def owners(self, space_ids: list[str]) -> dict[str, Lease]:
        """The current lease of each Space that has one."""
        ...

    async def close(self) -> None: ...


async def owner_of(placement: Placement, space_id: str) -> Lease | None:
    return (await placement.owners([space_id])).get(space_id)
