"""Who is calling: sign up, sign in, sign out, guests — and the dependencies that read identity.

An identity travels as a signed token (see tokens.py) in the HttpOnly `th_session` cookie for the
web app or as `Authorization: Bearer …` for API clients and bots. Anyone may listen without one;
reacting, raising a hand or going on stage needs one — an account, or a guest: a display name
bound to a signed cookie. Signing out ends the session everywhere at once: the token's fingerprint
goes into the cluster's revocation list (LiveState, kept until the token would have expired), and
every verification asks that list once (one dictionary lookup embedded, one Redis EXISTS —
about 0.1 ms of round trip — with Redis; while Redis is unreachable the list is not consulted,
see `Sessions.verify`). Sign-in is rate-limited per address and per account, sign-up and guest
names per address (argon2 costs ~0.1 s of CPU on purpose), in the shared store, so every process
of a deployment counts the same tries (ratelimit/table.py). The password work runs in a worker
thread.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from townhall.api.errors import Conflict, Unauthorized, Unprocessable
from townhall.api.identity import (
    IdentityError,
    clean_display_name,
    hash_password,
    normalise_username,
    verify_nobody,
    verify_password,
)
from townhall.api.tokens import Identity, IdentityKind, IdentityTokens, TokenError, fingerprint
from townhall.ratelimit.address import address_key
from townhall.ratelimit.table import (
    GUEST,
    SIGNIN_PER_ACCOUNT,
    SIGNIN_PER_ADDRESS,
    SIGNUP,
    Limit,
    TokenStore,
    take,
)
from townhall.spaces.model import Account, UserId, new_account_id, new_guest_id
from townhall.state.live import LiveState
from townhall.state.records import Records, UsernameTaken
from townhall.state.unavailable import UNAVAILABLE_ERRORS, is_unavailable

COOKIE = "th_session"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignUp(Strict):
    username: str = Field(min_length=3, max_length=32)
    password: str = Field(min_length=8, max_length=256)
    display_name: str = Field(min_length=1, max_length=80)


class SignIn(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class GuestIn(Strict):
    display_name: str = Field(min_length=1, max_length=80)


class SignedOut(BaseModel):
    signed_in: Literal[False] = False


class IdentityOut(BaseModel):
    signed_in: Literal[True] = True
    user_id: str
    display_name: str
    kind: str
    token: str | None = None  # only when just issued: the bearer form of the same identity
    expires_at: int


def bearer_of(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer …` header ("" if it names none), or None when the
    header is not a bearer one: then the session cookie is the identity (api/origins.py checks
    where such requests come from)."""
    if not authorization.startswith("Bearer "):
        return None
    return authorization.removeprefix("Bearer ").strip()


REVOKED = "token_revoked"
UNCHECKED_WARN_EVERY_S = 10.0  # how often an unreachable store's unchecked sessions are logged
log = logging.getLogger(__name__)


