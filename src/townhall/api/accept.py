"""Accept-time refusal: past the process's connection cap, a new connection is answered 503 +
Retry-After the moment it is accepted, before a byte of its request is read or parsed.

Why here and not in admission control (api/admission.py): admission counts *requests in flight*
and refuses once a request has been parsed and routed; by then the connection exists in full —
an HTTP parser, a request cycle, uvicorn's per-connection state — and an audience arriving in a
storm would hold that for every connection it opens. A cap on *connections* bounds the memory
the origin can be made to hold, and refusing at accept costs one ready-made write: no parser, no
request object, no ASGI call. uvicorn's own `limit_concurrency` refuses only after parsing the
request head, with a text/plain answer clients cannot tell from a crash.

The refused connection (`RefusedConnection`) keeps no buffer: it writes the prebuilt answer
(JSON error body, Retry-After, the API's security headers, `Connection: close`), half-closes
its side, discards whatever the client sends and closes when the client does, or after
`LINGER_S`. Closing at once would make the kernel answer the client's unread request with a
reset, and a reset can destroy the 503 before the client has read it: the client would see a
dead server instead of "come back in N seconds".

The cap (`TOWNHALL_MAX_CONNECTIONS`, config.max_connections) defaults to the process's
open-files limit less a reserve for everything else a process opens (database, Redis, files,
WebRTC sockets), so accepting never fails for want of a file descriptor: past the cap a
client is told to come back, not left waiting in the accept queue.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from townhall.api.headers import JSON_ANSWER_HEADERS

LINGER_S = 2.0  # how long a refused connection waits for its client to close first
FD_RESERVE = 1024  # file descriptors kept for everything but listener connections
RETRY_AFTER_S = (1, 2, 3)  # spread, so that a refused crowd does not come back in one wave


def _refusal(retry_after: int) -> bytes:
    body = json.dumps(
        {
            "error": {
                "code": "overloaded",
                "message": "the server has all the connections it can hold; try again shortly",
            }
        }
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after).encode()),
        (b"cache-control", b"no-store"),
        (b"access-control-allow-origin", b"*"),
        (b"connection", b"close"),
        *JSON_ANSWER_HEADERS,
    ]
    head = b"HTTP/1.1 503 Service Unavailable\r\n" + b"".join(
        name + b": " + value + b"\r\n" for name, value in headers
    )
    return head + b"\r\n" + body


REFUSALS = tuple(_refusal(seconds) for seconds in RETRY_AFTER_S)


def default_cap() -> int:
    """The open-files soft limit less the reserve (at least 64): the most connections a process
    can hold without `accept` failing for want of a file descriptor."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(64, soft - FD_RESERVE)


class RefusedConnection(asyncio.Protocol):
    """A connection past the cap: the ready-made 503, then nothing kept (see the module doc)."""

    __slots__ = ("timer", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tcp = cast(asyncio.Transport, transport)  # uvloop's is no asyncio class
        self.transport = tcp
        tcp.write(random.choice(REFUSALS))
        if tcp.can_write_eof():
            tcp.write_eof()
        self.timer = asyncio.get_running_loop().call_later(LINGER_S, tcp.close)

    def data_received(self, data: bytes) -> None:
        """The request is not read: dropped as it comes, so a refused client holds no memory."""

    def eof_received(self) -> bool | None:
        return None  # the client is done: the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None


@dataclass
class ConnectionCap:
    """How many connections one process holds, and how many it refused at accept."""

    limit: int
    refused: int = 0

    def protocol(
        self, accepted: Callable[..., asyncio.Protocol]
    ) -> Callable[..., asyncio.Protocol]:
        """A protocol factory for uvicorn (`http=`): `accepted` (uvicorn's protocol class) for a
        connection under the cap, `RefusedConnection` past it. uvicorn keeps its open
        connections in `server_state.connections`; a refused one never enters that set."""

        def create(*, server_state: Any, **kwargs: Any) -> asyncio.Protocol:
            if len(server_state.connections) >= self.limit:
                self.refused += 1
                return RefusedConnection()
            return accepted(server_state=server_state, **kwargs)

        return create
