"""Web Push for reminders, the HTTP side: the server's public VAPID key, and a person's browsers.

- `GET /api/push/key`: the key a page passes to `PushManager.subscribe` (applicationServerKey).
- `POST /api/push/subscriptions`: keep this browser's subscription (`PushSubscription.toJSON()`)
  for the signed-in person or guest; their reminders with `push` then reach it
  (state/push_outbox.py). Checked strictly (reminders/webpush.py: an https endpoint, a P-256
  key on the curve, a 16-byte secret); limited per person; a person keeps at most a few
  browsers, the oldest forgotten first.
- `DELETE /api/push/subscriptions`: forget this browser (by its endpoint).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from townhall.api import errors
from townhall.api.auth import RequiredIdentity
from townhall.ratelimit.table import PUSH_SUBSCRIBE, take
from townhall.reminders.webpush import (
    ENDPOINT_MAX,
    InvalidSubscription,
    PushConfig,
    VapidKey,
    parse_subscription,
)
from townhall.spaces.control import SpaceControl
from townhall.spaces.model import UserId

KEY_MAX = 128  # base64url of a 65-byte key is 87 characters; of a 16-byte secret, 22


class PushKeysIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    p256dh: str = Field(min_length=1, max_length=KEY_MAX)
    auth: str = Field(min_length=1, max_length=KEY_MAX)


class SubscriptionIn(BaseModel):
    """`PushSubscription.toJSON()`, as a browser gives it."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(min_length=1, max_length=ENDPOINT_MAX)
    expirationTime: float | None = None
    keys: PushKeysIn


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(min_length=1, max_length=ENDPOINT_MAX)


class PushKeyOut(BaseModel):
    public_key: str  # base64url, an uncompressed P-256 point


class SubscribedOut(BaseModel):
    id: int


def build_push_router(
    control: Callable[[], SpaceControl], key: VapidKey, config: PushConfig
) -> APIRouter:
    router = APIRouter(tags=["reminders"])

    @router.get(
        "/api/push/key",
        summary="The server's Web Push (VAPID) public key, for PushManager.subscribe",
    )
    async def public_key(response: Response) -> PushKeyOut:
        response.headers["Cache-Control"] = "public, max-age=3600"
        return PushKeyOut(public_key=key.public_key_b64)

    @router.post(
        "/api/push/subscriptions",
        status_code=201,
        summary="Send my reminders by push to this browser",
        description=(
            "The body is the browser's `PushSubscription.toJSON()`. A bad endpoint or key: 422 "
            "`invalid_subscription`; limited per person (429); a person keeps the 10 browsers "
            "subscribed last."
        ),
    )
    async def subscribe(body: SubscriptionIn, who: RequiredIdentity) -> SubscribedOut:
        try:
            sub = parse_subscription(
                body.endpoint,
                body.keys.p256dh,
                body.keys.auth,
                allow_loopback_http=config.allow_loopback_http,
            )
        except InvalidSubscription as exc:
            raise errors.Unprocessable(str(exc), code="invalid_subscription") from None
        now = time.time()
        await take(control().live, PUSH_SUBSCRIBE, who.user_id, now)
        sub_id = await control().records.add_push_subscription(
            UserId(who.user_id), sub.endpoint, sub.p256dh, sub.auth, now
        )
        return SubscribedOut(id=sub_id)

    @router.delete(
        "/api/push/subscriptions",
        status_code=204,
        summary="Stop sending pushes to this browser",
    )
    async def unsubscribe(body: EndpointIn, who: RequiredIdentity) -> Response:
        await control().records.remove_push_subscription(UserId(who.user_id), body.endpoint)
        return Response(status_code=204)

    return router
