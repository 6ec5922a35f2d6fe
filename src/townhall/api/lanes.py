"""Fast lanes: a path prefix served by its own app with only the middleware it needs.

A listener's media request (`/live/…`) is the one request the origin answers thousands of times a
second, and before it reached its router it went through the whole API stack: the body limiter,
the JSON-413 rewriter, the security headers and origin check (both for `/api` and cookie writes
only), the exception middleware, and the API router's match against every API route before the
`/live` mount. Profiled with 300 direct LL-HLS listeners (~1,800 requests/s) that was ~45 % of the
event loop's time, on the thread the media clock shares. A lane skips all of it: the request goes
from the server straight to the lane's app, wrapped in the same error handling (500s and mapped
exceptions in the API's JSON shape) and in those of the app's own middleware the lane names
(e.g. trusted proxy headers, request telemetry and admission control), configured exactly as they
are for every other request because they are the same entries of `app.user_middleware`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Receive, Scope, Send


class Lane:
    """`prefix` (a mount path such as "/live") served by `app`, with the app's middleware whose
    classes are in `keep`."""

    def __init__(self, prefix: str, app: ASGIApp, keep: tuple[object, ...]) -> None:
        self.prefix = prefix.rstrip("/")
        self.mount = Mount(self.prefix, app=app)
        self.keep = keep

    def build(self, owner: Starlette) -> ASGIApp:
        error_handler = None
        handlers: dict[Any, Callable[..., Any]] = {}
        for key, value in owner.exception_handlers.items():
            if key in (500, Exception):
                error_handler = value
            else:
                handlers[key] = value
        mount = self.mount

        def routed(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
            # What the router does for a mount: the path below it, and the route for telemetry.
            match, child = mount.matches(scope)
            if match is not Match.FULL:  # cannot happen for paths under the prefix
                raise RuntimeError(f"lane {mount.path} does not match {scope.get('path')!r}")
            scope.update(child)
            scope["route"] = mount
            return mount.app(scope, receive, send)  # a tail call (see `by_prefix`)

        app: ASGIApp = ExceptionMiddleware(routed, handlers=handlers)
        for middleware in reversed(owner.user_middleware):
            if any(middleware.cls is kept for kept in self.keep):
                app = middleware.cls(app, *middleware.args, **middleware.kwargs)
        return ServerErrorMiddleware(app, handler=error_handler)


def by_prefix(full: ASGIApp, lanes: Mapping[str, ASGIApp]) -> ASGIApp:
    """HTTP requests under a lane's prefix go to that lane; everything else (other paths,
    WebSockets, lifespan) to `full`."""
    prefixes = tuple((prefix + "/", lane) for prefix, lane in lanes.items())

    # Tail calls, not coroutines: a request holds every coroutine it passed through until its
    # response ends, and a listener's streamed segment is held for seconds (docs/architecture.md,
    # "Memory per directly served listener"); a layer that only chooses the next app need not
    # be one of them.
    def dispatch(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] == "http":
            path: str = scope["path"]
            for prefix, lane in prefixes:
                if path.startswith(prefix):
                    return lane(scope, receive, send)
        return full(scope, receive, send)

    return dispatch
