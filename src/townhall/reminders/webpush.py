"""Web Push, the wire side: the server's VAPID key, a browser's subscription, and the encrypted
request that carries one notice to one browser's push service. Sans-I/O: it builds requests and
judges answers; reminders/push_sender.py does the sending.

The protocols, and which library does each:
- RFC 8030 (Web Push): a POST of the encrypted message to the subscription's endpoint, with `TTL`
  (how long the push service may hold it for a browser that is offline), `Urgency` (whether a
  phone on battery should wake for it) and `Topic` (a newer message about the same Space
  replaces an older one still waiting at the push service).
- RFC 8291 + RFC 8188 (message encryption, `aes128gcm`): an ephemeral P-256 key agreed with the
  browser's `p256dh` key and mixed with its `auth` secret (http_ece does it).
- RFC 8292 (VAPID): an ES256 JWT naming the push service's origin (`aud`), an expiry (`exp`, at
  most 24 h ahead) and who runs this server (`sub`), signed with the server's key, whose public
  half the browser was given at subscription (`GET /api/push/key`) (py_vapid signs).

A push service's answer decides what becomes of the message (`judge`): 2xx delivered; 404/410
the subscription is gone for good (the browser unsubscribed or its data was cleared): delete it;
429 and 5xx try again later; any other 4xx (a bad key, a payload it refuses) will not get better.
"""

from __future__ import annotations

import base64
import binascii
import enum
import ipaddress
import json
import os
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

__all__ = [
    "ENDPOINT_MAX",
    "InvalidSubscription",
    "Outcome",
    "PushConfig",
    "PushMessage",
    "PushRequest",
    "Subscription",
    "Urgency",
    "VapidKey",
    "b64url",
    "judge",
    "parse_subscription",
    "push_request",
]

ENDPOINT_MAX: Final = 2_048  # real endpoints are 150-500 characters
P256_POINT_LEN: Final = 65  # an uncompressed P-256 point: 0x04, x, y
AUTH_SECRET_LEN: Final = 16  # RFC 8291 §3.2
JWT_LIFETIME_S: Final = 12 * 3600  # RFC 8292 §2: no more than 24 h
# RFC 8291 §4: a push service must accept 4096 bytes of body; aes128gcm's header (86 bytes with a
# 65-byte key id), the padding delimiter and the tag (17) leave this for the JSON.
PAYLOAD_MAX: Final = 3_993
TOPIC_MAX: Final = 32  # RFC 8030 §5.4: at most 32 characters of the base64url alphabet


@dataclass(frozen=True)
class PushConfig:
    """Web Push reminders (TOWNHALL_VAPID_*). `load` fills the key from the environment, or from
    <data_dir>/vapid.key, made on first run; and the subject from the SMTP sender or the public
    URL when none is given."""

    vapid_private_key: str = ""  # the raw 32-byte P-256 scalar, base64url
    subject: str = ""  # RFC 8292 `sub`: mailto:… or https://…, how a push service reaches us
    # Accept http:// endpoints on loopback addresses (the tests' own push service); never in
    # production, where every push service is https.
    allow_loopback_http: bool = False


class VapidKey:
    """The server's VAPID key pair: its public half goes to browsers, its private half signs."""

    def __init__(self, private_key_b64: str, subject: str) -> None:
        self._vapid = Vapid02.from_raw(private_key_b64.strip().encode())
        self.subject = subject
        point = self._vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.public_key_b64 = b64url(point)  # PushManager.subscribe's applicationServerKey

    @staticmethod
    def generate() -> str:
        """A new private key, as TOWNHALL_VAPID_PRIVATE_KEY and vapid.key hold it."""
        key = ec.generate_private_key(ec.SECP256R1())
        return b64url(key.private_numbers().private_value.to_bytes(32, "big"))

    @staticmethod
    def check(private_key_b64: str) -> None:
        """Raise ValueError unless this is a usable private key."""
        raw = _unb64url(private_key_b64.strip())
        if len(raw) != 32:
            raise ValueError("not a 32-byte P-256 private key")
        ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())  # 0 or ≥ n: ValueError

    def authorization(self, endpoint: str, now: float) -> str:
        """The `Authorization: vapid t=…, k=…` header for a request to `endpoint`."""
        parts = urlsplit(endpoint)
        claims = {
            "aud": f"{parts.scheme}://{parts.netloc}",
            "exp": int(now) + JWT_LIFETIME_S,
            "sub": self.subject,
        }
        return str(self._vapid.sign(claims)["Authorization"])


