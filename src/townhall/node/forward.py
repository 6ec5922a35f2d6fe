"""Any node answers any request: a Space's `/live/…` and `/rtc` requests reach its owner.

A request for a Space whose media runs here is served here. Otherwise the forwarder looks up the
Space's owner in the placement (cached for a moment: a busy edge asks about the same Space many
times a second) and relays the request there, headers and body as they came (the owner checks
identity and rules itself) and the answer back as it is — status, Cache-Control, body — so an HTTP
cache in front sees exactly what the owner would have said. An answer without a length (a segment
the owner streams while producing it) is passed on chunk by chunk as it arrives, and cut off if
the owner's is, so the listener gets each part when the owner writes it. A relayed request carries RELAY_HEADER
with the cluster's relay key (derived from the shared secret, so a stranger cannot forge it): a
node never relays such a request again (no loops), and the owner does not charge the caller's rate
limits a second time (the relaying node did).

During a take-over there is briefly no owner, or the recorded owner is dead: the forwarder waits
(bounded by `wait_s`) for a live owner and relays to it, so a listener's request is late rather
than failed; past the bound the answer is 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from townhall.node.placement import Lease, NodeId, Placement
from townhall.state.unavailable import is_unavailable

RELAY_HEADER = "x-townhall-relay"
# The owner says "not mine (any more)" with this header on a 503, so the forwarder looks again.
NOT_OWNER = "x-townhall-not-owner"

# Request headers relayed to the owner; hop-by-hop ones and Host are not (RFC 9110 §7.6.1).
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
_RESPONSE_SKIP = _HOP_BY_HOP | {"content-encoding", "date", "server"}
# Set by the relaying node from what it knows (its trusted-proxy view), never copied from the caller.
_REWRITTEN = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", RELAY_HEADER}


def relay_key(secret: str) -> str:
    """The credential nodes of one cluster show each other on relayed requests."""
    return hmac.new(secret.encode(), b"townhall node relay", hashlib.sha256).hexdigest()


def shows_relay_key(headers: Mapping[str, str], key: str) -> bool:
    """Whether a request's headers carry this cluster's relay key (a forged header does not)."""
    shown = headers.get(RELAY_HEADER)
    return shown is not None and hmac.compare_digest(shown, key)


@dataclass(frozen=True)
class ForwardConfig:
    owner_cache_s: float = 0.5  # how long an owner lookup is reused
    wait_s: float = 8.0  # how long a request waits for a live owner during a take-over
    retry_every_s: float = 0.1
    timeout_s: float = 20.0  # longer than the longest blocking playlist reload


def not_owner(message: str = "this node does not run that Space") -> Response:
    """What a node answers a relayed request for a Space it does not run."""
    return JSONResponse(
        {"error": {"code": "not_owner", "message": message}},
        503,
        headers={"Retry-After": "1", NOT_OWNER: "1", "Cache-Control": "no-store"},
    )


def unavailable(message: str) -> Response:
    return JSONResponse(
        {"error": {"code": "no_media_node", "message": message}},
        503,
        headers={"Retry-After": "1", "Cache-Control": "no-store"},
    )


class _Relayed(Response):
    """An owner's answer of unknown length, passed on as it arrives (see the top)."""

    def __init__(self, answer: httpx.Response, headers: dict[str, str]) -> None:
        super().__init__(None, answer.status_code, headers)
        del self.headers["content-length"]
        self._answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        try:
            if scope.get("method") != "HEAD":
                async for chunk in self._answer.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.HTTPError:
            return  # the owner's answer broke off: so does this one (no cache keeps it whole)
        finally:
            await self._answer.aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class Forwarder:
    def __init__(
        self,
        placement: Placement,
        node_id: NodeId,
        key: str,
        *,
        config: ForwardConfig = ForwardConfig(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.placement = placement
        self.node_id = node_id
        self._key = key
        self.config = config
        self._clock = clock
        self._owners: dict[str, tuple[float, Lease | None]] = {}
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout_s, connect=1.0),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
            follow_redirects=False,
        )
        self.sent = 0  # requests answered by an owner elsewhere
        self.failed = 0

    def relayed(self, request: Request) -> bool:
        """Whether another node of this cluster relayed `request` (a forged header is not)."""
        return shows_relay_key(request.headers, self._key)

    async def owner(self, space_id: str, *, fresh: bool = False) -> Lease | None:
        now = self._clock()
        cached = self._owners.get(space_id)
        if not fresh and cached is not None and now - cached[0] < self.config.owner_cache_s:
            return cached[1]
        try:
            lease = (await self.placement.owners([space_id])).get(space_id)
        except Exception as exc:
            if cached is None or not is_unavailable(exc):
                raise
            return cached[1]  # the store is down: the last owner we knew is the best guess
        self._owners[space_id] = (now, lease)
        if len(self._owners) > 10_000:
            self._owners.clear()
        return lease

    async def relay(
        self,
        request: Request,
        space_id: str,
        runs_here: Callable[[], bool],
        is_open: Callable[[], Awaitable[bool]],
    ) -> Response | None:
        """The owner's answer to `request`, or None: serve it here (the Space runs here, or it is
        not open, so that what this node has — a replay, a 404, a 410 — is the answer). Waits
        (bounded) through a take-over. A request already relayed once is never relayed again."""
        if runs_here():
            return None
        if self.relayed(request):
            return None if not await is_open() else not_owner()
        body = await request.body()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.wait_s
        fresh = False
        while True:
            lease = await self.owner(space_id, fresh=fresh)
            if lease is not None and lease.node_id == self.node_id and lease.ended:
                return None  # the pointer names this node (an ended stream it held): answer here
            if lease is not None and lease.node_id != self.node_id:
                answer = await self._send(request, lease, body)
                if answer is not None:
                    return answer
                if lease.ended:  # the node that held the ended stream is gone: the replay is here
                    return None
            elif lease is None and not await is_open():
                return None
            if runs_here():
                return None
            if loop.time() >= deadline:
                self.failed += 1
                return unavailable("the Space's media node is being replaced; try again")
            fresh = True
            await asyncio.sleep(self.config.retry_every_s)

    async def _send(self, request: Request, lease: Lease, body: bytes) -> Response | None:
        """The owner's answer, or None if the owner could not be reached or is not the owner."""
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in _HOP_BY_HOP and k.lower() not in _REWRITTEN
        }
        headers[RELAY_HEADER] = self._key
        # What this node believes (after its trusted-proxy check), not what the caller claimed.
        if request.client is not None:
            headers["x-forwarded-for"] = request.client.host
        headers["x-forwarded-proto"] = request.url.scheme
        # The path as the client sent it: inside a mounted app `url.path` may be rewritten.
        raw_path = request.scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else request.url.path
        url = lease.url.rstrip("/") + path
        if request.url.query:
            url += "?" + request.url.query
        try:
            sent = self._client.build_request(request.method, url, headers=headers, content=body)
            answer = await self._client.send(sent, stream=True)
            streamed = "content-length" not in answer.headers and request.method != "HEAD"
            if not streamed or (answer.status_code == 503 and answer.headers.get(NOT_OWNER)):
                await answer.aread()
        except httpx.HTTPError:
            self._owners.pop(lease.space_id, None)
            return None
        if answer.status_code == 503 and answer.headers.get(NOT_OWNER):
            self._owners.pop(lease.space_id, None)
            return None
        self.sent += 1
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in _RESPONSE_SKIP}
        if streamed:
            return _Relayed(answer, kept)
        return Response(answer.content, answer.status_code, kept)

    async def close(self) -> None:
        await self._client.aclose()
