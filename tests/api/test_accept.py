"""Past its connection cap, or after waiting too long to be accepted, a connection is answered
503 + Retry-After at accept, before its request is read: a real `townhall serve` on loopback, held
at its cap by connections that send nothing, or stopped (SIGSTOP) while connections queue."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from townhall.harness import Server, start_server, wait_until

CAP = 20
TOKEN = "m" * 40

pytestmark = pytest.mark.e2e


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[Server]:
    server = start_server(
        tmp_path,
        env={"TOWNHALL_MAX_CONNECTIONS": str(CAP), "TOWNHALL_METRICS_TOKEN": TOKEN},
        within=120,  # a busy machine starts a server slowly
    )
    yield server
    server.proc.stop()


def connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=15)


def answer(sock: socket.socket, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send `request`, read until the server closes; the status line, headers and body."""
    sock.sendall(request)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return lines[0], headers, body


def test_connections_past_the_cap_are_told_to_come_back_and_served_once_room_frees(
    capped: Server,
) -> None:
    # The cap's worth of connections, held open without a request (the server's 10 s head
    # deadline is longer than this test needs them).
    held = [connect(capped) for _ in range(CAP)]
    try:
        wait_until(
            lambda: httpx.get(f"{capped.url}/api/health", timeout=5).status_code == 503,
            30,
            "the server to be at its cap",
        )
        for _ in range(3 * CAP):
            with connect(capped) as sock:
                status, headers, body = answer(
                    sock, b"GET /live/x/index.m3u8 HTTP/1.1\r\nHost: t\r\n\r\n"
                )
            assert status == "HTTP/1.1 503 Service Unavailable"
            assert headers["retry-after"] in ("1", "2", "3")
            assert headers["content-type"] == "application/json"
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["content-security-policy"].startswith("default-src 'none'")
            assert json.loads(body)["error"]["code"] == "overloaded"
        # A client that sends a large body to a refused connection is not read, and still
        # gets its answer rather than a reset.
        with connect(capped) as sock:
            big = b"POST /api/auth/guest HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n"
            status, headers, _ = answer(sock, big + b"x" * 200_000)
        assert status.startswith("HTTP/1.1 503")
        assert headers["retry-after"]
    finally:
        for sock in held:
            sock.close()
    wait_until(
        lambda: httpx.get(f"{capped.url}/api/health", timeout=5).status_code == 200,
        30,
        "the server to take connections again",
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    metrics = httpx.get(f"{capped.url}/metrics", headers=auth, timeout=5).text
    assert refused_at_accept(metrics, "cap") >= 3 * CAP + 1


def refused_at_accept(metrics: str, reason: str) -> float:
    line = next(
        line
        for line in metrics.splitlines()
        if line.startswith("townhall_connections_refused") and f'reason="{reason}"' in line
    )
    return float(line.rsplit(" ", 1)[1])


WAIT_MAX_MS = 1000
QUEUED = 12


def test_connections_that_waited_too_long_to_be_accepted_are_told_to_come_back(
    tmp_path: Path,
) -> None:
    """A process that cannot accept for a while (here: stopped; in a join storm: busy serving)
    answers the connections that waited past the bound with the prebuilt 503 the moment it gets
    to them, and serves those that did not: everyone hears back, nobody waits on."""
    server = start_server(
        tmp_path,
        env={"TOWNHALL_ACCEPT_WAIT_MAX_MS": str(WAIT_MAX_MS), "TOWNHALL_METRICS_TOKEN": TOKEN},
        within=120,
    )
    request = b"GET /api/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    try:
        os.kill(server.proc.popen.pid, signal.SIGSTOP)
        try:
            old = [connect(server) for _ in range(QUEUED)]
            for sock in old:
                sock.sendall(request)
            # The kernel completes these handshakes and queues them; the age is what is tested,
            # so time passes (a stopped process cannot accept meanwhile).
            time.sleep(2.5 * WAIT_MAX_MS / 1000)
            fresh = connect(server)
        finally:
            os.kill(server.proc.popen.pid, signal.SIGCONT)
        answers = [answer(sock, b"") for sock in old]
        for status, headers, body in answers:
            assert status == "HTTP/1.1 503 Service Unavailable"
            assert headers["retry-after"] in ("1", "2", "3")
            assert json.loads(body)["error"]["code"] == "overloaded"
        status, _, body = answer(fresh, request)
        assert status == "HTTP/1.1 200 OK", "a connection that had just arrived is served"
        for sock in [*old, fresh]:
            sock.close()
        auth = {"Authorization": f"Bearer {TOKEN}"}
        metrics = httpx.get(f"{server.url}/metrics", headers=auth, timeout=5).text
        assert refused_at_accept(metrics, "waited") == QUEUED
        assert refused_at_accept(metrics, "cap") == 0
    finally:
        server.proc.stop()
