"""Accounts and guests: password hashing, username and display-name rules.

Passwords are hashed with argon2id (argon2-cffi's defaults: 64 MiB, t=3); hashing takes ~0.1 s of
CPU on purpose, so callers run it in a worker thread and rate-limit sign-in and sign-up. A listener
who wants to react or raise a hand without an account becomes a *guest*: a display name bound to a
signed identity cookie (`g-…` id). A guest's bans follow the cookie; hosts who need bans that stick
can make a Space accounts-only (documented in the README).
"""

from __future__ import annotations

import re
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

USERNAME_RE = re.compile(r"^[a-z0-9_]{3,32}$")
PASSWORD_MIN = 8
PASSWORD_MAX = 256  # argon2 takes any length; a cap keeps one request's CPU bounded
DISPLAY_NAME_MAX = 40

_hasher = PasswordHasher()


class IdentityError(ValueError):
    """Input that cannot become an identity; `code` names the rule it broke."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def normalise_username(raw: str) -> str:
    name = raw.strip().lower()
    if not USERNAME_RE.fullmatch(name):
        raise IdentityError("bad_username", "a username is 3–32 characters of a–z, 0–9 and _")
    return name


def check_password(password: str) -> None:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise IdentityError(
            "bad_password", f"a password has {PASSWORD_MIN}–{PASSWORD_MAX} characters"
        )


def clean_display_name(raw: str) -> str:
    """Printable, trimmed, single-line, NFC; 1–40 characters."""
    name = unicodedata.normalize("NFC", " ".join(raw.split()))
    if not name or len(name) > DISPLAY_NAME_MAX:
        raise IdentityError(
            "bad_display_name", f"a display name has 1–{DISPLAY_NAME_MAX} characters"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in name):
        raise IdentityError("bad_display_name", "a display name must be printable text")
    return name


def hash_password(password: str) -> str:
    """Blocking (~0.1 s): call from a worker thread."""
    check_password(password)
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Blocking (~0.1 s): call from a worker thread. False for a wrong password or a broken hash."""
    if len(password) > PASSWORD_MAX:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# A hash of nothing in particular, verified when a username does not exist so that sign-in takes
# the same time whether or not the account exists (no user enumeration by timing).
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def verify_nobody(password: str) -> bool:
    verify_password(_DUMMY_HASH, password)
    return False