def b64url(data: bytes) -> str:
    """Unpadded base64url, the encoding of every key in the Push API."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    if not text or any(c not in _B64URL for c in text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True)
class Subscription:
    """Where one browser receives pushes (PushSubscription.toJSON()), checked."""

    endpoint: str
    p256dh: str  # base64url, as the browser gave it
    auth: str


class InvalidSubscription(ValueError):
    """A subscription that cannot be used; `field` names the part, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _check_endpoint(endpoint: str, allow_loopback_http: bool) -> None:
    if len(endpoint) > ENDPOINT_MAX:
        raise InvalidSubscription("endpoint", f"the endpoint is longer than {ENDPOINT_MAX}")
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise InvalidSubscription("endpoint", "the endpoint is not a URL") from None
    if not host or parts.username is not None or parts.password is not None or parts.fragment:
        raise InvalidSubscription("endpoint", "the endpoint is not a push service URL")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    loopback = address is not None and address.is_loopback
    if parts.scheme == "http" and loopback and allow_loopback_http:
        return
    if parts.scheme != "https":
        raise InvalidSubscription("endpoint", "the endpoint must be an https:// URL")
    # Push services have public names; an address inside this network would make the server
    # post wherever a caller likes (the same check cannot see what a name resolves to).
    if address is not None and not (address.is_global or (loopback and allow_loopback_http)):
        raise InvalidSubscription("endpoint", "the endpoint must be a public push service")


def parse_subscription(
    endpoint: str, p256dh: str, auth: str, *, allow_loopback_http: bool = False
) -> Subscription:
    """Check what a browser sent: an https endpoint (http on loopback when allowed), a P-256
    public key that is a point on the curve, a 16-byte auth secret."""
    _check_endpoint(endpoint, allow_loopback_http)
    try:
        point = _unb64url(p256dh)
    except ValueError:
        raise InvalidSubscription("keys.p256dh", "the p256dh key is not base64url") from None
    if len(point) != P256_POINT_LEN or point[0] != 4:
        raise InvalidSubscription(
            "keys.p256dh", "the p256dh key must be an uncompressed P-256 point (65 bytes)"
        )
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise InvalidSubscription("keys.p256dh", "the p256dh key is not on the curve") from None
    try:
        secret = _unb64url(auth)
    except ValueError:
        raise InvalidSubscription("keys.auth", "the auth secret is not base64url") from None
    if len(secret) != AUTH_SECRET_LEN:
        raise InvalidSubscription("keys.auth", "the auth secret must be 16 bytes")
    return Subscription(endpoint, p256dh, auth)


class Urgency(enum.StrEnum):
    """RFC 8030 §5.3: whether a device on battery should wake up for the message."""

    NORMAL = "normal"
    HIGH = "high"


@dataclass(frozen=True)
class PushMessage:
    """What the service worker shows (web/static/push_worker.js): a notification's title and
    body, the page a click opens, and a tag so a newer notice replaces an older one on screen."""

    title: str
    body: str
    url: str
    tag: str

    def payload(self) -> bytes:
        """The JSON the browser decrypts, cut to what every push service accepts."""
        data = {"title": self.title, "body": self.body, "url": self.url, "tag": self.tag}
        raw = json.dumps(data, ensure_ascii=False).encode()
        while len(raw) > PAYLOAD_MAX and data["body"]:
            data["body"] = data["body"][: len(data["body"]) // 2]
            raw = json.dumps(data, ensure_ascii=False).encode()
        return raw


@dataclass(frozen=True)
class PushRequest:
    """One POST to a push service."""

    url: str
    headers: dict[str, str]
    body: bytes


def push_request(
    key: VapidKey,
    subscription: Subscription,
    message: PushMessage,
    *,
    ttl_s: int,
    urgency: Urgency,
    topic: str | None,
    now: float,
) -> PushRequest:
    """The encrypted, signed request carrying `message` to `subscription` (RFC 8030/8291/8292).
    CPU work (two ECDH, an ECDSA signature): the sender runs it off the event loop."""
    body = http_ece.encrypt(
        message.payload(),
        salt=os.urandom(16),
        private_key=ec.generate_private_key(ec.SECP256R1()),  # one per message (RFC 8291 §3.1)
        dh=_unb64url(subscription.p256dh),
        auth_secret=_unb64url(subscription.auth),
        version="aes128gcm",
    )
    headers = {
        "Authorization": key.authorization(subscription.endpoint, now),
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        "TTL": str(ttl_s),
        "Urgency": urgency.value,
    }
    if topic is not None and len(topic) <= TOPIC_MAX and set(topic) <= _B64URL:
        headers["Topic"] = topic
    return PushRequest(subscription.endpoint, headers, bytes(body))


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    GONE = "gone"  # the subscription no longer exists: delete it
    RETRY = "retry"  # the push service is busy or failing: try again later
    REJECTED = "rejected"  # it refused this message; trying again will not help


def judge(status: int) -> Outcome:
    """What a push service's status code means for the message (RFC 8030 §5, §8.3)."""
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status in (404, 410):
        return Outcome.GONE
    if status in (408, 429) or status >= 500:
        return Outcome.RETRY
    return Outcome.REJECTED
