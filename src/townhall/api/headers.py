"""The security headers every answer under /api/ carries, as the pages carry theirs (web/pages.py).

JSON answers get a Content-Security-Policy that allows nothing (`default-src 'none'`): opened as
a document (a link to an API URL, a JSON body a browser is tricked into rendering) it runs no
script, loads nothing and cannot be framed; `nosniff` keeps a browser from reading it as
anything but what its Content-Type says. The API's documentation page (/api/docs, Swagger UI
from its CDN) gets a policy that allows exactly that: the CDN's script and styles, its own
inline script by hash (computed from the page as served, so it follows FastAPI's template), and
requests to this origin only. A header a route set itself is left alone.
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from townhall.web.pages import SECURITY_HEADERS

API_PREFIX = "/api/"
DOCS_PATH = "/api/docs"
SWAGGER_CDN = "https://cdn.jsdelivr.net"
JSON_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_SHARED = {
    name: value for name, value in SECURITY_HEADERS.items() if name != "Content-Security-Policy"
}
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)
# What a JSON answer built outside this middleware (admission's 503: it sheds before the app
# runs) carries, as raw ASGI headers.
JSON_ANSWER_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    *((name.lower().encode(), value.encode()) for name, value in _SHARED.items()),
    (b"content-security-policy", JSON_POLICY.encode()),
)


def docs_policy(page: bytes) -> str:
    """The policy for the Swagger UI page `page`: its CDN, and its inline scripts by hash."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(page)
    )
    return (
        f"default-src 'none'; script-src {SWAGGER_CDN} {hashes}; "
        f"style-src {SWAGGER_CDN} 'unsafe-inline'; img-src 'self' data: https:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


class SecurityHeaders:
    """Pure ASGI. The docs page is held whole to hash its scripts (it is small and rare); every
    other answer passes through as it streams, with headers added to its start."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        if path == DOCS_PATH:
            await self._docs(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _SHARED.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", JSON_POLICY)
            await send(message)

        await self.app(scope, receive, with_headers)

    async def _docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message | None = None
        body = bytearray()

        async def held(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            body.extend(message.get("body", b""))
            if message.get("more_body", False) or start is None:
                return
            headers = MutableHeaders(scope=start)
            for name, value in _SHARED.items():
                headers.setdefault(name, value)
            headers.setdefault("Content-Security-Policy", docs_policy(bytes(body)))
            await send(start)
            await send({"type": "http.response.body", "body": bytes(body)})

        await self.app(scope, receive, held)
