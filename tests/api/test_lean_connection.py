"""The lean per-connection parts (api/lean_connection.py) behave as the asyncio and deque parts
they replace, and a real server holds a kept-alive connection in a few kilobytes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import pytest

from tests.conftest import Server
from townhall.api.lean_connection import LeanEvent, LeanPipeline
from townhall.harness import wait_until

HELD = 1000  # connections held open at once
# Bytes of server RSS per held connection: 4.3-5.3 KB measured, 7.2 KB before the lean parts.
PER_CONNECTION_MAX = 8 * 1024


async def test_a_waiter_wakes_when_the_event_is_set_even_if_it_is_cleared_at_once() -> None:
    event = LeanEvent()
    waiters = [asyncio.create_task(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)  # let them start waiting (a loop turn, not a timing)
    assert not any(w.done() for w in waiters)
    event.set()
    event.clear()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert not event.is_set()


async def test_a_set_event_does_not_block_and_a_cancelled_waiter_is_forgotten() -> None:
    event = LeanEvent()
    waiter = asyncio.create_task(event.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert event._waiters == []  # nothing kept for a waiter that went away
    event.set()
    assert await asyncio.wait_for(event.wait(), 5) is True


def test_the_pipeline_hands_out_requests_in_arrival_order() -> None:
    pipeline = LeanPipeline()
    assert not pipeline
    for request in ("first", "second", "third"):
        pipeline.appendleft(request)
    assert [pipeline.pop() for _ in range(3)] == ["first", "second", "third"]
    assert not pipeline


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _sockets(pid: int) -> int:
    """The server's open sockets (its other descriptors, files and pipes, come and go)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            count += fd.readlink().name.startswith("socket:")
    return count


def _answered(sock: socket.socket) -> bool:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        data += chunk
    return data.startswith(b"HTTP/1.1 200")


@pytest.mark.e2e
def test_a_held_connection_costs_the_server_a_few_kilobytes(server: Server) -> None:
    """Each connection sends a request head in two halves: between them the server holds the
    connection, its parser and the request begun (the head's 10 s deadline is far off), and the
    completed request's answer proves the connection was still held when RSS was read."""
    pid = server.proc.popen.pid
    host, port = server.url.removeprefix("http://").split(":")
    warm = socket.create_connection((host, int(port)), timeout=15)
    warm.sendall(b"GET /api/health HTTP/1.1\r\nhost: x\r\n\r\n")
    assert _answered(warm)  # what the first request allocates once is not counted
    before, sockets = _rss(pid), _sockets(pid)
    held = [socket.create_connection((host, int(port)), timeout=15) for _ in range(HELD)]
    try:
        for sock in held:
            sock.sendall(b"GET /api/health HTTP/1.1\r\n")
        # All accepted (the warm connection may have been closed as idle meanwhile: - 1).
        wait_until(lambda: _sockets(pid) >= sockets + HELD - 1, 30, "the server to accept them all")
        grown = _rss(pid) - before
        for sock in held:
            sock.sendall(b"host: x\r\n\r\n")
        assert all(_answered(sock) for sock in held), "a held connection was dropped"
    finally:
        for sock in [warm, *held]:
            sock.close()
    assert grown / HELD <= PER_CONNECTION_MAX, f"{grown / HELD / 1024:.1f} KB per connection"
