"""A Web Push service on loopback for the tests, and a browser's side of a subscription.

`PushService` is a real HTTP server (a thread) that keeps every request it receives and answers
each endpoint with the statuses queued for it (201 when none is), like a push service does.
`Receiver` is what a browser holds: a P-256 key pair and an auth secret; it decrypts a pushed
body (aes128gcm, RFC 8291) with them and checks the request's VAPID JWT (RFC 8292).
"""

from __future__ import annotations

import base64
import os
import threading
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from townhall.harness import free_port


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class PushService:
    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        self._answers: dict[str, deque[tuple[int, dict[str, str]]]] = defaultdict(deque)
        self._lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with service._lock:
                    service.received.append(
                        Received(self.path, {k: v for k, v in self.headers.items()}, body)
                    )
                    queued = service._answers[self.path]
                    status, headers = queued.popleft() if queued else (201, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> PushService:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def endpoint(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/push/{name}"

    def answer(self, name: str, status: int, headers: dict[str, str] | None = None) -> None:
        """The next push to `name` gets this status."""
        with self._lock:
            self._answers[f"/push/{name}"].append((status, headers or {}))

    def to(self, name: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == f"/push/{name}"]


class Receiver:
    """One browser's subscription keys, as PushManager.subscribe makes them."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)

    def subscription(self) -> dict[str, Any]:
        """PushSubscription.toJSON()."""
        point = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(point), "auth": b64url(self.auth)},
        }

    def decrypt(self, body: bytes) -> bytes:
        return bytes(
            http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth, version="aes128gcm")
        )


def vapid_claims(authorization: str, server_key_b64: str) -> dict[str, Any]:
    """The claims of a `vapid t=…, k=…` header, once its signature is verified against the
    server's public key and `k` is that key; `aud` must be the endpoint's origin, `exp` ahead."""
    scheme, _, params = authorization.partition(" ")
    assert scheme == "vapid", authorization
    parts = dict(p.strip().split("=", 1) for p in params.split(","))
    assert parts["k"] == server_key_b64
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(parts["k"]))
    unverified = jwt.decode(parts["t"], options={"verify_signature": False})
    claims: dict[str, Any] = jwt.decode(
        parts["t"],
        key=public,
        algorithms=["ES256"],
        audience=unverified["aud"],
        options={"require": ["aud", "exp", "sub"]},
    )
    return claims


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
