"""Accept-time refusal: past the process's connection cap, or after waiting too long to be
accepted, a new connection is answered 503 + Retry-After the moment it is accepted, before a byte
of its request is read or parsed.

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

**Waited too long** (`TOWNHALL_ACCEPT_WAIT_MAX_MS`, config.accept_wait_max_ms): in a join storm a
process that is busy serving accepts new connections only as fast as it serves them; the rest wait
in the kernel's accept queue, where no code of ours sees them, for seconds (measured: 5,000
arrivals in 1 s at one origin process, the queue full at 4,096, first answers after 2–4 s, and
SYNs dropped once it was full, each retried by the client a second later). The kernel knows how
long each one has waited: `TCP_INFO`'s `tcpi_last_data_recv`, the milliseconds since the
connection's last data (its request) or, before any, since it was established. A connection
that has waited longer than the bound is answered at accept with the same prebuilt 503 as past
the cap: the answer costs a tenth of a served request, so the process drains its queue fast, the
queue's wait stays near the bound, and every arrival hears back within about that bound — served,
or told when to come back — instead of a few being served late and the rest timing out. This is
the queueing-delay signal of CoDel (it does not matter how many wait, only how long), applied
once per connection where it is cheapest. Requests on kept-alive connections (an edge's pool) do
not pass here: admission control sheds those on the event loop's lag.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from townhall.api.headers import JSON_ANSWER_HEADERS

LINGER_S = 2.0  # how long a refused connection waits for its client to close first
FD_RESERVE = 1024  # file descriptors kept for everything but listener connections
RETRY_AFTER_S = (1, 2, 3)  # spread, so that a refused crowd does not come back in one wave
ACCEPT_WAIT_MAX_S = 0.5  # default bound on the accept queue's wait (module doc)

# Linux's struct tcp_info: `tcpi_last_data_recv` (ms, __u32) at byte 52, after eight one-byte
# fields and eleven __u32s. Other systems have no TCP_INFO: nothing is refused for waiting there.
_TCP_INFO = getattr(socket, "TCP_INFO", None)
_TCP_INFO_SIZE = 104
_LAST_DATA_RECV = struct.Struct("=I")
_LAST_DATA_RECV_AT = 52


def waited_s(transport: asyncio.BaseTransport) -> float | None:
    """How long an accepted connection waited since its request (or, before any, its handshake)
    arrived; None where the system cannot tell."""
    sock = transport.get_extra_info("socket")
    if sock is None or _TCP_INFO is None:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_SIZE)
    except (OSError, AttributeError):  # not TCP (a Unix socket), or already gone
        return None
    if len(raw) < _LAST_DATA_RECV_AT + _LAST_DATA_RECV.size:
        return None
    (milliseconds,) = _LAST_DATA_RECV.unpack_from(raw, _LAST_DATA_RECV_AT)
    return float(milliseconds) / 1000


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


class Gate(asyncio.Protocol):
    """A connection under the cap, at accept: refused if it waited longer than the bound in the
    accept queue, else handed to the server's protocol (made only now: a refused connection never
    costs a parser)."""

    __slots__ = ("cap", "make")

    def __init__(self, cap: ConnectionCap, make: Callable[[], asyncio.Protocol]) -> None:
        self.cap = cap
        self.make = make

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        waited = waited_s(transport)
        protocol: asyncio.Protocol
        if waited is not None and waited > self.cap.wait_max_s:
            self.cap.refused_late += 1
            protocol = RefusedConnection()
        else:
            protocol = self.make()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)


@dataclass
class ConnectionCap:
    """How many connections one process holds, how long one may wait to be accepted, and how many
    it refused at accept for each."""

    limit: int
    wait_max_s: float = ACCEPT_WAIT_MAX_S
    refused: int = 0  # past the cap
    refused_late: int = 0  # waited longer than `wait_max_s` in the accept queue

    def protocol(
        self, accepted: Callable[..., asyncio.Protocol]
    ) -> Callable[..., asyncio.Protocol]:
        """A protocol factory for uvicorn (`http=`): `RefusedConnection` past the cap, else a
        `Gate` that makes `accepted` (uvicorn's protocol class) for a connection that has not
        waited too long. uvicorn keeps its open connections in `server_state.connections`; a
        refused one never enters that set."""

        def create(*, server_state: Any, **kwargs: Any) -> asyncio.Protocol:
            if len(server_state.connections) >= self.limit:
                self.refused += 1
                return RefusedConnection()
            return Gate(self, lambda: accepted(server_state=server_state, **kwargs))

        return create
