"""The answers that need no framework: the health check and a public Space's current snapshot.

Both are the same bytes for every caller until what they say changes (the health check: the
number of Spaces this process runs; the snapshot: once a second, built by api/live_routes.py),
and both are asked often (load balancers and monitors; every listener page that has not yet got
its room state from the stream). Through FastAPI each cost about 0.3 ms of CPU, most of it the
middleware layers and the walk over every route to find theirs (profiled with py-spy, see
docs/architecture.md), against about 0.1 ms for a constant answer on bare uvicorn. So they are
answered in front of the framework, from prebuilt bytes, with what the framework's path gives
them today and nothing less:

- the same status, body and headers (Content-Type, Cache-Control and CORS for the snapshot, and
  the security headers every /api/ answer carries, api/headers.py);
- admission control (api/admission.py): the request takes its class's place in flight and is
  refused 503 + Retry-After like any other when its class is full or the event loop lags;
- the request counted and timed in `/metrics` under its route's template, as RequestTelemetry
  does.

(The server's protocol goes further: it answers these same requests, when it parses them, with
no ASGI call at all (`prepared`, api/listener_protocol.py), and so a listener's request for the
segment being produced. This path is for the requests that reach the app anyway: a pipelined
one, or any request under another server.)

Anything else goes to the framework unchanged: another method, a query string (a private
Space's `?code=`, or anything to validate), a request with a body (its size is checked there),
a snapshot not built for this second and not being built (the framework builds it; while it does,
the last one built is given here, `Snapshots.public`) or of a private Space (its check needs an
identity), and every request when the access log is on (its lines and request ids are the
framework's).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from townhall.api.admission import Admission, Scope, Send, classify, refuse
from townhall.api.headers import JSON_ANSWER_HEADERS
from townhall.telemetry.requests import RequestStats

HEALTH_PATH = "/api/health"
SNAPSHOT_PREFIX = "/api/spaces/"
SNAPSHOT_SUFFIX = "/snapshot"
SNAPSHOT_ROUTE = "/api/spaces/{space_id}/snapshot"  # its template, as /metrics names it

_JSON = (b"content-type", b"application/json")
# What api/live_routes.py answers a public snapshot with (SNAPSHOT_CACHE, CORS for any page).
_SNAPSHOT_HEADERS = (
    (b"cache-control", b"public, max-age=1"),
    (b"access-control-allow-origin", b"*"),
    _JSON,
    *JSON_ANSWER_HEADERS,
)
_HEALTH_HEADERS = (_JSON, *JSON_ANSWER_HEADERS)


class HealthBody:
    """The health check's JSON, built again only when what it says changes."""

    def __init__(self, role: str) -> None:
        self.role = role
        self._last: tuple[str, int, bytes] | None = None

    def __call__(self, node_id: str, open_spaces: int) -> bytes:
        last = self._last
        if last is None or last[0] != node_id or last[1] != open_spaces:
            body = {"ok": True, "role": self.role, "node": node_id, "open_spaces": open_spaces}
            encoded = json.dumps(body, separators=(",", ":")).encode()
            last = self._last = (node_id, open_spaces, encoded)
        return last[2]


def _plain_get(scope: Scope) -> bool:
    """A GET with no query string and no body: the only requests the fast path may answer."""
    if scope["method"] != "GET" or scope.get("query_string"):
        return False
    for name, value in scope["headers"]:
        if (name == b"content-length" and value != b"0") or name == b"transfer-encoding":
            return False
    return True


class FastPath:
    """Answers the health check and current public snapshots before the framework (module
    docstring); `__call__` returns False for every request it leaves to the framework.

    `health()` is the health body, None while the node is starting; `snapshot(space_id, second)`
    is the public snapshot of that second, None if there is none built."""

    def __init__(
        self,
        admission: Admission,
        stats: RequestStats,
        health: Callable[[], bytes | None],
        snapshot: Callable[[str, int], bytes | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.admission = admission
        self.stats = stats
        self.health = health
        self.snapshot = snapshot
        self.clock = clock

    def prepared(self, path: str) -> tuple[bytes, tuple[tuple[bytes, bytes], ...], str] | None:
        """The body, headers and route template of the answer to a plain GET of `path` if this
        answers it now; None leaves it to the framework."""
        if path == HEALTH_PATH:
            body, headers, route = self.health(), _HEALTH_HEADERS, HEALTH_PATH
        elif path.startswith(SNAPSHOT_PREFIX) and path.endswith(SNAPSHOT_SUFFIX):
            space_id = path[len(SNAPSHOT_PREFIX) : -len(SNAPSHOT_SUFFIX)]
            if "/" in space_id:
                return None
            body = self.snapshot(space_id, int(self.clock()))
            headers, route = _SNAPSHOT_HEADERS, SNAPSHOT_ROUTE
        else:
            return None
        return None if body is None else (body, headers, route)

    async def __call__(self, scope: Scope, send: Send) -> bool:
        if scope["type"] != "http" or not _plain_get(scope):
            return False
        path: str = scope["path"]
        answer = self.prepared(path)
        if answer is None:
            return False
        body, headers, route = answer
        started = time.perf_counter()
        kind = classify("GET", path)
        if not self.admission.enter(kind):
            await refuse(kind, send)
            self.stats.record(route, "GET", 503, time.perf_counter() - started)
            return True
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"%d" % len(body)), *headers],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            self.admission.leave(kind)
            self.stats.record(route, "GET", 200, time.perf_counter() - started)
        return True
