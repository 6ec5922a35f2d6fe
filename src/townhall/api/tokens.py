"""Signed, expiring stage tokens: who may publish audio into which Space, in which role.

A token is a JWT (HS256) signed with the installation's secret. It names one Space, so a token for
one Space opens nothing in another; it carries an expiry, checked on every use.
"""

from __future__ import annotations

import enum
import secrets
import time
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
AUDIENCE = "townhall:stage"


class StageRole(enum.StrEnum):
    HOST = "host"
    SPEAKER = "speaker"


class TokenError(Exception):
    """A token was refused. `code` is the machine-readable reason used in the API's error body."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class StageGrant:
    space_id: str
    speaker_id: str
    role: StageRole
    expires_at: int


class TokenSigner:
    def __init__(self, secret: str, default_ttl_s: int) -> None:
        if len(secret) < 32:
            raise ValueError("token secret is too short")
        self._secret = secret
        self._ttl = default_ttl_s

    def mint(
        self,
        space_id: str,
        role: StageRole,
        speaker_id: str | None = None,
        ttl_s: int | None = None,
    ) -> str:
        now = int(time.time())
        claims = {
            "aud": AUDIENCE,
            "space": space_id,
            "sub": speaker_id or f"s-{secrets.token_hex(6)}",
            "role": role.value,
            "iat": now,
            "exp": now + (ttl_s if ttl_s is not None else self._ttl),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str, space_id: str) -> StageGrant:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                options={"require": ["exp", "space", "sub", "role"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token_expired", "the token has expired") from None
        except jwt.PyJWTError:
            raise TokenError("token_invalid", "the token is not valid") from None
        if claims["space"] != space_id:
            raise TokenError("token_wrong_space", "the token is for another Space")
        try:
            role = StageRole(claims["role"])
        except ValueError:
            raise TokenError("token_invalid", "the token is not valid") from None
        return StageGrant(str(claims["space"]), str(claims["sub"]), role, int(claims["exp"]))
