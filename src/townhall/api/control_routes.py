"""The control API: Spaces, the stage and the audience, as thin HTTP adapters over SpaceControl.

Every handler validates its input (pydantic, strict), resolves the caller's identity, awaits one
`SpaceControl` command; a refusal (`ControlError`) or a records error that escaped it is mapped
to the one JSON error shape by the API's error seam (api/errors.py), not here. No rule is
decided here: who may do what lives in spaces/rules.py, what a Space's state allows in
spaces/lifecycle.py.
"""

import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from townhall.api.auth import OptionalIdentity, RequiredIdentity, client_address
from townhall.api.errors import (
    ApiError,
    Forbidden,
)
from townhall.api.params import InviteCodeQ, SpaceIdP, TargetP, actor, checked_user_id
from townhall.api.params import public_base as base
from townhall.api.tokens import Identity
from townhall.delivery.capability import MediaKeys
from townhall.ratelimit.storage import NO_STORAGE_QUOTA, StorageQuota
from townhall.ratelimit.table import SPACE_PER_ADDRESS, take
from townhall.spaces.control import (
    Actor,
    ControlError,
    NewSpace,
    SpaceControl,
    member_json,
    space_json,
)
from townhall.spaces.model import (
    DESCRIPTION_MAX,
    TITLE_MAX,
    Role,
    Space,
    SpaceState,
    StageLimits,
    StageMember,
    UserId,
    Visibility,
)
from townhall.state.recording_accounts import RecordingDeposit


def _printable(value: str | None) -> str | None:
    """No control characters in what people read. None (an edit's "leave it as it is") passes:
    `{"title": null}` once reached this check and answered 500."""
    if value is not None and any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
        raise ValueError("must not contain control characters")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CreateSpaceIn(Strict):
    title: str = Field(min_length=1, max_length=TITLE_MAX)
    description: str = Field(default="", max_length=DESCRIPTION_MAX)
    visibility: Visibility = Visibility.PUBLIC
    scheduled_start: float | None = Field(
        default=None, description="UNIX seconds; omit to open now"
    )
    record: bool = False
    captions: bool = Field(
        default=False,
        description="live captions for listeners (409 `captions_unavailable` where the server has them off)",
    )
    max_speakers: int = Field(default=10, ge=1, le=50)
    max_cohosts: int = Field(default=2, ge=0, le=5)

    _clean = field_validator("title", "description")(_printable)


class EditSpaceIn(Strict):
    """Only what is given changes; a field left out or null stays as it is. The start time and
    visibility change only before the Space opens."""

    title: str | None = Field(default=None, min_length=1, max_length=TITLE_MAX)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)
    scheduled_start: float | None = Field(default=None, description="UNIX seconds")
    visibility: Visibility | None = None

    _clean = field_validator("title", "description")(_printable)


class DelayIn(Strict):
    seconds: float = Field(ge=0, le=30)


class PinIn(Strict):
    url: AnyHttpUrl | None = None


class TargetIn(Strict):
    user_id: str = Field(min_length=3, max_length=20)


class ReactionIn(Strict):
    emoji: str = Field(min_length=1, max_length=8)


class SpaceView(BaseModel):
    space: dict[str, Any]
    stage: list[dict[str, Any]]
    links: dict[str, str]


# A hand's answers are three fixed bodies, built once: the audience's clicks at audience scale are
# not serialized through the route's response model one by one (docs/architecture.md).
_RAISED = json.dumps({"raised": True, "already": False}, separators=(",", ":")).encode()
_ALREADY_RAISED = json.dumps({"raised": True, "already": True}, separators=(",", ":")).encode()
_LOWERED = json.dumps({"raised": False}, separators=(",", ":")).encode()


