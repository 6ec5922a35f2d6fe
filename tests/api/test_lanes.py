"""A fast lane (api/lanes.py): its prefix skips the API's stack but keeps the middleware it names
and the API's error answers."""

from __future__ import annotations

import httpx
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from townhall.api import errors
from townhall.api.bounds import BoundedApp
from townhall.api.lanes import Lane
from townhall.telemetry.requests import RequestStats, RequestTelemetry


class Seen:
    """Middleware that notes the paths it saw."""

    def __init__(self, app: ASGIApp, paths: list[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


class Kept(Seen):
    pass


class Skipped(Seen):
    pass


async def part(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"{request.path_params['space']} part {request.url.path}")


async def missing(_: Request) -> PlainTextResponse:
    raise HTTPException(404)


async def broken(_: Request) -> PlainTextResponse:
    raise RuntimeError("a bug")


def build() -> tuple[BoundedApp, RequestStats, list[str], list[str]]:
    app = BoundedApp()
    errors.install(app)

    @app.get("/api/thing")
    async def thing() -> dict[str, bool]:
        return {"ok": True}

    kept: list[str] = []
    skipped: list[str] = []
    stats = RequestStats()
    origin = Router(
        [
            Route("/{space}/part.m4s", part),
            Route("/{space}/missing", missing),
            Route("/{space}/broken", broken),
        ]
    )
    app.mount("/live", origin)
    app.lanes.append(Lane("/live", origin, keep=(Kept, RequestTelemetry)))
    app.add_middleware(Skipped, paths=skipped)
    app.add_middleware(Kept, paths=kept)
    app.add_middleware(RequestTelemetry, stats=stats)
    return app, stats, kept, skipped


def client(app: BoundedApp) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_a_lane_request_passes_only_the_middleware_the_lane_keeps() -> None:
    app, stats, kept, skipped = build()
    async with client(app) as http:
        answer = await http.get("/live/abc/part.m4s")
        api = await http.get("/api/thing")
    assert answer.status_code == 200
    assert answer.text == "abc part /live/abc/part.m4s"  # the path below the prefix was routed
    assert api.json() == {"ok": True}
    assert kept == ["/live/abc/part.m4s", "/api/thing"]
    assert skipped == ["/api/thing"]
    # Telemetry sees the lane's own route template, as it did through the mount.
    assert stats.counts["/live/{space}/part.m4s", "GET", 200] == 1


async def test_errors_in_a_lane_answer_in_the_apis_json_shape() -> None:
    app, stats, _, _ = build()
    async with client(app) as http:
        missing = await http.get("/live/abc/missing")
        broken = await http.get("/live/abc/broken")
        unrouted = await http.get("/live/abc/nothing/here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert broken.status_code == 500
    assert broken.json() == {
        "error": {"code": "internal", "message": "internal error; it has been logged"}
    }
    assert unrouted.status_code == 404
    assert unrouted.json()["error"]["code"] == "not_found"
    assert stats.counts["/live/{space}/broken", "GET", 500] == 1
