"""Serves the HTML pages and their static assets (plain ES modules, no build step)."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from townhall.spaces.model import is_space_id

WEB_DIR = Path(__file__).parent
PAGES = WEB_DIR / "pages"
STATIC = WEB_DIR / "static"

_CLIP_ID = re.compile(r"([a-z0-9]{10})-[a-z0-9]{12}")  # <space id>-<12 random chars>

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # stage URLs carry a token in the fragment; never leak the page URL
    "Content-Security-Policy": (
        "default-src 'self'; media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self'; "
        "img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
    ),
}


def _page(name: str) -> Response:
    return FileResponse(
        PAGES / name,
        media_type="text/html",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
    )


async def home(_: Request) -> Response:
    return _page("home.html")


async def listener(request: Request) -> Response:
    if not is_space_id(request.path_params["space"]):
        return HTMLResponse("<h1>No such Space</h1>", 404, headers=SECURITY_HEADERS)
    return _page("listen.html")


async def stage(request: Request) -> Response:
    if not is_space_id(request.path_params["space"]):
        return HTMLResponse("<h1>No such Space</h1>", 404, headers=SECURITY_HEADERS)
    return _page("stage.html")


async def clip(request: Request) -> Response:
    match = _CLIP_ID.fullmatch(request.path_params["clip"])
    if match is None or not is_space_id(match.group(1)):
        return HTMLResponse("<h1>No such clip</h1>", 404, headers=SECURITY_HEADERS)
    return _page("clip.html")


def routes() -> list[Route | Mount]:
    return [
        Route("/", home),
        Route("/s/{space}", listener),
        Route("/s/{space}/stage", stage),
        Route("/c/{clip}", clip),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
