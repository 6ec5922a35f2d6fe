"""Webhooks reach a real HTTP receiver, signed; a receiver that is down gets them later."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from townhall.harness import wait_until_async
from townhall.spaces.control import Actor, NewSpace, SpaceControl
from townhall.spaces.model import UserId
from townhall.state.embedded_live import EmbeddedLiveState
from townhall.state.records import DeliveryStatus, Records, open_records
from townhall.webhooks.sender import WebhookSender
from townhall.webhooks.signing import HEADER, verify

SECRET = "whsec-receiver-secret"
HOST = Actor(UserId("u-host00000000"), "Hana")


class Receiver:
    """A webhook endpoint on loopback that records what it got; can be told to fail."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((dict(self.headers.items()), body))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
async def records(tmp_path: Path) -> AsyncIterator[Records]:
    r = await open_records(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    yield r
    await r.close()


async def test_space_started_and_ended_reach_the_receiver_signed(
    records: Records, receiver: Receiver
) -> None:
    await records.add_webhook(receiver.url, SECRET, ["space.*"])
    control = SpaceControl(records, EmbeddedLiveState())
    space = await control.create(HOST, NewSpace("Hooked"))
    await control.go_live(HOST, space.id)
    await control.end(HOST, space.id)
    sender = WebhookSender(records)
    try:
        assert await sender.run_once() == 2
    finally:
        await sender.close()
    events = []
    for headers, body in receiver.received:
        assert verify(SECRET, body, headers[HEADER], now=time.time())
        payload = json.loads(body)
        assert payload["space"]["id"] == space.id
        events.append((headers["Townhall-Event"], payload["type"]))
    assert sorted(events) == [("space.ended", "space.ended"), ("space.started", "space.started")]


async def test_a_receiver_that_fails_gets_the_event_again_later(
    records: Records, receiver: Receiver
) -> None:
    await records.add_webhook(receiver.url, SECRET, ["*"])
    clock = [1_800_000_000.0]
    control = SpaceControl(records, EmbeddedLiveState(), clock=lambda: clock[0])
    space = await control.create(HOST, NewSpace("Flaky"))
    await control.go_live(HOST, space.id)
    sender = WebhookSender(records, clock=lambda: clock[0])
    try:
        receiver.status = 503
        assert await sender.run_once() == 1
        assert await sender.run_once() == 0  # not due yet: it waits before retrying
        [pending] = await records.deliveries(DeliveryStatus.PENDING)
        assert pending.last_error == "HTTP 503"
        clock[0] += 60
        receiver.status = 204
        assert await sender.run_once() == 1
    finally:
        await sender.close()
    assert [d.event_type for d in await records.deliveries(DeliveryStatus.DELIVERED)] == [
        "space.started"
    ]
    assert len(receiver.received) == 2
    first, second = (h["Townhall-Delivery"] for h, _ in receiver.received)
    assert first == second  # the same delivery id, so the receiver can de-duplicate


async def test_a_sleeping_sender_delivers_a_change_as_soon_as_it_commits(
    records: Records, receiver: Receiver
) -> None:
    await records.add_webhook(receiver.url, SECRET, ["space.*"])
    control = SpaceControl(records, EmbeddedLiveState())
    space = await control.create(HOST, NewSpace("Hooked"))
    sender = WebhookSender(records)
    # An hour between sweeps: only this process's commits (and due retries) wake it.
    task = asyncio.create_task(sender.run(sweep_s=3600))
    try:
        await control.go_live(HOST, space.id)
        await wait_until_async(lambda: len(receiver.received) == 1, 30, "space.started")
        await control.end(HOST, space.id)  # queued while the sender sleeps
        await wait_until_async(lambda: len(receiver.received) == 2, 30, "space.ended")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sender.close()
    assert [h["Townhall-Event"] for h, _ in receiver.received] == ["space.started", "space.ended"]
