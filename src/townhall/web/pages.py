"""Serves the HTML pages and their static assets (plain ES modules, no build step).

Every page is a static file filled in by its script, except a clip's share page: link previews
(chat apps, social networks) read its title and Open Graph / Twitter card tags without running any
script, so the server writes them, HTML-escaped, from the clip's card (`delivery.clip_card`).
"""

from __future__ import annotations

import asyncio
import re
import time
from html import escape
from pathlib import Path
from string import Template

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from townhall.delivery.capability import MediaKeys, clip_open
from townhall.delivery.clip_card import ClipCard, read_card
from townhall.delivery.storage import CLIPS_DIR, expired
from townhall.spaces.model import Space, Visibility, is_space_id

WEB_DIR = Path(__file__).parent
PAGES = WEB_DIR / "pages"
STATIC = WEB_DIR / "static"
MANIFEST = STATIC / "manifest.webmanifest"
PUSH_WORKER = STATIC / "push_worker.js"

_CLIP_ID = re.compile(r"([a-z0-9]{10})-[a-z0-9]{12}")  # <space id>-<12 random chars>
_CLIP_PAGE = Template((PAGES / "clip.html").read_text(encoding="utf-8"))
_UNKNOWN_CLIP_TITLE = "A clip from a townhall Space"

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


async def manifest(_: Request) -> Response:
    """The web app manifest (a phone's "Add to Home Screen"), at the root so that its scope is
    the whole site; its standard type, which browsers check."""
    return FileResponse(
        MANIFEST,
        media_type="application/manifest+json",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=3600"},
    )


async def push_worker(_: Request) -> Response:
    """The Web Push service worker, at the root so that its scope is the whole site (a worker
    controls only what is under its own path). Revalidated on every check, so a fixed worker
    reaches browsers at once rather than after a cache's lifetime."""
    return FileResponse(
        PUSH_WORKER,
        media_type="text/javascript",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
    )


def _length(seconds: float) -> str:
    """ "45 s", "1 min 5 s": how long, as people say it."""
    whole = max(1, round(seconds))
    minutes, rest = divmod(whole, 60)
    if minutes == 0:
        return f"{rest} s"
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def _names(names: tuple[str, ...]) -> str:
    """ "Ana", "Ana and Ben", "Ana, Ben and Cy"."""
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _utc(at: float) -> tuple[str, str]:
    """(machine, human) forms of a UNIX time, in UTC: the page's script says it in local time."""
    when = time.gmtime(at)
    machine = time.strftime("%Y-%m-%dT%H:%M:%SZ", when)
    human = f"{when.tm_mday} {time.strftime('%B %Y, %H:%M', when)} UTC"
    return machine, human


def render_clip(
    clip_id: str, space_id: str, card: ClipCard | None, base_url: str, query: str = ""
) -> str:
    """The share page of a clip; every value from the card is HTML-escaped (titles and names are
    what people typed, and a title like `<script>` must stay text). `query`: what the clip's links
    carry after the path (a private Space's clip key, `?key=…`)."""
    title = card.title if card is not None else _UNKNOWN_CLIP_TITLE
    audio_path = f"/api/clips/{clip_id}.m4a{query}"
    facts: list[str] = []
    description = "Listen to a clip from a live audio Space on townhall."
    if card is not None:
        length = _length(card.seconds)
        facts.append(f"A {escape(length)} clip")
        description = f"A {length} clip from “{card.title}”"
        if card.speakers:
            description += f" with {_names(card.speakers)}"
        if card.recorded_at is not None:
            machine, human = _utc(card.recorded_at)
            facts.append(f'on air <time datetime="{machine}">{escape(human)}</time>')
            description += f", on air {human}"
        description += ", on townhall."
    speakers = (
        f'<p id="clip-speakers" class="clip-speakers">On stage: {escape(_names(card.speakers))}</p>'
        if card is not None and card.speakers
        else ""
    )
    private = card is None or card.visibility == Visibility.PRIVATE.value
    listen = (
        ""  # a private Space's listener page needs its invite code, which a clip link does not carry
        if private
        else f'<a id="clip-space" class="button primary" href="/s/{space_id}">Listen to the Space</a>'
    )
    values = {
        "page_title": f"{title} · a clip · townhall",
        "title": title,
        "description": description,
        "robots": "index"
        if card is not None and card.visibility == Visibility.PUBLIC.value
        else "noindex",
        "page_url": f"{base_url}/c/{clip_id}{query}",
        "audio_url": f"{base_url}{audio_path}",
        "audio_path": audio_path,
        "download_name": f"townhall-clip-{clip_id}.m4a",
    }
    html_parts = {
        "facts_html": " · ".join(facts),
        "speakers_html": speakers,
        "listen_html": listen,
    }
    return _CLIP_PAGE.substitute(
        {name: escape(value, quote=True) for name, value in values.items()}, **html_parts
    )


async def clip(request: Request) -> Response:
    match = _CLIP_ID.fullmatch(request.path_params["clip"])
    if match is None or not is_space_id(match.group(1)):
        return HTMLResponse("<h1>No such clip</h1>", 404, headers=SECURITY_HEADERS)
    clip_id, space_id = match.group(0), match.group(1)
    config = request.app.state.config
    root: Path | None = config.media.recordings_dir
    if root is None:
        return HTMLResponse("<h1>No such clip</h1>", 404, headers=SECURITY_HEADERS)
    keys: MediaKeys = request.app.state.media_keys
    space: Space | None = await request.app.state.find_space(space_id)
    key = request.query_params.get("key")
    if not clip_open(keys, space, clip_id, key):  # a private Space's clip without its key
        return HTMLResponse("<h1>No such clip</h1>", 404, headers=SECURITY_HEADERS)
    if await asyncio.to_thread(expired, root, space_id):
        return HTMLResponse(
            "<h1>This clip was deleted with its recording after the retention period</h1>",
            410,
            headers=SECURITY_HEADERS,
        )
    card = await asyncio.to_thread(read_card, root, space_id, clip_id)
    audio = root / space_id / CLIPS_DIR / f"{clip_id}.m4a"
    if card is None and not await asyncio.to_thread(audio.is_file):
        return HTMLResponse("<h1>No such clip</h1>", 404, headers=SECURITY_HEADERS)
    base_url = config.public_url.rstrip("/") or str(request.base_url).rstrip("/")
    return HTMLResponse(
        render_clip(
            clip_id, space_id, card, base_url, keys.clip_query(space, clip_id) if space else ""
        ),
        headers={**SECURITY_HEADERS, "Cache-Control": "public, max-age=300"},
    )


def routes() -> list[Route | Mount]:
    return [
        Route("/", home),
        Route("/s/{space}", listener),
        Route("/s/{space}/stage", stage),
        Route("/c/{clip}", clip),
        Route("/manifest.webmanifest", manifest),
        Route("/push-worker.js", push_worker),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
