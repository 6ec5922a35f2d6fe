"""The Placement contract, run against both implementations (embedded; Redis on a real server).

`lapse` lets a lease or heartbeat run out: the embedded store's clock is moved on; Redis expires keys
on its own clock, so the test waits (with a deadline) until the key is gone. Leases in these tests
are short for that reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

import pytest
import redis.asyncio

from townhall.node.embedded_placement import EmbeddedPlacement
from townhall.node.placement import Lease, NodeId, NodeInfo, Placement, owner_of
from townhall.node.redis_placement import RedisPlacement

SPACE = "abcdefghij"
TTL = 0.4  # seconds: short, so a Redis lease lapses quickly

A = NodeInfo(NodeId("node-a"), "http://127.0.0.1:9001", capacity=10, running=0)
B = NodeInfo(NodeId("node-b"), "http://127.0.0.1:9002", capacity=10, running=3)


@dataclass
class Subject:
    placement: Placement
    peer: Placement  # a second node's view of the same shared placement
    lapse: Callable[[Callable[[], Awaitable[bool]]], Awaitable[None]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["embedded", "redis"])
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
    if request.param == "embedded":
        clock = FakeClock()
        embedded = EmbeddedPlacement(clock)

        async def advance(gone: Callable[[], Awaitable[bool]]) -> None:
            clock.now += TTL + 0.001
            assert await gone()

        yield Subject(embedded, embedded, advance)
        return
    url: str = request.getfixturevalue("redis_url")
    client = redis.asyncio.Redis.from_url(url)
    await client.flushall()
    await client.aclose()
    one, two = RedisPlacement.from_url(url), RedisPlacement.from_url(url)

    async def wait(gone: Callable[[], Awaitable[bool]]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10 * TTL + 5
        while not await gone():
            assert loop.time() < deadline, "the key did not expire"
            await asyncio.sleep(0.02)

    yield Subject(one, two, wait)
    await one.close()
    await two.close()


async def test_only_one_of_many_racing_nodes_acquires_a_free_space(subject: Subject) -> None:
    nodes = [replace(A, node_id=NodeId(f"node-{n}")) for n in range(20)]
    won = await asyncio.gather(
        *(
            (subject.placement if n % 2 else subject.peer).acquire(SPACE, node, TTL * 10)
            for n, node in enumerate(nodes)
        )
    )
    leases = [lease for lease in won if lease is not None]
    assert len(leases) == 1
    owner = await owner_of(subject.peer, SPACE)
    assert owner == leases[0]


async def test_the_owner_is_known_to_every_node_with_its_address(subject: Subject) -> None:
    lease = await subject.placement.acquire(SPACE, A, TTL)
    assert lease is not None
    found = await subject.peer.owners([SPACE, "otherspace"])
    assert set(found) == {SPACE}
    assert (found[SPACE].node_id, found[SPACE].url) == (A.node_id, A.url)
    assert not found[SPACE].ended


async def test_a_lapsed_lease_is_taken_by_another_node_with_a_larger_fencing_token(
    subject: Subject,
) -> None:
    first = await subject.placement.acquire(SPACE, A, TTL)
    assert first is not None
    assert await subject.peer.acquire(SPACE, B, TTL) is None  # held: nobody else gets it

    async def gone() -> bool:
        return await owner_of(subject.peer, SPACE) is None

    await subject.lapse(gone)
    second = await subject.peer.acquire(SPACE, B, TTL)
    assert second is not None
    assert second.token > first.token
    assert second.node_id == B.node_id


async def test_an_ex_owner_can_neither_renew_nor_release_the_new_owners_lease(
    subject: Subject,
) -> None:
    first = await subject.placement.acquire(SPACE, A, TTL)
    assert first is not None

    async def gone() -> bool:
        return await owner_of(subject.peer, SPACE) is None

    await subject.lapse(gone)
    second = await subject.peer.acquire(SPACE, B, 60)
    assert second is not None
    assert not await subject.placement.renew(first, 60)
    await subject.placement.release(first)
    assert await owner_of(subject.peer, SPACE) == second


async def test_renewing_keeps_the_lease_past_its_first_lifetime(subject: Subject) -> None:
    lease = await subject.placement.acquire(SPACE, A, TTL)
    # A second Space's lease, taken at the same moment for the same time and never renewed,
    # tells when the first lifetime is over.
    witness = await subject.placement.acquire("witnessxyz", A, TTL)
    assert lease is not None
    assert witness is not None
    assert await subject.placement.renew(lease, 60)

    async def first_lifetime_over() -> bool:
        return await owner_of(subject.peer, "witnessxyz") is None

    await subject.lapse(first_lifetime_over)
    assert await owner_of(subject.peer, SPACE) == lease
    assert await subject.placement.renew(lease, 60)


async def test_release_frees_the_space_at_once(subject: Subject) -> None:
    lease = await subject.placement.acquire(SPACE, A, 60)
    assert lease is not None
    await subject.placement.release(lease)
    assert await owner_of(subject.peer, SPACE) is None
    again = await subject.peer.acquire(SPACE, B, 60)
    assert again is not None
    assert again.token > lease.token


async def test_an_ended_space_points_at_its_node_for_a_while_and_cannot_be_renewed(
    subject: Subject,
) -> None:
    lease = await subject.placement.acquire(SPACE, A, 60)
    assert lease is not None
    await subject.placement.release(lease, linger_s=TTL)
    pointer = await owner_of(subject.peer, SPACE)
    assert pointer is not None
    assert pointer.ended
    assert pointer.node_id == A.node_id
    assert not await subject.placement.renew(lease, 60)
    assert await subject.peer.acquire(SPACE, B, 60) is None

    async def gone() -> bool:
        return await owner_of(subject.peer, SPACE) is None

    await subject.lapse(gone)


async def test_nodes_announce_themselves_until_they_leave_or_lapse(subject: Subject) -> None:
    await subject.placement.heartbeat(A, 60)
    await subject.peer.heartbeat(replace(B, draining=True), TTL)
    seen = {n.node_id: n for n in await subject.peer.nodes()}
    assert set(seen) == {A.node_id, B.node_id}
    assert seen[A.node_id] == A
    assert seen[B.node_id].draining
    assert not seen[B.node_id].has_room

    async def b_gone() -> bool:
        return B.node_id not in {n.node_id for n in await subject.placement.nodes()}

    await subject.lapse(b_gone)
    await subject.placement.leave(A.node_id)
    assert await subject.peer.nodes() == []


async def test_a_lease_carries_what_a_forwarder_needs(subject: Subject) -> None:
    lease = await subject.placement.acquire(SPACE, A, 60)
    assert isinstance(lease, Lease)
    assert lease.url == A.url
    assert lease.space_id == SPACE


async def test_the_next_owner_learns_the_newest_position_the_last_one_reported(
    subject: Subject,
) -> None:
    first = await subject.placement.acquire(SPACE, A, 60)
    assert first is not None
    assert first.previous_msn == 0
    assert await subject.placement.renew(first, 60, msn=41)
    assert await subject.placement.renew(first, 60, msn=40)  # a report never moves back
    await subject.placement.release(first, msn=42)
    second = await subject.peer.acquire(SPACE, B, TTL)
    assert second is not None
    assert second.previous_msn == 42
