"""The wrk listener (bench/wrk_listener.lua) moves its live edge once per segment, by the segment's
decode time: completions of the same segment spread out, or of an older one, do not move it.

Run against a small HTTP server that answers the segment requests one at a time, in an order the
test sets, each only after wrk has taken the previous answer (its connection asked again)."""

from __future__ import annotations

import shutil
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from bench.bulk import Bulk, Live

from townhall.harness import wait_until

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")

PREFIX = "/live/x/1/"
FIRST = 5  # the segment in production when the listeners start


def fragment(decode_time: int) -> bytes:
    """A segment's first bytes as the wrk listener reads them: a moof with a version 1 tfdt."""
    tfdt = struct.pack(">I4sB3xQ", 20, b"tfdt", 1, decode_time)
    traf = struct.pack(">I4s", 8 + len(tfdt), b"traf") + tfdt
    return struct.pack(">I4s", 8 + len(traf), b"moof") + traf + b"\x00" * 64


@dataclass
class Script:
    """What the server answers, in order: (segment asked for, decode time of the answer)."""

    answers: list[tuple[int, int]]
    asked: list[int] = field(default_factory=list)  # every segment number asked for, in order
    done: bool = False  # every answer given: the rest get 404 at once
    given_at: int = 0  # how many requests had come when the last answer was given
    turn: int | None = None  # the thread answering now
    lock: threading.Condition = field(default_factory=threading.Condition)

    def answer(self, msn: int) -> int | None:
        """Wait for this request's turn; the decode time to answer it with, None for a 404."""
        with self.lock:
            self.asked.append(msn)
            self.lock.notify_all()
            while True:
                if self.done:
                    return None
                want, decode_time = self.answers[0]
                # Answer only the request the script names, and only once wrk has taken the
                # previous answer (it asks again at once): answers reach it in this order.
                taken = len(self.asked) > self.given_at
                if want == msn and taken and self.turn is None:
                    self.turn = threading.get_ident()
                    self.answers.pop(0)
                    return decode_time
                if not self.lock.wait(timeout=60):
                    return None

    def given(self) -> None:
        with self.lock:
            self.turn = None
            self.given_at = len(self.asked)
            self.done = not self.answers
            self.lock.notify_all()


def serve(script: Script) -> ThreadingHTTPServer:
    class Segments(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if not self.path.startswith(PREFIX + "s"):
                self.send_error(404)
                return
            decode_time = script.answer(int(self.path[len(PREFIX) + 1 : -len(".m4s")]))
            if decode_time is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = fragment(decode_time)
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            script.given()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Segments)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def script() -> Iterator[Script]:
    made = Script(
        [
            (FIRST, 1000),  # the segment in production completes: the edge moves on
            (FIRST, 1000),  # the same segment, for another connection, later: no move
            (FIRST, 500),  # an older segment, for a laggard: no move
            (FIRST + 1, 2000),  # the next one: the edge moves on again
        ]
    )
    yield made
    with made.lock:
        made.done = True
        made.lock.notify_all()


def test_the_edge_moves_once_per_newer_segment(script: Script) -> None:
    server = serve(script)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    live = Live(base, PREFIX, FIRST, 1.92, "/snapshot", 3600.0)
    try:
        with Bulk("segments", base, {0}, locate=lambda: live) as bulk:
            bulk.add(4, 0)
            counters = bulk._procs[0][2]

            def published() -> list[int] | None:
                """The counters once every answer and a 404 after them are published."""
                try:
                    values = [int(v) for v in counters.read_text().split()]
                except (OSError, ValueError):
                    return None
                return values if values[0] == 4 and values[1] > 0 else None

            wait_until(lambda: published() is not None, 60, "wrk's counters after the script")
            segments, _other, _snapshots, _requests, edge, refused = published() or []
    finally:
        server.shutdown()
        server.server_close()
    assert segments == 4
    assert edge == FIRST + 2
    assert refused == 0
    # The connections asked for the edge: the first segment, then the next, then the one after.
    assert set(script.asked) == {FIRST, FIRST + 1, FIRST + 2}
