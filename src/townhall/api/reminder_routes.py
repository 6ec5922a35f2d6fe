"""Remind me, and Add to calendar: the HTTP side of reminders.

- `POST /api/spaces/{id}/remind` (optionally with an email address, accounts only, by push to
  the person's browsers (api/push_routes.py), and the 10-minute warning) and `DELETE` to cancel;
  the mails and pushes themselves leave from the outboxes (reminders/sender.py, push_sender.py).
- `/api/reminders/unsubscribe?token=…`: the link in every reminder mail. GET shows a page with one
  button (link scanners and mail previews fetch links, so a GET changes nothing); POST stops the
  mail, from that button or from a mail client's one-click unsubscribe (RFC 8058).
- `/api/spaces/{id}/calendar.ics`, one Space (a private one with its `?code=`), and
  `/api/hosts/{user_id}/calendar.ics`, a host's public Spaces for a calendar to subscribe to.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from townhall.api.auth import RequiredIdentity
from townhall.api.params import InviteCodeQ, SpaceIdP, TargetP
from townhall.api.tokens import IdentityKind, TokenError, UnsubscribeTokens
from townhall.reminders.calendar import calendar_of
from townhall.spaces.control import Actor, SpaceControl
from townhall.spaces.model import SpaceId, SpaceState, UserId, Visibility
from townhall.web.pages import SECURITY_HEADERS

EMAIL_MAX = 254  # RFC 5321's limit on a path
# One @, something on each side, a dot in the domain, nothing a mail header could be split on.
_EMAIL = re.compile(r"[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+\.[^@\s<>,;:\"()\[\]\\.]+")
ICS_TYPE = "text/calendar; charset=utf-8"
# A host's feed: what is coming and what just happened, for a calendar that polls it.
FEED_STATES = (
    SpaceState.SCHEDULED,
    SpaceState.GREEN_ROOM,
    SpaceState.LIVE,
    SpaceState.ENDED,
    SpaceState.CANCELLED,
)
FEED_MAX = 50


class RemindIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str | None = Field(default=None, max_length=EMAIL_MAX)
    push: bool = False  # by Web Push to the browsers subscribed (api/push_routes.py)
    soon: bool = False  # also 10 minutes before the start

    @field_validator("email")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if _EMAIL.fullmatch(value) is None:
            raise ValueError("does not look like an email address (name@example.org)")
        return value


def _page(title: str, body: str, status: int = 200) -> Response:
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)} · townhall</title><link rel="stylesheet" href="/static/townhall.css">'
        f'</head><body><main class="narrow"><h1>{escape(title)}</h1>{body}</main></body></html>'
    )
    return Response(
        html,
        status,
        media_type="text/html",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-store"},
    )


# The unsubscribe link answers people, not programs: pages, for a good link and a bad one alike.
PAGE_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "A page for people", "content": {"text/html": {}}},
    400: {"description": "A page saying the link does not work", "content": {"text/html": {}}},
}


def build_reminder_router(
    control: Callable[[], SpaceControl], unsubscribes: UnsubscribeTokens
) -> APIRouter:
    router = APIRouter(tags=["reminders"])

    def base(request: Request) -> str:
        public: str = request.app.state.config.public_url
        return public.rstrip("/") or str(request.base_url).rstrip("/")

    @router.post(
        "/api/spaces/{space_id}/remind",
        status_code=204,
        summary="Remind me when this Space goes on air (by email: signed-in people only)",
        description=(
            "With `email`, a mail when it goes on air, when its start time changes and if it is "
            "cancelled; with `push`, the same by Web Push to every browser the person subscribed "
            "(`POST /api/push/subscriptions`); with `soon` also 10 minutes before. Email for "
            "guests: 403 "
            "`guests_cannot_get_email`; a server with no SMTP server: 422 `no_email`; "
            "limited per person and per address mailed (429)."
        ),
    )
    async def remind(
        space_id: SpaceIdP,
        who: RequiredIdentity,
        body: RemindIn | None = None,
        code: InviteCodeQ = None,
    ) -> Response:
        wanted = body or RemindIn()
        actor = Actor(
            UserId(who.user_id), who.display_name, is_guest=who.kind is IdentityKind.GUEST
        )
        await control().remind(
            actor,
            space_id,
            email=wanted.email,
            soon=wanted.soon,
            push=wanted.push,
            invite_code=code,
        )
        return Response(status_code=204)

    @router.get(
        "/api/reminders/channels",
        summary="How this server can remind people: by email, by push, on the page",
    )
    async def channels(response: Response) -> dict[str, bool]:
        response.headers["Cache-Control"] = "public, max-age=300"
        return {"email": control().config.sends_mail, "push": True, "page": True}

    @router.delete("/api/spaces/{space_id}/remind", status_code=204, summary="Cancel my reminder")
    async def unremind(
        space_id: SpaceIdP, who: RequiredIdentity, code: InviteCodeQ = None
    ) -> Response:
        user = UserId(who.user_id)
        space = (await control().admit(user, space_id, code)).space  # private: 404 without it
        await control().records.remove_reminder(space.id, user)
        return Response(status_code=204)

    async def verified(token: str) -> tuple[SpaceId, UserId, str] | Response:
        try:
            found = unsubscribes.verify(token)
        except TokenError:
            return _page(
                "This link does not work",
                "<p>It may be incomplete or very old. Reply to the mail to reach the sender.</p>",
                400,
            )
        space = await control().records.space(SpaceId(found.space_id))
        title = space.title if space is not None else "a Space"
        return SpaceId(found.space_id), UserId(found.user_id), title

    @router.get(
        "/api/reminders/unsubscribe",
        summary="The page of a reminder mail's unsubscribe link (changes nothing)",
        response_class=Response,
        responses=PAGE_ANSWERS,
    )
    async def unsubscribe_page(token: Annotated[str, Query(max_length=2_000)]) -> Response:
        found = await verified(token)
        if isinstance(found, Response):
            return found
        _, _, title = found
        form = (
            f"<p>Stop the reminder mail about “{escape(title)}”?</p>"
            f'<form method="post" action="/api/reminders/unsubscribe?token={escape(token)}">'
            '<button class="primary" type="submit">Stop these mails</button></form>'
        )
        return _page("Reminder mail", form)

    @router.post(
        "/api/reminders/unsubscribe",
        summary="Stop one person's reminder mail about one Space (one click, RFC 8058)",
        response_class=Response,
        responses=PAGE_ANSWERS,
    )
    async def unsubscribe(token: Annotated[str, Query(max_length=2_000)]) -> Response:
        found = await verified(token)
        if isinstance(found, Response):
            return found
        space_id, user_id, title = found
        await control().records.unsubscribe(space_id, user_id)
        return _page(
            "Unsubscribed",
            f"<p>You will get no more mail about “{escape(title)}”.</p>",
        )

    def ics(body: bytes, filename: str) -> Response:
        return Response(
            body,
            media_type=ICS_TYPE,
            headers={
                "Content-Disposition": f'attachment; filename="{filename}"',
                "Cache-Control": "public, max-age=60",
            },
        )

    @router.get(
        "/api/spaces/{space_id}/calendar.ics",
        summary="This Space as a calendar event (private ones need ?code=)",
        response_class=Response,
    )
    async def space_calendar(
        space_id: SpaceIdP,
        request: Request,
        code: Annotated[str | None, Query(max_length=64)] = None,
    ) -> Response:
        space = (await control().can_listen(None, space_id, code)).space
        shown = code if space.visibility is Visibility.PRIVATE else None  # checked: it is current
        body = calendar_of([space], base(request), time.time(), name=space.title, code=shown)
        return ics(body, f"townhall-{space.id}.ics")

    @router.get(
        "/api/hosts/{user_id}/calendar.ics",
        summary="A host's public Spaces, a calendar feed to subscribe to",
        response_class=Response,
    )
    async def host_calendar(host: TargetP, request: Request) -> Response:
        spaces = await control().records.hosted_spaces(
            host, FEED_STATES, visibility=Visibility.PUBLIC, limit=FEED_MAX
        )
        account = await control().records.account(host)
        name = f"{account.display_name} on townhall" if account else "Spaces on townhall"
        return ics(
            calendar_of(spaces, base(request), time.time(), name=name), f"townhall-{host}.ics"
        )

    return router
