from __future__ import annotations

import random

import pytest

from townhall.webhooks.retry import MAX_ATTEMPTS, next_attempt_at
from townhall.webhooks.signing import sign, verify

SECRET = "whsec-test-secret"
BODY = b'{"type":"space.started","space":"abcdefghij"}'


def test_a_receiver_accepts_what_we_signed() -> None:
    header = sign(SECRET, BODY, 1_700_000_000)
    assert verify(SECRET, BODY, header, now=1_700_000_010)


@pytest.mark.parametrize(
    ("secret", "body", "now"),
    [
        ("another-secret", BODY, 1_700_000_010),  # wrong key
        (SECRET, BODY + b" ", 1_700_000_010),  # body changed
        (SECRET, BODY, 1_700_001_000),  # replayed 1000 s later
    ],
    ids=["wrong-secret", "tampered-body", "replayed-late"],
)
def test_a_receiver_refuses_forged_tampered_or_replayed_requests(
    secret: str, body: bytes, now: float
) -> None:
    header = sign(SECRET, BODY, 1_700_000_000)
    assert not verify(secret, body, header, now=now)


@pytest.mark.parametrize("header", ["", "t=abc,v1=00", "v1=00", "t=1700000000"])
def test_malformed_signature_headers_are_refused(header: str) -> None:
    assert not verify(SECRET, BODY, header, now=1_700_000_000)


def test_retries_wait_longer_each_time_then_give_up() -> None:
    rng = random.Random(7)
    waits = [next_attempt_at(n, 0.0, rng) for n in range(1, MAX_ATTEMPTS)]
    assert all(w is not None for w in waits)
    assert waits == sorted(waits)  # type: ignore[type-var]
    assert next_attempt_at(MAX_ATTEMPTS, 0.0, rng) is None
    with pytest.raises(ValueError, match="counts failed attempts"):
        next_attempt_at(0, 0.0)
