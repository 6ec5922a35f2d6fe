from __future__ import annotations

import pytest

from townhall.api.identity import (
    IdentityError,
    clean_display_name,
    hash_password,
    normalise_username,
    verify_nobody,
    verify_password,
)
from townhall.api.tokens import (
    IdentityKind,
    IdentityTokens,
    InviteTokens,
    TokenError,
)

SECRET = "k" * 40


def test_passwords_are_stored_as_argon2id_and_verify() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert verify_password(stored, "correct horse battery")
    assert not verify_password(stored, "wrong horse battery")
    assert not verify_password("not-a-hash", "whatever1")
    assert not verify_nobody("anything1")


@pytest.mark.parametrize("password", ["short", "x" * 257])
def test_passwords_outside_the_length_rules_are_refused(password: str) -> None:
    with pytest.raises(IdentityError) as refused:
        hash_password(password)
    assert refused.value.code == "bad_password"


def test_usernames_are_case_insensitive_and_restricted() -> None:
    assert normalise_username("  Alice_01 ") == "alice_01"
    for bad in ("ab", "a" * 33, "al ice", "ålice", "alice!"):
        with pytest.raises(IdentityError):
            normalise_username(bad)


def test_display_names_are_trimmed_printable_text() -> None:
    assert clean_display_name("  Ada   Lovelace ") == "Ada Lovelace"
    for bad in ("", "   ", "x" * 41, "evil\u202eeman", "bell\x07"):
        with pytest.raises(IdentityError):
            clean_display_name(bad)


def test_identity_tokens_round_trip_and_refuse_other_audiences() -> None:
    identities = IdentityTokens(SECRET, 3600)
    who = identities.verify(identities.mint("u-abcdefghijkl", "Ada", IdentityKind.ACCOUNT))
    assert (who.user_id, who.display_name, who.kind) == (
        "u-abcdefghijkl",
        "Ada",
        IdentityKind.ACCOUNT,
    )
    invite = InviteTokens(SECRET, 3600).mint("abcdefghij", "speaker")
    with pytest.raises(TokenError):
        identities.verify(invite)


def test_an_invite_opens_one_space_until_it_expires() -> None:
    invites = InviteTokens(SECRET, 3600)
    seat = invites.verify(invites.mint("abcdefghij", "cohost"), "abcdefghij")
    assert seat.role == "cohost"
    with pytest.raises(TokenError) as wrong:
        invites.verify(invites.mint("abcdefghij", "speaker"), "zzzzzzzzzz")
    assert wrong.value.code == "token_wrong_space"
    with pytest.raises(TokenError) as expired:
        invites.verify(invites.mint("abcdefghij", "speaker", ttl_s=-1), "abcdefghij")
    assert expired.value.code == "token_expired"
    with pytest.raises(ValueError, match="invite is for"):
        invites.mint("abcdefghij", "host")
