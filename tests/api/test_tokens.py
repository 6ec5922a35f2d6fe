"""Stage tokens open exactly one Space, in one role, until they expire."""

from __future__ import annotations

import jwt
import pytest

from townhall.api.tokens import AUDIENCE, StageRole, TokenError, TokenSigner

SECRET = "s" * 32


def test_a_token_grants_its_space_and_role() -> None:
    signer = TokenSigner(SECRET, 3600)
    grant = signer.verify(signer.mint("abcdefghij", StageRole.HOST, "alice"), "abcdefghij")
    assert (grant.space_id, grant.speaker_id, grant.role) == ("abcdefghij", "alice", StageRole.HOST)


def test_a_token_for_one_space_opens_nothing_in_another() -> None:
    signer = TokenSigner(SECRET, 3600)
    with pytest.raises(TokenError) as refused:
        signer.verify(signer.mint("abcdefghij", StageRole.SPEAKER), "zzzzzzzzzz")
    assert refused.value.code == "token_wrong_space"


def test_an_expired_token_is_refused() -> None:
    signer = TokenSigner(SECRET, 3600)
    with pytest.raises(TokenError) as refused:
        signer.verify(signer.mint("abcdefghij", StageRole.SPEAKER, ttl_s=-10), "abcdefghij")
    assert refused.value.code == "token_expired"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-token",
        jwt.encode(
            {"aud": AUDIENCE, "space": "abcdefghij", "sub": "x", "role": "host", "exp": 2**40},
            "another-secret-of-enough-length-for-hs256",
            algorithm="HS256",
        ),
        jwt.encode(
            {"aud": AUDIENCE, "space": "abcdefghij", "sub": "x", "role": "god", "exp": 2**40},
            SECRET,
            algorithm="HS256",
        ),
        jwt.encode(
            {"aud": AUDIENCE, "space": "abcdefghij", "sub": "x", "role": "host"},
            SECRET,
            algorithm="HS256",
        ),
    ],
    ids=["empty", "garbage", "forged", "unknown-role", "no-expiry"],
)
def test_forged_or_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(TokenError) as refused:
        TokenSigner(SECRET, 3600).verify(token, "abcdefghij")
    assert refused.value.code == "token_invalid"


def test_unsigned_tokens_are_refused() -> None:
    token = jwt.encode(
        {"aud": AUDIENCE, "space": "abcdefghij", "sub": "x", "role": "host", "exp": 2**40},
        None,
        algorithm="none",
    )
    with pytest.raises(TokenError):
        TokenSigner(SECRET, 3600).verify(token, "abcdefghij")
