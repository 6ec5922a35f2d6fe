"""Signed, expiring tokens, all JWT (HS256) with the installation's secret, told apart by audience.

    identity  "townhall:identity"  who you are: an account or a guest (cookie or bearer)
    invite    "townhall:invite"    names one invite-link record (its `jti`) of one Space's stage
    unsubscribe "townhall:unsubscribe" stop one person's reminder mail about one Space (one click)

A token for one audience is refused by every other, an invite names one Space, and every token
carries an expiry checked on each use. An invite token only proves that the installation minted
it, cheaply (a forged or mangled link costs no database read): whether it still seats anyone —
uses left, not expired, not revoked — is its record's to say (spaces/invite_links.py). An identity token is also a session that signing out
ends before its expiry: api/auth.py keeps the cluster's list of those by `fingerprint`.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
IDENTITY_AUDIENCE = "townhall:identity"
INVITE_AUDIENCE = "townhall:invite"
UNSUBSCRIBE_AUDIENCE = "townhall:unsubscribe"
MIN_SECRET_LENGTH = 32  # HS256 wants a 256-bit key


class IdentityKind(enum.StrEnum):
    ACCOUNT = "account"
    GUEST = "guest"


class TokenError(Exception):
    """A token was refused. `code` is the machine-readable reason used in the API's error body."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Identity:
    user_id: str
    display_name: str
    kind: IdentityKind
    expires_at: int


@dataclass(frozen=True)
class Invite:
    space_id: str
    role: str  # "speaker" or "cohost"
    invite_id: str
    expires_at: int


class _Jwt:
    def __init__(self, secret: str) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError("token secret is too short")
        self._secret = secret

    def encode(self, audience: str, claims: dict[str, Any], ttl_s: int) -> str:
        now = int(time.time())
        return jwt.encode(
            {**claims, "aud": audience, "iat": now, "exp": now + ttl_s},
            self._secret,
            algorithm=ALGORITHM,
        )

    def decode(self, audience: str, token: str, required: list[str]) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=audience,
                options={"require": ["exp", *required]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token_expired", "the token has expired") from None
        except jwt.PyJWTError:
            raise TokenError("token_invalid", "the token is not valid") from None
        return claims


class IdentityTokens:
    """Who the caller is. Carried in the HttpOnly session cookie or as a bearer token.

    A token verified once is remembered (up to `VERIFIED_KEPT`, the oldest forgotten first):
    decoding and checking its signature was an eighth of a reaction's CPU (py-spy), and an
    audience member sends the same token with every call. What is remembered is the exact
    token string this secret signed, so it verifies again until it expires, which is checked
    on every call; sign-out is the session list's business (api/auth.py), asked every time."""

    # Tokens: ~0.5 KB each, ~16 MB at most. More than the distinct people one process may serve
    # in a busy event (8,192 was not: with 9,000 guests calling in turn every call decoded its
    # token again, 0.1 ms of a 1 ms hand on Redis).
    VERIFIED_KEPT = 32_768

    def __init__(self, secret: str, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        self._jwt = _Jwt(secret)
        self.ttl_s = ttl_s
        self._clock = clock
        self._verified: dict[str, Identity] = {}

    def mint(
        self, user_id: str, display_name: str, kind: IdentityKind, ttl_s: int | None = None
    ) -> str:
        # jti: two sign-ins of one person in one second are still two sessions (fingerprints).
        claims = {"sub": user_id, "name": display_name, "kind": kind.value}
        claims["jti"] = secrets.token_urlsafe(9)
        return self._jwt.encode(
            IDENTITY_AUDIENCE, claims, ttl_s if ttl_s is not None else self.ttl_s
        )

    def verify(self, token: str) -> Identity:
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at > self._clock():  # as PyJWT: expired once `exp` is reached
                return known
            del self._verified[token]
            raise TokenError("token_expired", "the token has expired")
        claims = self._jwt.decode(IDENTITY_AUDIENCE, token, ["sub", "name", "kind"])
        try:
            kind = IdentityKind(claims["kind"])
        except ValueError:
            raise TokenError("token_invalid", "the token is not valid") from None
        who = Identity(str(claims["sub"]), str(claims["name"]), kind, int(claims["exp"]))
        self._verified[token] = who
        if len(self._verified) > self.VERIFIED_KEPT:
            self._verified.pop(next(iter(self._verified)))
        return who


def fingerprint(token: str) -> str:
    """What names a session in the revocation list: a hash of the token's signed part.

    Not of the whole token: the signature's last base64 character has spare bits a decoder
    ignores, so one token has several spellings that verify, while its signed part has one."""
    signed = token.rsplit(".", 1)[0]
    return hashlib.sha256(signed.encode()).hexdigest()[:32]


class InviteTokens:
    """The signed part of an invite link: the Space, the role and the link record's id (`jti`)."""

    ROLES = ("speaker", "cohost")

    def __init__(self, secret: str, ttl_s: int) -> None:
        self._jwt = _Jwt(secret)
        self.ttl_s = ttl_s

    def mint(
        self, space_id: str, role: str, ttl_s: int | None = None, *, link_id: str | None = None
    ) -> str:
        if role not in self.ROLES:
            raise ValueError(f"an invite is for one of {self.ROLES}")
        jti = link_id if link_id is not None else secrets.token_urlsafe(9)
        claims = {"space": space_id, "role": role, "jti": jti}
        return self._jwt.encode(INVITE_AUDIENCE, claims, ttl_s if ttl_s is not None else self.ttl_s)

    def verify(self, token: str, space_id: str) -> Invite:
        claims = self._jwt.decode(INVITE_AUDIENCE, token, ["space", "role", "jti"])
        if claims["space"] != space_id:
            raise TokenError("token_wrong_space", "the invite is for another Space")
        if claims["role"] not in self.ROLES:
            raise TokenError("token_invalid", "the invite is not valid")
        return Invite(
            str(claims["space"]), str(claims["role"]), str(claims["jti"]), int(claims["exp"])
        )


@dataclass(frozen=True)
class Unsubscribe:
    space_id: str
    user_id: str


class UnsubscribeTokens:
    """The one-click unsubscribe link of a reminder mail (RFC 8058): it names one person and one
    Space and needs no sign-in, so it is signed, and it outlives every mail it can be in (a Space
    is scheduled at most 30 days ahead and cancelled a day after a no-show)."""

    TTL_S = 90 * 86400

    def __init__(self, secret: str) -> None:
        self._jwt = _Jwt(secret)

    def mint(self, space_id: str, user_id: str) -> str:
        return self._jwt.encode(
            UNSUBSCRIBE_AUDIENCE, {"space": space_id, "sub": user_id}, self.TTL_S
        )

    def verify(self, token: str) -> Unsubscribe:
        claims = self._jwt.decode(UNSUBSCRIBE_AUDIENCE, token, ["space", "sub"])
        return Unsubscribe(str(claims["space"]), str(claims["sub"]))