class Sessions:
    """Identity tokens as sessions: valid by signature and expiry (tokens.py) unless signed out,
    which the shared live state remembers for every process until the token expires."""

    def __init__(
        self,
        tokens: IdentityTokens,
        store: Callable[[], LiveState],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tokens = tokens
        self._store = store
        self._clock = clock
        self._warned_at = -UNCHECKED_WARN_EVERY_S

    async def verify(self, token: str) -> Identity:
        """The token's identity; TokenError if forged, expired or signed out (`REVOKED`).

        While the shared store is unreachable the list cannot be read and a valid token is
        accepted (a signed-out one too, for that while): what needs only the records (a person's
        own state, the stage's audio) keeps working through a Redis restart, as it did before
        sessions could be revoked. Anything that needs the store itself still answers 503."""
        who = self.tokens.verify(token)
        try:
            revoked = await self._store().session_revoked(fingerprint(token), self._clock())
        except UNAVAILABLE_ERRORS as exc:
            if not is_unavailable(exc):
                raise
            now = time.monotonic()
            if now - self._warned_at > UNCHECKED_WARN_EVERY_S:
                self._warned_at = now
                log.warning("sessions are not checked for sign-out: the store is unreachable")
            return who
        if revoked:
            raise TokenError(REVOKED, "this session has been signed out; sign in again")
        return who

    async def revoke(self, token: str) -> None:
        """End the session `token` is; a token that is not valid anyway needs nothing."""
        try:
            who = self.tokens.verify(token)
        except TokenError:
            return
        await self._store().revoke_session(fingerprint(token), who.expires_at, self._clock())


def presented_token(request: Request) -> str | None:
    """The token the caller presents: the bearer header's, else the session cookie's."""
    bearer = bearer_of(request.headers.get("authorization", ""))
    return bearer if bearer is not None else request.cookies.get(COOKIE)


async def identity_from(request: Request) -> Identity | None:
    """The caller's verified identity, from the bearer header or the session cookie, or None."""
    sessions: Sessions = request.app.state.sessions
    raw = presented_token(request)
    if not raw:
        return None
    try:
        return await sessions.verify(raw)
    except TokenError as exc:
        # A bad bearer token is an error, and so is a signed-out session however it comes; a
        # cookie that is merely stale (expired, or from another secret) means "signed out".
        if request.headers.get("authorization") or exc.code == REVOKED:
            raise Unauthorized(exc.message, code=exc.code) from None
        return None


async def optional_identity(request: Request) -> Identity | None:
    return await identity_from(request)


async def required_identity(request: Request) -> Identity:
    who = await identity_from(request)
    if who is None:
        raise Unauthorized("sign in or pick a guest name first", code="identity_required")
    return who


OptionalIdentity = Annotated[Identity | None, Depends(optional_identity)]
RequiredIdentity = Annotated[Identity, Depends(required_identity)]


def client_address(request: Request) -> str:
    """The caller as every per-address limit and quota counts it: their address as the server
    sees it (after a trusted proxy's X-Forwarded-For, TOWNHALL_TRUSTED_PROXIES), an IPv6 one by
    its /64 (`ratelimit.address`). The one place a per-address key is made."""
    return address_key(request.client.host) if request.client else "unknown"


def build_auth_router(
    records: Callable[[], Records],
    limits: Callable[[], TokenStore],
    sessions: Sessions,
    *,
    secure_cookies: bool,
    clock: Callable[[], float] = time.time,
) -> APIRouter:
    router = APIRouter(prefix="/api/auth", tags=["identity"])
    tokens = sessions.tokens

    async def limit(which: Limit, caller: str) -> None:
        await take(limits(), which, caller, clock())

    def issue(response: Response, user_id: str, name: str, kind: IdentityKind) -> IdentityOut:
        token = tokens.mint(user_id, name, kind)
        response.set_cookie(
            COOKIE,
            token,
            max_age=tokens.ttl_s,
            httponly=True,
            samesite="lax",
            secure=secure_cookies,
            path="/",
        )
        who = tokens.verify(token)
        return IdentityOut(
            user_id=user_id,
            display_name=name,
            kind=kind.value,
            token=token,
            expires_at=who.expires_at,
        )

    @router.post(
        "/signup",
        status_code=201,
        response_model=IdentityOut,
        summary="Create an account and sign in",
    )
    async def signup(body: SignUp, request: Request, response: Response) -> IdentityOut:
        await limit(SIGNUP, client_address(request))
        try:
            username = normalise_username(body.username)
            name = clean_display_name(body.display_name)
            password_hash = await asyncio.to_thread(hash_password, body.password)
        except IdentityError as exc:
            raise Unprocessable(exc.message, code=exc.code) from None
        account = Account(new_account_id(), username, name, password_hash, time.time())
        try:
            await records().create_account(account)
        except UsernameTaken:
            raise Conflict("that username is taken", code="username_taken") from None
        return issue(response, account.id, name, IdentityKind.ACCOUNT)

    @router.post(
        "/signin", response_model=IdentityOut, summary="Sign in with username and password"
    )
    async def signin(body: SignIn, request: Request, response: Response) -> IdentityOut:
        username = body.username.strip().lower()
        await limit(SIGNIN_PER_ADDRESS, client_address(request))
        # Counted whether or not the account exists, so the limit tells a guesser nothing.
        await limit(SIGNIN_PER_ACCOUNT, username)
        account = await records().account_by_username(username)
        if account is None:
            await asyncio.to_thread(verify_nobody, body.password)
            ok = False
        else:
            ok = await asyncio.to_thread(verify_password, account.password_hash, body.password)
        if not ok or account is None:
            raise Unauthorized("wrong username or password", code="bad_credentials")
        return issue(response, account.id, account.display_name, IdentityKind.ACCOUNT)

    @router.post(
        "/guest",
        status_code=201,
        response_model=IdentityOut,
        summary="Continue as a guest with a display name",
    )
    async def guest(body: GuestIn, request: Request, response: Response) -> IdentityOut:
        await limit(GUEST, client_address(request))
        try:
            name = clean_display_name(body.display_name)
        except IdentityError as exc:
            raise Unprocessable(exc.message, code=exc.code) from None
        return issue(response, new_guest_id(), name, IdentityKind.GUEST)

    @router.post(
        "/signout",
        status_code=204,
        summary="Sign out: ends the presented session (bearer or cookie) everywhere, clears the cookie",
    )
    async def signout(request: Request, response: Response) -> Response:
        raw = presented_token(request)
        if raw:
            await sessions.revoke(raw)
        response.delete_cookie(COOKIE, path="/")
        response.status_code = 204
        return response

    @router.get(
        "/me",
        response_model=IdentityOut | SignedOut,
        summary="Who am I (200 with signed_in false when nobody is signed in)",
    )
    async def me(response: Response, who: OptionalIdentity) -> IdentityOut | SignedOut:
        response.headers["Cache-Control"] = "private, no-store"
        if who is None:
            return SignedOut()
        return IdentityOut(
            user_id=who.user_id,
            display_name=who.display_name,
            kind=who.kind.value,
            expires_at=who.expires_at,
        )

    return router


def actor_id(who: Identity) -> UserId:
    return UserId(who.user_id)
