"""Identity tokens say who someone is until they expire; forged, unsigned or foreign ones are refused."""

from __future__ import annotations

import jwt
import pytest

from townhall.api.tokens import (
    IDENTITY_AUDIENCE,
    IdentityKind,
    IdentityTokens,
    InviteTokens,
    TokenError,
)

SECRET = "s" * 40


def test_an_identity_round_trips() -> None:
    tokens = IdentityTokens(SECRET, 3600)
    who = tokens.verify(tokens.mint("g-abcdefghijkl", "Lee", IdentityKind.GUEST))
    assert (who.user_id, who.display_name, who.kind) == (
        "g-abcdefghijkl",
        "Lee",
        IdentityKind.GUEST,
    )


def test_an_expired_identity_is_refused() -> None:
    tokens = IdentityTokens(SECRET, 3600)
    with pytest.raises(TokenError) as refused:
        tokens.verify(tokens.mint("u-abcdefghijkl", "Ada", IdentityKind.ACCOUNT, ttl_s=-5))
    assert refused.value.code == "token_expired"


def test_a_remembered_identity_still_expires_and_a_changed_token_is_checked_afresh() -> None:
    now = [0.0]
    tokens = IdentityTokens(SECRET, 3600, clock=lambda: now[0])
    token = tokens.mint("u-abcdefghijkl", "Ada", IdentityKind.ACCOUNT, ttl_s=60)
    now[0] = jwt.decode(token, options={"verify_signature": False})["exp"] - 30
    assert tokens.verify(token).user_id == "u-abcdefghijkl"  # verified, remembered
    assert tokens.verify(token).user_id == "u-abcdefghijkl"  # from memory
    head, claims, signature = token.split(".")
    with pytest.raises(TokenError):  # a token altered by one character is not the one verified
        tokens.verify(f"{head}.{claims}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}")
    now[0] += 30  # its expiry reached: refused, though it verified a moment ago
    with pytest.raises(TokenError) as refused:
        tokens.verify(token)
    assert refused.value.code == "token_expired"


CLAIMS = {
    "aud": IDENTITY_AUDIENCE,
    "sub": "u-abcdefghijkl",
    "name": "Ada",
    "kind": "account",
    "exp": 2**40,
}


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-token",
        jwt.encode(CLAIMS, "another-secret-of-enough-length-for-hs256", algorithm="HS256"),
        jwt.encode({**CLAIMS, "kind": "admin"}, SECRET, algorithm="HS256"),
        jwt.encode({k: v for k, v in CLAIMS.items() if k != "exp"}, SECRET, algorithm="HS256"),
        jwt.encode({**CLAIMS, "aud": "townhall:invite"}, SECRET, algorithm="HS256"),
        jwt.encode(CLAIMS, None, algorithm="none"),
    ],
    ids=["empty", "garbage", "forged", "unknown-kind", "no-expiry", "other-audience", "unsigned"],
)
def test_forged_or_malformed_identities_are_refused(token: str) -> None:
    with pytest.raises(TokenError) as refused:
        IdentityTokens(SECRET, 3600).verify(token)
    assert refused.value.code == "token_invalid"


def test_a_short_secret_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="too short"):
        InviteTokens("short", 60)
