"""The node keeper: announces this media node, holds the leases of the Spaces it runs, takes
unowned open Spaces over, and hands its Spaces to other nodes when it drains.

Theory of operation. One task per media node wakes every `tick_s`:
* it renews each held lease every `renew_every_s`; a renewal that says "no longer yours" stops the
  Space here at once. The Space keeps running only while the last renewal that was not refused is
  younger than the lease's time to live minus a safety margin (`fence_margin_s`). Past that,
  `may_publish` answers False to the stream (no part is published or recorded any more) and the
  Space is stopped, all before the lease can lapse in the store: a paused ex-owner (SIGSTOP, a
  stalled loop) never publishes beside the next owner. A renewal that cannot reach the store at
  all counts as not refused: while Redis is down nobody can acquire a Space, and stopping every
  stream for a Redis restart would end the event the cluster exists to keep.
* it announces itself (NodeInfo: where peers reach it, capacity, load, draining) every
  `renew_every_s`;
* every `scan_every_s` it lists the open Spaces from the records and their owners from the
  placement, and acquires each unowned Space that this node should run: the least loaded node with
  room (ties broken by a hash of Space and node, so nodes agree without talking) acquires at once;
  any other node with room acquires a Space that stayed unowned for `orphan_scans` scans (the
  chosen node may be dead or full). Acquiring is atomic in the placement: one node wins. The
  winner starts the Space from the records (`MediaHost.start`).
`place_now` does the same for one Space right away when a control call opens it, so a node that
runs media starts a new Space without waiting for a scan. `drain` (SIGTERM) marks the node as
draining, releases its leases one Space at a time and waits until another node has taken each one
(bounded), then stops it here, so the audience hears at most the take-over's gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from townhall.node.host import MediaHost, NodeFull, SpaceRuntime
from townhall.node.placement import (
    LEASE_TTL_S,
    NODE_TTL_S,
    RENEW_EVERY_S,
    Lease,
    NodeId,
    NodeInfo,
    Placement,
)
from townhall.spaces.model import Space, SpaceId, SpaceState
from townhall.state.records import Records
from townhall.state.unavailable import is_unavailable
from townhall.tasks import cancel_and_wait

log = logging.getLogger(__name__)

OPEN_STATES = [SpaceState.GREEN_ROOM, SpaceState.LIVE]
ENDED_LINGER_S = 120.0
CLUSTER_FULL = "every media node is full; try again shortly"  # an ended stream's final playlist stays reachable on its node this long


@dataclass(frozen=True)
class KeeperConfig:
    lease_ttl_s: float = LEASE_TTL_S
    renew_every_s: float = RENEW_EVERY_S
    node_ttl_s: float = NODE_TTL_S
    scan_every_s: float = 0.25
    tick_s: float = 0.125
    fence_margin_s: float = 0.5  # stop publishing this long before the lease could lapse
    orphan_scans: int = 3  # a Space unowned this many scans is taken by any node with room
    scan_limit: int = 10_000  # open Spaces looked at per scan
    drain_wait_s: float = 10.0  # per Space: how long a drain waits for another node to take it


def rank(nodes: list[NodeInfo], space_id: str) -> list[NodeInfo]:
    """Nodes with room, best first for this Space: least loaded, then a stable per-Space order
    (rendezvous hashing), so every node computes the same choice from the same view."""

    def tie(node: NodeInfo) -> bytes:
        return hashlib.blake2b(f"{space_id}/{node.node_id}".encode(), digest_size=8).digest()

    return sorted((n for n in nodes if n.has_room), key=lambda n: (n.load, tie(n)))


@dataclass
class _Held:
    lease: Lease
    renewed_at: float  # monotonic time at which the last successful renewal was sent


@dataclass
class KeeperStats:
    acquired: int = 0
    renew_failures: int = 0
    lost: int = 0  # leases that lapsed or were taken while this node ran the Space
    released: int = 0
    unowned_seen: dict[str, int] = field(default_factory=dict)


class NodeKeeper:
    def __init__(
        self,
        host: MediaHost,
        placement: Placement,
        records: Records,
        node_id: NodeId,
        url: str,
        *,
        runs_media: bool = True,
        exclusive: bool = False,
        config: KeeperConfig = KeeperConfig(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.placement = placement
        self.records = records
        self.node_id = node_id
        self.url = url
        self.runs_media = runs_media
        # The only process there is (embedded placement): nobody else can take a Space over, so a
        # stalled event loop must not make it stop its own Spaces.
        self.exclusive = exclusive
        self.config = config
        self.stats = KeeperStats()
        self._clock = clock
        self._held: dict[str, _Held] = {}
        self._draining = False
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._acquiring: set[str] = set()
        self._stopping: set[asyncio.Task[None]] = set()

    # -- what the rest of the node asks -----------------------------------------------------------
    def info(self) -> NodeInfo:
        return NodeInfo(
            self.node_id,
            self.url,
            self.host.capacity if self.runs_media else 0,
            len(self.host.running),
            self._draining or not self.runs_media,
        )

    def leases(self) -> list[Lease]:
        """The leases this node holds now (for `/metrics`)."""
        return [held.lease for held in self._held.values()]

    @property
    def draining(self) -> bool:
        return self._draining

    def may_publish(self, space_id: str) -> bool:
        """Whether this node may still publish the Space: it holds the lease and its last renewal
        is recent enough that the lease cannot have lapsed in the shared store."""
        held = self._held.get(space_id)
        return held is not None and (self.exclusive or self._clock() < self._deadline(held))

    def _deadline(self, held: _Held) -> float:
        return held.renewed_at + self.config.lease_ttl_s - self.config.fence_margin_s

    async def ensure_room(self) -> None:
        """Raise NodeFull unless some media node has room for one more open Space: asked before
        a Space that opens at once is written, so that a refused creation leaves no record."""
        if not any(n.has_room for n in await self._view()):
            raise NodeFull(CLUSTER_FULL)

    async def place_now(self, space: Space) -> None:
        """A control call opened (or touched) `space`: make sure some node will run it. Raises
        NodeFull when no media node in the cluster has room."""
        if space.state not in OPEN_STATES or space.id in self._held or await self._owned(space.id):
            return
        ranked = rank(await self._view(), space.id)
        if not ranked:
            raise NodeFull(CLUSTER_FULL)
        mine = self.runs_media and not self._draining and ranked[0].node_id == self.node_id
        if not mine or space.id in self._acquiring:  # another node's, or a scan is taking it
            return
        if await self._take(space) is None and not await self._owned(space.id):
            # This node looked best but another Space took its last slot meanwhile (two
            # creations at once): say so, rather than leave a green room nobody runs.
            raise NodeFull(CLUSTER_FULL)

    async def _owned(self, space_id: str) -> bool:
        return (await self.placement.owners([space_id])).get(space_id) is not None

    # -- the loop -----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="node-keeper")

    async def _run(self) -> None:
        last_renew = last_scan = -float("inf")
        while True:
            now = self._clock()
            try:
                self._enforce_deadlines()
                if now - last_renew >= self.config.renew_every_s:
                    last_renew = now
                    await self._renew_all()
                    if self.runs_media:
                        await self.placement.heartbeat(self.info(), self.config.node_ttl_s)
                if (
                    self.runs_media
                    and not self._draining
                    and now - last_scan >= self.config.scan_every_s
                ):
                    last_scan = now
                    await self.scan()
            except Exception:  # the store may be down: keep trying, the deadlines protect us
                log.warning("node keeper: placement step failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.tick_s):
                    await self._wake.wait()
            self._wake.clear()

    def _enforce_deadlines(self) -> None:
        if self.exclusive:
            return
        now = self._clock()
        for space_id, held in list(self._held.items()):
            if now >= self._deadline(held):
                log.error(
                    "space %s: lease %d not renewed in time; stopping here",
                    space_id,
                    held.lease.token,
                )
                self._lose(space_id)

    def _lose(self, space_id: str) -> None:
        if self._held.pop(space_id, None) is not None:
            self.stats.lost += 1
            task = asyncio.create_task(self.host.stop(SpaceId(space_id)), name=f"stop-{space_id}")
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def _renew_all(self) -> None:
        async def renew(space_id: str, held: _Held) -> None:
            sent = self._clock()
            try:
                kept = await self.placement.renew(
                    held.lease, self.config.lease_ttl_s, self.host.position(space_id)
                )
            except Exception as exc:
                self.stats.renew_failures += 1
                if is_unavailable(exc) and self._held.get(space_id) is held:
                    # The store cannot be reached, so nobody can acquire the Space either: the
                    # audience keeps its audio through a Redis outage. (A node cut off from Redis
                    # while the others reach it may publish beside the next owner until it
                    # reaches Redis again and is told; listeners are routed to the new owner.)
                    held.renewed_at = sent
                    log.warning("space %s: cannot reach the placement store: %s", space_id, exc)
                else:
                    log.warning("space %s: renewing the lease failed", space_id, exc_info=True)
                return
            if not kept and self._held.get(space_id) is held:
                # Lapsed with nobody else holding it (the store restarted, a long stall): take it
                # again and go on; held by another node: stop here.
                again = await self._reacquire(held)
                if again is None:
                    log.error(
                        "space %s: lease %d was lost; stopping here", space_id, held.lease.token
                    )
                    self._lose(space_id)
                    return
                log.warning("space %s: lease lapsed; taken again as %d", space_id, again.token)
                held.lease = again
            if self._held.get(space_id) is held:
                held.renewed_at = sent

        await asyncio.gather(*(renew(s, h) for s, h in list(self._held.items())))

    async def _reacquire(self, held: _Held) -> Lease | None:
        try:
            return await self.placement.acquire(
                held.lease.space_id, self.info(), self.config.lease_ttl_s
            )
        except Exception:
            log.warning("space %s: taking the lease again failed", held.lease.space_id)
            return None

    async def scan(self) -> None:
        """One pass over the open Spaces: take over what nobody runs and this node should."""
        spaces = await self.records.list_spaces(OPEN_STATES, limit=self.config.scan_limit)
        owners = await self.placement.owners([s.id for s in spaces])
        nodes: list[NodeInfo] | None = None
        unowned_seen = self.stats.unowned_seen
        for space_id in [s for s in unowned_seen if s in owners or s not in {x.id for x in spaces}]:
            del unowned_seen[space_id]
        for space in spaces:
            if space.id in owners or space.id in self._held:
                continue
            if nodes is None:
                nodes = await self._view()
            seen = unowned_seen[space.id] = unowned_seen.get(space.id, 0) + 1
            ranked = rank(nodes, space.id)
            mine = bool(ranked) and ranked[0].node_id == self.node_id
            if mine or (seen >= self.config.orphan_scans and self.info().has_room):
                await self._take(space)

    async def _view(self) -> list[NodeInfo]:
        """The media nodes as announced, with this node as it is now (its own announcement may
        be half a renewal old, or not made yet in the first moments after a start)."""
        others = [n for n in await self.placement.nodes() if n.node_id != self.node_id]
        return [*others, self.info()] if self.runs_media else others

    async def _take(self, space: Space) -> SpaceRuntime | None:
        if space.id in self._acquiring or space.id in self._held:
            return None
        if len(self.host.running) >= self.host.capacity:
            return None
        self._acquiring.add(space.id)
        try:
            sent = self._clock()
            lease = await self.placement.acquire(space.id, self.info(), self.config.lease_ttl_s)
            if lease is None:
                return None
            held = self._held[space.id] = _Held(lease, sent)
            self.stats.acquired += 1
            fresh = await self.records.space(space.id)  # the records as of now, not as listed
            runtime = None
            if fresh is not None:
                try:
                    runtime = await self.host.start(
                        fresh, lease, lambda: self.may_publish(space.id)
                    )
                except NodeFull:
                    runtime = None
            if runtime is None:  # not open any more, or no room after all
                if self._held.get(space.id) is held:
                    del self._held[space.id]
                await self.placement.release(lease)
                return None
            log.info("space %s: placed on node %s (lease %d)", space.id, self.node_id, lease.token)
            return runtime
        finally:
            self._acquiring.discard(space.id)

    async def on_ended(self, runtime: SpaceRuntime) -> None:
        """The host stopped an ended Space: release its lease, pointing at this node for a while
        so the final playlist stays reachable."""
        held = self._held.pop(runtime.space_id, None)
        if held is None:
            return
        try:
            await self.placement.release(
                held.lease, linger_s=ENDED_LINGER_S, msn=runtime.media.packager.next_part[0]
            )
        except Exception:
            log.warning("space %s: releasing the lease failed", runtime.space_id, exc_info=True)

    # -- stopping ----------------------------------------------------------------------------------
    async def drain(self) -> None:
        """Hand every Space to other nodes (bounded per Space), then stop them here."""
        self._draining = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self.placement.heartbeat(self.info(), self.config.node_ttl_s)
        for space_id in list(self._held):
            held = self._held.pop(space_id, None)
            if held is None:
                continue
            try:
                await self.placement.release(held.lease, msn=self.host.position(space_id))
                self.stats.released += 1
                await self._wait_taken(space_id)
            except Exception:
                log.warning("space %s: handing over failed", space_id, exc_info=True)
            await self.host.stop(SpaceId(space_id))

    async def _wait_taken(self, space_id: str) -> None:
        if not await self._others_have_room():
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.drain_wait_s
        while loop.time() < deadline:
            lease = (await self.placement.owners([space_id])).get(space_id)
            if lease is not None and lease.node_id != self.node_id:
                log.info("space %s: handed over to node %s", space_id, lease.node_id)
                return
            await asyncio.sleep(0.05)
        log.warning("space %s: no node took it within %.0f s", space_id, self.config.drain_wait_s)

    async def _others_have_room(self) -> bool:
        return any(n.has_room for n in await self.placement.nodes() if n.node_id != self.node_id)

    async def close(self) -> None:
        """Stop the loop (after `drain`, or at once) and withdraw the node's announcement."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        if self.runs_media:
            with contextlib.suppress(Exception):
                await self.placement.leave(self.node_id)
        for space_id, held in list(self._held.items()):
            with contextlib.suppress(Exception):
                await self.placement.release(held.lease)
            del self._held[space_id]

    def wake(self) -> None:
        self._wake.set()