def _json_answer(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def build_control_router(
    control: Callable[[], SpaceControl],
    keys: MediaKeys,
    *,
    storage: StorageQuota = NO_STORAGE_QUOTA,
    recording_reserve: int = 0,
) -> APIRouter:
    """The Spaces, the stage and the audience; invite links are api/invite_routes.py's. A
    recorded Space's first `recording_reserve` bytes are paid from `storage` at creation."""
    router = APIRouter(prefix="/api/spaces", tags=["spaces"])
    anonymous_views: dict[tuple[str, str | None, str], tuple[int, bytes]] = {}

    async def view(space: Space, request: Request, *, show_invite: bool = False) -> SpaceView:
        """A Space as its callers see it: each one may hear it, so for a private Space the
        playlist link is its capability URL (delivery.capability). `show_invite`: the caller is
        its host or a co-host (the listener link carries the invite code). Every command only a
        moderator may give answers with it: the stage page takes the links of each answer, and a
        Share card that lost the code after "Go live" handed out a link that opens nothing."""
        links = {
            "listen": f"{base(request)}/s/{space.id}",
            "playlist": f"{base(request)}{keys.media_path(space)}/index.m3u8",
        }
        if show_invite and space.visibility is Visibility.PRIVATE:
            links["listen"] += f"?code={space.invite_code}"
        stage = [member_json(m) for m in await control().stage(space.id)]
        return SpaceView(space=space_json(space), stage=stage, links=links)

    async def moderator_role(space_id: str, who: Identity, refusal: str) -> tuple[Space, Role]:
        """The Space and the caller's role in it, if they are its host or a co-host (else 403;
        404 for a private Space they are not on the stage of)."""
        standing = await control().admit(UserId(who.user_id), space_id, None)
        if standing.role not in (Role.HOST, Role.COHOST):
            raise Forbidden(refusal, code="not_moderator")
        return standing.space, standing.role

    # -- Spaces -----------------------------------------------------------------------------------
    @router.post(
        "",
        status_code=201,
        response_model=SpaceView,
        summary="Create a Space now (green room) or schedule one",
        description=(
            "Limited per person and per address (429), to a number of open Spaces per host "
            "(409 `too_many_open_spaces`), to signed-in people where guests may not create "
            "(403 `guests_cannot_create`); a recorded Space's first hour is paid from the host's "
            "and their address's storage budgets (429 `quota_exceeded`); a Space that opens now "
            "needs a media node with room (503 `capacity`, and nothing is created)."
        ),
    )
    async def create(body: CreateSpaceIn, request: Request, who: RequiredIdentity) -> SpaceView:
        spec = NewSpace(
            title=body.title,
            description=body.description,
            visibility=body.visibility,
            scheduled_start=body.scheduled_start,
            record=body.record,
            captions=body.captions,
            limits=StageLimits(max_cohosts=body.max_cohosts, max_speakers=body.max_speakers),
        )
        host = actor(who)
        address = client_address(request)
        live = control().live
        # Every refusal before anything is written: a refused creation leaves no Space behind.
        await take(live, SPACE_PER_ADDRESS, address, time.time())
        await control().admit_new_space(host)
        if spec.scheduled_start is None:  # opens now: it needs a media node's slot
            await request.app.state.ensure_room()
        reserve = recording_reserve if spec.record else 0
        if reserve:  # the last refusal: nothing to give back if an earlier one answered
            await storage.charge(
                live, identity=who.user_id, address=address, size=reserve, now=time.time()
            )
        try:
            # The address is kept with the recording: the media node charges it too as it grows.
            deposit = RecordingDeposit(address, reserve) if spec.record else None
            space = await control().create(host, spec, deposit=deposit)
        except Exception:
            if reserve:
                await storage.refund(
                    live, identity=who.user_id, address=address, size=reserve, now=time.time()
                )
            raise
        try:
            await request.app.state.on_space_changed(space)
        except ApiError:
            # The last slot went to another creation between the check and now: call this one
            # off in the same request, so that no green room nobody runs stays listed. (Already
            # over, or gone meanwhile: nothing to call off; the capacity answer stands.)
            with contextlib.suppress(ControlError):
                await control().end(host, space.id)
            if reserve:  # called off before it recorded anything
                await storage.refund(
                    live, identity=who.user_id, address=address, size=reserve, now=time.time()
                )
            raise
        return await view(space, request, show_invite=True)

    @router.get("", response_model=list[SpaceView], summary="Public Spaces: live now, or upcoming")
    async def browse(
        request: Request,
        which: Annotated[Literal["live", "upcoming"], Query(alias="state")] = "live",
    ) -> list[SpaceView]:
        states = (
            [SpaceState.LIVE, SpaceState.GREEN_ROOM] if which == "live" else [SpaceState.SCHEDULED]
        )
        spaces = await control().records.list_spaces(states, visibility=Visibility.PUBLIC, limit=50)
        return [await view(s, request) for s in spaces]

    @router.get(
        "/{space_id}", response_model=SpaceView, summary="One Space (private ones need ?code=)"
    )
    async def get(
        space_id: SpaceIdP,
        request: Request,
        who: OptionalIdentity,
        code: InviteCodeQ = None,
    ) -> Any:
        if who is not None:
            standing = await control().can_listen(actor(who), space_id, code)
            moderator = standing.role in (Role.HOST, Role.COHOST)
            if standing.role.on_stage or standing.space.visibility is Visibility.PRIVATE:
                # Not the shared answer: a moderator sees the invite, a private Space's view
                # must not be cached where a stranger's request would find it, and someone on
                # the stage must find themselves on it the moment they are seated (the shared
                # answer may be from earlier this second). A stage is a few dozen people.
                return await view(standing.space, request, show_invite=moderator)
        # What every listener's page asks when it opens: the same answer for all of them,
        # built at most once a second per Space (a join storm is mostly this call).
        key = (space_id, code, base(request))
        second = int(time.time())
        cached = anonymous_views.get(key)
        if cached is None or cached[0] != second:
            space = (await control().can_listen(None, space_id, code)).space
            body = (await view(space, request)).model_dump_json().encode()
            cached = anonymous_views[key] = (second, body)
            if len(anonymous_views) > 10_000:
                anonymous_views.pop(next(iter(anonymous_views)))
        return Response(
            cached[1],
            media_type="application/json",
            headers={"Cache-Control": "private, max-age=1" if who else "public, max-age=1"},
        )

    @router.patch(
        "/{space_id}",
        response_model=SpaceView,
        summary="Edit the title and description; before it opens, the start time and visibility",
        description=(
            "Host and co-hosts. A new start time is checked like a new Space's (422 "
            "`start_in_past`, `start_too_far_ahead`) and mails everyone reminded of the Space "
            "by email; start time or visibility on a Space that has opened: 409 `not_scheduled`."
        ),
    )
    async def edit(
        space_id: SpaceIdP, body: EditSpaceIn, request: Request, who: RequiredIdentity
    ) -> SpaceView:
        space = await control().edit(
            actor(who),
            space_id,
            title=body.title,
            description=body.description,
            scheduled_start=body.scheduled_start,
            visibility=body.visibility,
        )
        return await view(space, request, show_invite=True)

    async def lifecycle(
        command: Callable[[SpaceControl, Actor, str], Awaitable[Space]],
        space_id: str,
        request: Request,
        who: Identity,
    ) -> SpaceView:
        space = await command(control(), actor(who), space_id)
        await request.app.state.on_space_changed(space)
        return await view(space, request, show_invite=True)

    @router.post(
        "/{space_id}/open",
        response_model=SpaceView,
        summary="Open a scheduled Space's green room (host)",
    )
    async def open_(space_id: SpaceIdP, request: Request, who: RequiredIdentity) -> SpaceView:
        # Opening takes a media slot: with none anywhere, 503 and the Space stays scheduled.
        await request.app.state.ensure_room()
        return await lifecycle(SpaceControl.open, space_id, request, who)

    @router.post("/{space_id}/go-live", response_model=SpaceView, summary="Go on air (host)")
    async def go_live(space_id: SpaceIdP, request: Request, who: RequiredIdentity) -> SpaceView:
        return await lifecycle(SpaceControl.go_live, space_id, request, who)

    @router.post(
        "/{space_id}/end",
        response_model=SpaceView,
        summary="End the Space, or cancel it before it went live (host)",
    )
    async def end(space_id: SpaceIdP, request: Request, who: RequiredIdentity) -> SpaceView:
        return await lifecycle(SpaceControl.end, space_id, request, who)

    @router.put(
        "/{space_id}/delay",
        response_model=SpaceView,
        summary="Broadcast delay 0–30 s (host, co-hosts)",
    )
    async def delay(
        space_id: SpaceIdP, body: DelayIn, request: Request, who: RequiredIdentity
    ) -> SpaceView:
        space = await control().set_delay(actor(who), space_id, body.seconds)
        return await view(space, request, show_invite=True)

    @router.post(
        "/{space_id}/dump",
        status_code=204,
        summary="Dump what is in the delay buffer (host, co-hosts)",
    )
    async def dump(space_id: SpaceIdP, who: RequiredIdentity) -> Response:
        await control().dump(actor(who), space_id)
        return Response(status_code=204)

    @router.put(
        "/{space_id}/pin",
        response_model=SpaceView,
        summary="Pin a link, or unpin with null (host, co-hosts)",
    )
    async def pin(
        space_id: SpaceIdP, body: PinIn, request: Request, who: RequiredIdentity
    ) -> SpaceView:
        url = str(body.url) if body.url is not None else None
        space = await control().pin_link(actor(who), space_id, url)
        return await view(space, request, show_invite=True)

    # -- the stage --------------------------------------------------------------------------------
    @router.get("/{space_id}/stage", summary="Who is on stage (private Spaces: ?code=)")
    async def stage(
        space_id: SpaceIdP, who: OptionalIdentity, code: InviteCodeQ = None
    ) -> list[dict[str, Any]]:
        standing = await control().admit(UserId(who.user_id) if who else None, space_id, code)
        return [member_json(m) for m in await control().stage(standing.space.id)]

    @router.post(
        "/{space_id}/rotate-invite",
        response_model=SpaceView,
        summary="Give a private Space a new invite link; old links stop working (host)",
        description=(
            "The old invite code, and every media URL made from it, stop working within a "
            "second at every node; HTTP caches in front keep what they already hold for its "
            "max-age (docs/architecture.md). 409 `not_private` for a public or unlisted Space."
        ),
    )
    async def rotate_invite(
        space_id: SpaceIdP, request: Request, who: RequiredIdentity
    ) -> SpaceView:
        space = await control().rotate_invite(actor(who), space_id)
        return await view(space, request, show_invite=True)

    @router.post("/{space_id}/stage/leave", status_code=204, summary="Leave the stage")
    async def leave(space_id: SpaceIdP, who: RequiredIdentity) -> Response:
        await control().leave_stage(actor(who), space_id)
        return Response(status_code=204)

    @router.post(
        "/{space_id}/invitations",
        status_code=204,
        summary="Invite a listener to speak (host, co-hosts)",
    )
    async def invite_user(space_id: SpaceIdP, body: TargetIn, who: RequiredIdentity) -> Response:
        await control().invite_to_speak(actor(who), space_id, checked_user_id(body.user_id))
        return Response(status_code=204)

    @router.post("/{space_id}/invitations/accept", summary="Accept my invitation to speak")
    async def accept_invitation(space_id: SpaceIdP, who: RequiredIdentity) -> dict[str, Any]:
        return member_json(await control().accept_invitation(actor(who), space_id))

    @router.post(
        "/{space_id}/hands/{user_id}/accept",
        summary="Bring a raised hand on stage (host, co-hosts)",
    )
    async def accept(space_id: SpaceIdP, user: TargetP, who: RequiredIdentity) -> dict[str, Any]:
        return member_json(await control().accept_request(actor(who), space_id, user))

    @router.delete(
        "/{space_id}/hands/{user_id}",
        status_code=204,
        summary="Decline a request to speak (host, co-hosts)",
    )
    async def decline(space_id: SpaceIdP, user: TargetP, who: RequiredIdentity) -> Response:
        await control().decline_request(actor(who), space_id, user)
        return Response(status_code=204)

    def member_command(
        command: Callable[[SpaceControl, Actor, str, UserId], Awaitable[StageMember | None]],
        summary: str,
        *,
        returns_member: bool,
    ) -> None:
        name = command.__name__

        async def handler(space_id: SpaceIdP, user: TargetP, who: RequiredIdentity) -> Any:
            result = await command(control(), actor(who), space_id, user)
            if returns_member:
                assert result is not None
                return member_json(result)
            return Response(status_code=204)

        path = "/{space_id}/members/{user_id}/" + name.replace("_", "-")
        router.add_api_route(
            path,
            handler,
            methods=["POST"],
            response_model=None,
            summary=summary,
            name=name,
            status_code=200 if returns_member else 204,
        )

    member_command(
        SpaceControl.mute, "Mute someone on stage (host, co-hosts) or yourself", returns_member=True
    )
    member_command(
        SpaceControl.unmute, "Unmute yourself (only the speaker can)", returns_member=True
    )
    member_command(
        SpaceControl.move_to_audience,
        "Move a speaker back to the audience (host, co-hosts)",
        returns_member=False,
    )
    member_command(
        SpaceControl.remove, "Remove someone from the Space (host, co-hosts)", returns_member=False
    )
    member_command(
        SpaceControl.ban, "Ban someone from the Space (host, co-hosts)", returns_member=False
    )
    member_command(SpaceControl.add_cohost, "Make someone a co-host (host)", returns_member=True)
    member_command(
        SpaceControl.remove_cohost, "Make a co-host a speaker again (host)", returns_member=True
    )

    @router.post(
        "/{space_id}/host", response_model=SpaceView, summary="Hand the host role over (host)"
    )
    async def transfer(
        space_id: SpaceIdP, body: TargetIn, request: Request, who: RequiredIdentity
    ) -> SpaceView:
        space = await control().transfer_host(actor(who), space_id, checked_user_id(body.user_id))
        return await view(space, request, show_invite=True)  # it was theirs a moment ago

    # -- the audience -----------------------------------------------------------------------------
    @router.post(
        "/{space_id}/hand", response_model=dict[str, bool], summary="Raise my hand (ask to speak)"
    )
    async def raise_hand(
        space_id: SpaceIdP, who: RequiredIdentity, code: InviteCodeQ = None
    ) -> Response:
        raised = await control().raise_hand(actor(who), space_id, code)
        return _json_answer(_RAISED if raised else _ALREADY_RAISED)

    @router.delete("/{space_id}/hand", response_model=dict[str, bool], summary="Lower my hand")
    async def lower_hand(
        space_id: SpaceIdP, who: RequiredIdentity, code: InviteCodeQ = None
    ) -> Response:
        await control().lower_hand(actor(who), space_id, code)
        return _json_answer(_LOWERED)

    @router.get("/{space_id}/hands", summary="The queue of raised hands (host, co-hosts)")
    async def hands(space_id: SpaceIdP, who: RequiredIdentity) -> list[dict[str, Any]]:
        space, _ = await moderator_role(space_id, who, "only the host or a co-host sees the queue")
        return [
            {"user_id": h.user_id, "display_name": h.display_name, "raised_at": h.raised_at}
            for h in await control().hands(space.id)
        ]

    @router.post(
        "/{space_id}/reactions",
        status_code=202,
        summary="React with an emoji (rate-limited per person)",
    )
    async def react(
        space_id: SpaceIdP, body: ReactionIn, who: RequiredIdentity, code: InviteCodeQ = None
    ) -> Response:
        await control().react(actor(who), space_id, body.emoji, code)
        return Response(status_code=202)

    @router.get("/{space_id}/me", summary="My own state in this Space (private, not cached)")
    async def me(
        space_id: SpaceIdP, response: Response, who: RequiredIdentity, code: InviteCodeQ = None
    ) -> dict[str, Any]:
        response.headers["Cache-Control"] = "private, no-store"
        user = UserId(who.user_id)
        standing = await control().admit(user, space_id, code)  # banned: still told so
        member = standing.member
        return {
            "user_id": user,
            "role": standing.role.value,
            "hand_raised": standing.hand_raised,
            "muted": bool(member and (member.muted_by_host or member.self_muted)),
            "muted_by_host": bool(member and member.muted_by_host),
            "banned": standing.banned,
        }

    return router
