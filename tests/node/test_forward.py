"""Relaying between nodes: only the cluster's own nodes are believed to have relayed a request."""

from __future__ import annotations

from starlette.requests import Request

from townhall.node.embedded_placement import EmbeddedPlacement
from townhall.node.forward import RELAY_HEADER, Forwarder, relay_key
from townhall.node.placement import NodeId


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
