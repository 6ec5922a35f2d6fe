"""What a request may cost the real server before any route runs (api/bounds.py): bodies over the
cap are refused unread, heads over the cap are refused, and neither costs an open Space's audio."""

from __future__ import annotations

import socket
import time

import httpx

from tests.conftest import Server, wait_until
from townhall.api.bounds import HEADER_BYTES_MAX, JSON_BODY_MAX, SDP_BODY_MAX
from townhall.harness import Edge


def test_a_huge_json_body_is_refused_at_once_and_open_spaces_keep_their_clock(
    server: Server,
) -> None:
    space = server.create_space()
    wait_until(
        lambda: httpx.get(space.playlist_url, timeout=10).status_code == 200,
        30,
        "the Space's stream to start",
    )
    body = b'{"username": "' + b"a" * 38_000_000 + b'", "password": "x"}'
    started = time.monotonic()
    try:
        response = httpx.post(
            f"{server.url}/api/auth/signin",
            content=body,
            headers={"content-type": "application/json"},
            timeout=30,
        )
    except httpx.TransportError:  # refused before we finished sending: that is fine too
        response = None
    took = time.monotonic() - started
    if response is not None:
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "too_large"
    assert took < 10, f"refusing 38 MB took {took:.1f} s"
    # The media clock logs every stall it skips; parsing 38 MB on the event loop used to skip
    # hundreds of ticks. Prove the clock still runs after the refusal, then that it never stalled.
    wait_until(
        lambda: httpx.get(space.playlist_url, timeout=10).status_code == 200,
        30,
        "the Space's playlist after the refusal",
    )
    assert not server.proc.saw("media clock stalled"), server.proc.output()


def test_bodies_are_capped_per_route_in_the_json_error_shape(server: Server) -> None:
    space = server.create_space(live=False)
    bearer = {"Authorization": f"Bearer {space.host_token}"}
    # A bodiless command with a body over the JSON cap: refused, not run.
    refused = httpx.post(
        f"{server.url}/api/spaces/{space.id}/go-live",
        content=b"x" * (JSON_BODY_MAX + 1),
        headers=bearer,
        timeout=10,
    )
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "too_large"
    assert server.call("GET", f"/api/spaces/{space.id}")["space"]["state"] != "live"

    # A chunked body (no Content-Length) is cut off once it passes the cap.
    def chunks() -> object:
        for _ in range(JSON_BODY_MAX // 1000 + 2):
            yield b"a" * 1000

    chunked = httpx.post(
        f"{server.url}/api/auth/guest",
        content=chunks(),  # type: ignore[arg-type]
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert chunked.status_code == 413
    assert chunked.json()["error"]["code"] == "too_large"

    # An SDP offer may be larger than a JSON command (it gets past the cap to the SDP checks) ...
    offer = {"type": "offer", "sdp": "v=0\r\n" * ((JSON_BODY_MAX * 2) // 5)}
    rtc = f"{server.url}/api/spaces/{space.id}/rtc"
    assert httpx.post(rtc, json=offer, headers=bearer, timeout=10).status_code == 400
    # ... but not without bound.
    offer = {"type": "offer", "sdp": "v=0\r\n" * (SDP_BODY_MAX // 5)}
    too_big = httpx.post(rtc, json=offer, headers=bearer, timeout=10)
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "too_large"


def test_a_request_head_over_the_cap_is_refused(server: Server) -> None:
    response = httpx.get(
        f"{server.url}/api/health", headers={"x-padding": "a" * (HEADER_BYTES_MAX + 1)}, timeout=10
    )
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "too_large"
    assert httpx.get(f"{server.url}/api/health", timeout=10).status_code == 200


def test_a_connection_that_never_finishes_its_request_is_closed(server: Server) -> None:
    """Slow-loris: a silent connection and one whose body never comes are both let go (after
    api/bounds.py's deadlines), while a normal request on another connection is answered."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    silent = socket.create_connection((host, int(port)))
    dripping = socket.create_connection((host, int(port)))
    dripping.sendall(
        b"POST /api/auth/guest HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 100\r\n\r\n{"
    )
    started = time.monotonic()
    for conn in (silent, dripping):
        conn.settimeout(60)
        with conn:
            assert conn.recv(100) == b""  # closed by the server, nothing answered
    assert time.monotonic() - started < 40


def test_the_shipped_edges_refuse_oversized_bodies_without_asking_the_origin(
    server: Server, edge: Edge
) -> None:
    before = edge.origin_requests()
    response = httpx.post(
        f"{edge.url}/api/auth/signin",
        content=b"{" + b" " * (JSON_BODY_MAX + 1) + b"}",
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    # An offer between the two caps is let through to the origin (which judges the SDP).
    space = server.create_space(live=False)
    offer = {"type": "offer", "sdp": "v=0\r\n" * ((JSON_BODY_MAX * 2) // 5)}
    rtc = httpx.post(
        f"{edge.url}/api/spaces/{space.id}/rtc",
        json=offer,
        headers={"Authorization": f"Bearer {space.host_token}"},
        timeout=10,
    )
    assert rtc.status_code == 400
    assert rtc.json()["error"]["code"] == "bad_sdp"
    # The edge counts from its log, written just after it answers: the offer's line comes (after
    # the refusal's), and only the offer reached the origin.
    wait_until(lambda: edge.origin_requests() - before >= 1, 10, "the edge to log the offer")
    assert edge.origin_requests() - before == 1
