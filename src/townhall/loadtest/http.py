"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for load generators.

Why not httpx for thousands of listeners: httpcore's connection pool rescans every pooled
connection (and polls each idle socket) on every request, so with one shared `AsyncClient` the cost
of a request grows with the number of open connections — profiled here at 20 listeners (40
connections): 79 % of a core for ~90 requests/s, two thirds of it in `_assign_requests_to_connections`.
This client keeps a tiny pool per `Client` (one `Client` per simulated listener, at most a few
connections each), parses only what GETs need (status, headers, Content-Length or chunked bodies),
and maps failures to the kinds the benches count. Other methods (`request`) send a small body with
its Content-Length and extra headers, for benches of the control API.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

MAX_BODY = 16 * 2**20  # bounded: a benchmark never buffers more than this per response
READ_SIZE = 65_536

Sink = Callable[[bytes], None]  # receives a streamed body piece by piece, as it arrives


class HTTPFailure(Exception):
    """A request that got no HTTP answer: kind is timeout, connect, closed or protocol."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    content: bytes


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.answered = False  # the current request's answer has begun to arrive

    def close(self) -> None:
        self.writer.close()

    async def exchange(
        self, head: bytes, body: bytes, sink: Sink | None = None
    ) -> tuple[Response, bool]:
        """Send one request (its head already formatted, blank line included) and read the answer;
        with a `sink`, the body is handed to it as it arrives instead of being kept (a segment the
        origin streams while it is produced: its parts must be seen when they come, not at the end)."""
        self.answered = False
        self.writer.write(head + body if body else head)
        head = await self.reader.readuntil(b"\r\n\r\n")
        self.answered = True
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        chunks: list[bytes] = []
        keep = sink or chunks.append
        if "content-length" in headers:
            length = int(headers["content-length"])
            if length > MAX_BODY:
                raise HTTPFailure("protocol")
            if sink is None:
                chunks.append(await self.reader.readexactly(length))
            while sink is not None and length > 0:
                piece = await self.reader.read(min(READ_SIZE, length))
                if not piece:
                    raise asyncio.IncompleteReadError(piece, length)
                length -= len(piece)
                sink(piece)
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            size_total = 0
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                size_total += size
                if size_total > MAX_BODY:
                    raise HTTPFailure("protocol")
                if size == 0:
                    await self.reader.readuntil(b"\r\n")  # no trailers expected
                    break
                keep(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
        # else: 204/304 or a close-delimited body we do not use
        body = b"".join(chunks)
        reusable = headers.get("connection", "").lower() != "close"
        return Response(status, headers, body), reusable


@functools.lru_cache(maxsize=4096)
def _target(url: str) -> str:
    """The request target (path and query) of a path or absolute URL: a listener asks for the
    same few again and again, so each is split once."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


class Client:
    """GETs against one origin (http://host:port) with a few keep-alive connections."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"http://host:port only: {base_url}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.authority = parts.netloc
        self.timeout = timeout
        self._idle: list[_Connection] = []

    async def get(
        self,
        url: str,
        params: dict[str, int] | None = None,
        byte_range: str | None = None,
        sink: Sink | None = None,
    ) -> Response:
        """GET a path or an absolute URL on this origin; `byte_range` ("0-99", "100-") asks for
        those bytes only (a part of a segment); `sink` takes the body as it arrives."""
        headers = {"Range": f"bytes={byte_range}"} if byte_range is not None else None
        return await self.request("GET", url, headers=headers, params=params, sink=sink)

    def head(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> bytes:
        """The request line and headers for `target` on this origin; a body gets its length."""
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.authority}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        params: dict[str, int] | None = None,
        sink: Sink | None = None,
    ) -> Response:
        """One request to a path or an absolute URL on this origin, on a pooled connection."""
        target = _target(url)
        if params:
            target += ("&" if "?" in target else "?") + urlencode(params)
        return await self.send(self.head(method, target, headers or {}, body), body, sink)

    async def send(self, head: bytes, body: bytes = b"", sink: Sink | None = None) -> Response:
        """Send a request whose head `head()` formatted (a generator that sends the same few
        requests again and again formats each once), on a pooled connection."""
        connection: _Connection | None = None
        try:
            async with asyncio.timeout(self.timeout):
                while self._idle:
                    # A kept-alive connection the server has since closed (its idle timeout)
                    # fails before any answer: as browsers do, ask again on a new connection.
                    connection = self._idle.pop()
                    try:
                        response, reusable = await connection.exchange(head, body, sink)
                        break
                    except (asyncio.IncompleteReadError, ConnectionError):
                        stale = not connection.answered
                        connection.close()
                        connection = None
                        if not stale:
                            raise
                else:
                    try:
                        reader, writer = await asyncio.open_connection(self.host, self.port)
                    except OSError:
                        raise HTTPFailure("connect") from None
                    connection = _Connection(reader, writer)
                    response, reusable = await connection.exchange(head, body, sink)
        except TimeoutError:
            self._drop(connection)
            raise HTTPFailure("timeout") from None
        except (asyncio.IncompleteReadError, ConnectionError):
            self._drop(connection)
            raise HTTPFailure("closed") from None
        except (ValueError, IndexError, asyncio.LimitOverrunError):
            self._drop(connection)
            raise HTTPFailure("protocol") from None
        except BaseException:
            self._drop(connection)
            raise
        if reusable:
            self._idle.append(connection)
        else:
            connection.close()
        return response

    def _drop(self, connection: _Connection | None) -> None:
        if connection is not None:
            connection.close()

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
