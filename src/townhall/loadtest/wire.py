"""A lean HTTP/1.1 keep-alive client: one `asyncio.Protocol` per connection, its answers parsed
in `data_received` as the bytes arrive.

Why, beside `townhall.loadtest.http.Client` (asyncio streams): a load generator that must hold
tens of thousands of listeners on one core pays per event, and the streams client pays a lot per
event: a `StreamReader` buffer copy, a task wake-up for every `readuntil`/`readexactly` (a chunked
segment is three awaits per part), and an `asyncio.timeout` context per request. Here a request
costs one future (the caller's one wake-up, when the answer is complete) and one timer handle; a
streamed body's pieces go from `data_received` straight to the caller's sink with no wake-up at
all. Same interface and same failure kinds (timeout, connect, closed, protocol) as `Client`, so a
listener can use either; bench/generator_cost.py measures the two side by side.

Parsing is the minimum a GET needs, the same as `Client`'s: the status line, headers (lower-case
names, last value wins), a Content-Length or chunked body (no trailers), bounded by `MAX_BODY`;
a head longer than `MAX_HEAD` is a protocol failure. Any other answer shape (close-delimited
bodies) is read as an empty body, as `Client` does.
"""

from __future__ import annotations

import asyncio
from typing import cast

from townhall.loadtest.http import MAX_BODY, Client, HTTPFailure, Response, Sink

MAX_HEAD = 16 * 1024

# Where the parser is in the current answer.
_HEAD, _LENGTH, _SIZE, _DATA, _DATA_END, _TRAILER, _IDLE = range(7)


