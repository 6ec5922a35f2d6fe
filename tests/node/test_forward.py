"""Relaying between nodes: only the cluster's own nodes are believed to have relayed a request."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.delivery.test_origin import SPACE, media
from tests.delivery.test_segment_stream import read_while_produced, serve, serve_app
from townhall.media.pipeline import SpaceMedia
from townhall.node.embedded_placement import EmbeddedPlacement
from townhall.node.forward import RELAY_HEADER, Forwarder, relay_key
from townhall.node.placement import NodeId, NodeInfo

__all__ = ["media"]  # the fixture


def request_with(headers: dict[str, str]) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/spaces/abcdefghij/rtc",
        "raw_path": b"/api/spaces/abcdefghij/rtc",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.9", 5555),
        "scheme": "http",
        "server": ("127.0.0.1", 8080),
    }
    return Request(scope)


async def test_a_request_relayed_by_a_node_of_this_cluster_is_recognised() -> None:
    forwarder = Forwarder(EmbeddedPlacement(), NodeId("a"), relay_key("s" * 40))
    try:
        assert forwarder.relayed(request_with({RELAY_HEADER: relay_key("s" * 40)}))
    finally:
        await forwarder.close()


async def test_a_stranger_cannot_claim_a_relay_to_skip_the_limits() -> None:
    forwarder = Forwarder(EmbeddedPlacement(), NodeId("a"), relay_key("s" * 40))
    try:
        assert not forwarder.relayed(request_with({}))
        assert not forwarder.relayed(request_with({RELAY_HEADER: "node-b"}))
        assert not forwarder.relayed(request_with({RELAY_HEADER: relay_key("t" * 40)}))
    finally:
        await forwarder.close()


async def test_a_segment_in_production_is_relayed_part_by_part_as_the_owner_writes_it(
    media: SpaceMedia,
) -> None:
    async for owned in serve(media):
        owner_url, _, stream_path = owned.partition(f"/{SPACE}/")
        owner = NodeInfo(NodeId("owner"), owner_url, capacity=10, running=0)
        placement = EmbeddedPlacement()
        await placement.heartbeat(owner, 30)
        assert await placement.acquire(SPACE, owner, 30) is not None
        forwarder = Forwarder(placement, NodeId("relay"), relay_key("s" * 40))

        async def is_open() -> bool:
            return True

        async def relay(request: Request, relaying: Forwarder = forwarder) -> Response:
            answer = await relaying.relay(request, SPACE, lambda: False, is_open)
            assert answer is not None
            return answer

        try:
            async for relay_url in serve_app(Starlette(routes=[Route("/{path:path}", relay)])):
                await read_while_produced(media, f"{relay_url}/{SPACE}/{stream_path}")
        finally:
            await forwarder.close()
