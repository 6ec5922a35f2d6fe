"""Cross-site request forgery: a write or a WebSocket that rides on the session cookie must come
from this site's own pages.

The session cookie is SameSite=Lax, which stops other *sites*, but a page on another port of the
same host (or another subdomain of the same site) is the same site: its plain form POST or
`no-cors` fetch carries the cookie, and so does its WebSocket handshake. Measured before this
existed: such a page ended and started a victim's Space and streamed their stage's events.

Which requests are checked: a **cookie-authenticated** one, i.e. one that carries the session
cookie and whose identity would come from it — an HTTP request with a method other than GET,
HEAD or OPTIONS and no `Authorization: Bearer` header, or a WebSocket handshake without a `token`
query parameter (api/auth.py and the events socket read identity in the same order). Bearer
clients (bots, integrations, `townhall speak`) are not checked: a browser never attaches a bearer
token on its own, so a forged request cannot carry one. Requests another node of the cluster
relays (node/forward.py, proven by the relay key) were checked where they arrived.

The check (the algorithm of Go's net/http CrossOriginProtection, plus the configured public URL):
1. `Sec-Fetch-Site` present (every current browser, over HTTPS and on localhost): allowed only if
   `same-origin` (or `none`: the person typed it). The browser itself compares the page's origin
   with the request's, so this holds behind any proxy whatever the server thinks its URL is.
2. Otherwise `Origin` present (plain HTTP to a non-local host): allowed only if it is the public
   URL's origin (TOWNHALL_PUBLIC_URL) or the request's own (its scheme, after trusted proxy
   headers, and its Host). Both are this site as the browser reached it; a page on another port
   or host names itself in `Origin` and is refused.
3. Neither: not a browser (or one too old to send either) — allowed; such a client holds the
   cookie itself and cannot be made to send it by someone else's page.

A refusal is 403 `{"error": {"code": "cross_origin", …}}`, or, for a WebSocket, a close before the
handshake completes with code 4403 (the events socket's "not allowed").
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from townhall.api.auth import COOKIE, bearer_of
from townhall.node.forward import shows_relay_key

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})
WS_NOT_ALLOWED = 4403
_WS_SCHEMES = {"ws": "http", "wss": "https"}
_REFUSAL = json.dumps(
    {
        "error": {
            "code": "cross_origin",
            "message": "This request came from another site's page; use this site's own pages.",
        }
    }
).encode()


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of a URL, lower-cased, or None for one without both."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def cookie_authenticated(scope: Scope, headers: Headers) -> bool:
    """Whether this request's identity would come from the session cookie."""
    if COOKIE not in cookie_parser(headers.get("cookie", "")):
        return False
    if scope["type"] == "websocket":
        token = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])
        return not token[0]
    if scope["method"] in SAFE_METHODS:
        return False
    return bearer_of(headers.get("authorization", "")) is None


def from_elsewhere(headers: Headers, allowed_origins: set[str]) -> bool:
    """True if a browser says this request comes from a page of another origin."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site.lower() not in ALLOWED_FETCH_SITES
    origin = headers.get("origin")
    if origin is None:
        return False
    return origin.lower() not in allowed_origins


class OriginCheck:
    """Pure ASGI; a request that needs no check costs one cookie lookup."""

    def __init__(self, app: ASGIApp, public_url: str, relay_key: str | None = None) -> None:
        self.app = app
        self.public_origin = origin_of(public_url) if public_url else None
        self.relay_key = relay_key

    def allowed_origins(self, scope: Scope, headers: Headers) -> set[str]:
        allowed = {self.public_origin} if self.public_origin else set()
        scheme = _WS_SCHEMES.get(scope["scheme"], scope["scheme"])
        host = headers.get("host")
        if host:
            allowed.add(f"{scheme}://{host.lower()}")
        return allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if (
            not cookie_authenticated(scope, headers)
            or (self.relay_key is not None and shows_relay_key(headers, self.relay_key))
            or not from_elsewhere(headers, self.allowed_origins(scope, headers))
        ):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": WS_NOT_ALLOWED, "reason": ""})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(_REFUSAL)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": _REFUSAL})