class WireConnection(asyncio.Protocol):
    """One client connection; at most one request in flight (no pipelining)."""

    def __init__(self, pool: LeanClient) -> None:
        self.pool = pool
        self.transport: asyncio.WriteTransport | None = None
        self.closed = False
        self.state = _IDLE
        self.buffer = bytearray()
        self.answer: asyncio.Future[tuple[Response, bool]] | None = None
        self.answered = False  # the current answer has begun to arrive
        self.sink: Sink | None = None
        self.body: list[bytes] = []
        self.status = 0
        self.headers: dict[str, str] = {}
        self.left = 0  # bytes left of the body (Content-Length) or of the current chunk
        self.total = 0
        self.timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)  # uvloop's is no asyncio class

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        self._fail("closed")

    def data_received(self, data: bytes) -> None:
        if self.answer is None:
            return  # nothing asked: an idle connection's stray bytes are ignored (then closed)
        self.answered = True
        try:
            self._parse(data)
        except (ValueError, IndexError):
            self._fail("protocol")

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself; connection_lost fails what is in flight

    # -- requests ----------------------------------------------------------------------------------

    def exchange(
        self, request: bytes, sink: Sink | None, timeout: float
    ) -> asyncio.Future[tuple[Response, bool]]:
        """Send `request` (head and body) and return the future of its answer and whether the
        connection may be used again."""
        assert self.transport is not None
        assert self.answer is None
        loop = asyncio.get_running_loop()
        self.answer = loop.create_future()
        self.answered = False
        self.sink = sink
        self.body = []
        self.state = _HEAD
        self.total = 0
        self.timer = loop.call_later(timeout, self._fail, "timeout")
        self.transport.write(request)
        return self.answer

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    def _parse(self, data: bytes) -> None:
        """Advance through `data` by offsets (no copies but the body pieces handed on); a head or
        a chunk-size line cut between two reads waits in `buffer` for the rest."""
        if self.buffer:
            data = bytes(self.buffer) + data
            self.buffer.clear()
        pos, size = 0, len(data)
        while pos < size and self.answer is not None:
            state = self.state
            if state in (_LENGTH, _DATA):
                take = min(self.left, size - pos)
                self.left -= take
                self._deliver(data[pos : pos + take] if take < size else data)
                pos += take
                if self.left == 0:
                    if state == _LENGTH:
                        self._done()
                    else:
                        self.state = _DATA_END
                continue
            if state == _HEAD:
                end, sep, limit = data.find(b"\r\n\r\n", pos), 4, MAX_HEAD
            else:  # a CRLF-terminated line: a chunk size, a chunk's end, or the last CRLF
                end, sep, limit = data.find(b"\r\n", pos), 2, 1024
            if end < 0 or end - pos > limit:
                if end >= 0 or size - pos > limit:
                    self._fail("protocol")
                else:
                    self.buffer += data[pos:]
                return
            if state == _HEAD:
                self._head(data[pos:end])
            else:
                self._line(data[pos:end])
            pos = end + sep

    def _head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        self.headers = headers
        if "content-length" in headers:
            self.left = int(headers["content-length"])
            if self.left > MAX_BODY:
                self._fail("protocol")
            elif self.left == 0:
                self._done()
            else:
                self.state = _LENGTH
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            self.state = _SIZE
        else:  # 204/304 or a close-delimited body we do not use
            self._done()

    def _line(self, line: bytes) -> None:
        if self.state == _SIZE:
            self.left = int(line.split(b";")[0], 16)
            self.total += self.left
            if self.total > MAX_BODY:
                self._fail("protocol")
            self.state = _DATA if self.left else _TRAILER
        elif self.state == _DATA_END:
            if line:
                raise ValueError("chunk longer than its size")
            self.state = _SIZE
        else:  # _TRAILER: the blank line after the last chunk (no trailers expected)
            self._done()

    def _deliver(self, piece: bytes) -> None:
        if self.sink is not None:
            self.sink(piece)
        else:
            self.body.append(piece)

    def _done(self) -> None:
        answer = self.answer
        self._settle()
        self.state = _IDLE
        reusable = self.headers.get("connection", "").lower() != "close"
        if answer is not None and not answer.done():
            answer.set_result((Response(self.status, self.headers, b"".join(self.body)), reusable))
        self.body = []

    def _fail(self, kind: str) -> None:
        answer = self.answer
        self._settle()
        if answer is not None and not answer.done():
            answer.set_exception(HTTPFailure(kind))
            if kind != "closed":
                self.close()

    def _settle(self) -> None:
        self.answer = None
        self.sink = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class LeanClient(Client):
    """`Client`'s interface on `WireConnection`s: a few keep-alive connections to one origin."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        super().__init__(base_url, timeout)
        self._free: list[WireConnection] = []

    def forget(self, connection: WireConnection) -> None:
        """A connection closed (by either side): never hand it out again."""
        if connection in self._free:
            self._free.remove(connection)

    async def send(self, head: bytes, body: bytes = b"", sink: Sink | None = None) -> Response:
        request = head + body if body else head
        while self._free:
            # A kept-alive connection the server closed a moment ago (its idle timeout) fails
            # before any answer: as browsers do, ask again on a new connection.
            connection = self._free.pop()
            try:
                response, reusable = await connection.exchange(request, sink, self.timeout)
            except HTTPFailure as failure:
                if failure.kind == "closed" and not connection.answered:
                    continue
                raise
            except BaseException:
                connection.close()
                raise
            return self._keep(connection, response, reusable)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                _, protocol = await loop.create_connection(
                    lambda: WireConnection(self), self.host, self.port
                )
        except (OSError, TimeoutError):
            raise HTTPFailure("connect") from None
        connection = protocol
        try:
            response, reusable = await connection.exchange(request, sink, self.timeout)
        except BaseException:
            connection.close()
            raise
        return self._keep(connection, response, reusable)

    def _keep(self, connection: WireConnection, response: Response, reusable: bool) -> Response:
        if reusable and not connection.closed:
            self._free.append(connection)
        else:
            connection.close()
        return response

    def close(self) -> None:
        for connection in self._free:
            connection.close()
        self._free.clear()


# The HTTP clients a listener may use, by the name the command line and the benches give them:
# the lean one for big audiences, the streams one as the reference it is measured against.
CLIENTS: dict[str, type[Client]] = {"lean": LeanClient, "streams": Client}
