"""Stage invite links over HTTP: make one (use limit, expiry), list them, revoke one, redeem one.

Thin adapters over SpaceControl like api/control_routes.py: the token in a link is verified here
(a forged or mangled one costs no database read), and everything else — who may, whether the
link still seats this person, counting the use — is the command's (spaces/invite_links.py has
the rule). Refusals reach the one error seam (api/errors.py) as ControlError, with the sentence a
person reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from townhall.api.auth import RequiredIdentity
from townhall.api.errors import Forbidden
from townhall.api.params import LinkIdP, SpaceIdP, actor, public_base
from townhall.api.tokens import InviteTokens, TokenError
from townhall.spaces import invite_links
from townhall.spaces.control import SpaceControl, member_json
from townhall.spaces.invite_links import (
    REFUSAL_SENTENCES,
    InviteLink,
    InviteLinkId,
    LinkState,
    Refusal,
)
from townhall.spaces.model import Role

# A token refused before its record is read, said as the record's refusals are (same codes as
# every other token refusal, so clients that know them keep working).
TOKEN_SENTENCES = {
    "token_expired": REFUSAL_SENTENCES[Refusal.EXPIRED],
    "token_invalid": REFUSAL_SENTENCES[Refusal.UNKNOWN],
    "token_wrong_space": "This invite link is for another Space. "
    "Open the link exactly as it was sent to you.",
}


class InviteLinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["speaker", "cohost"] = "speaker"
    max_uses: int = Field(
        default=invite_links.USES_DEFAULT,
        ge=1,
        le=invite_links.USES_MAX,
        description="How many people the link may seat",
    )
    expires_in_s: int = Field(
        default=invite_links.TTL_DEFAULT_S,
        ge=invite_links.TTL_MIN_S,
        le=invite_links.TTL_MAX_S,
        description="Seconds until the link stops working",
    )


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    invite: str = Field(min_length=10, max_length=2_000)


class LinkUseOut(BaseModel):
    user_id: str
    display_name: str
    at: float


class InviteLinkOut(BaseModel):
    id: str
    role: str
    state: LinkState
    max_uses: int
    uses: int
    remaining: int
    created_by: str
    created_by_name: str
    created_at: float
    expires_at: float
    revoked: bool
    revoked_at: float | None
    used_by: list[LinkUseOut]


class NewInviteLinkOut(BaseModel):
    invite: str  # the token
    url: str  # the stage page with the token in its fragment
    expires_in: int
    link: InviteLinkOut


def link_out(link: InviteLink, state: LinkState) -> InviteLinkOut:
    return InviteLinkOut(
        id=link.id,
        role=link.role.value,
        state=state,
        max_uses=link.max_uses,
        uses=link.uses,
        remaining=link.remaining,
        created_by=link.created_by,
        created_by_name=link.created_by_name,
        created_at=link.created_at,
        expires_at=link.expires_at,
        revoked=link.revoked_at is not None,
        revoked_at=link.revoked_at,
        used_by=[
            LinkUseOut(user_id=u.user_id, display_name=u.display_name, at=u.at)
            for u in link.used_by
        ],
    )


def build_invite_router(control: Callable[[], SpaceControl], invites: InviteTokens) -> APIRouter:
    router = APIRouter(prefix="/api/spaces", tags=["invite links"])

    @router.post(
        "/{space_id}/invite-links",
        status_code=201,
        response_model=NewInviteLinkOut,
        summary="A link that seats up to max_uses people until it expires (host, co-hosts)",
        description=(
            "Co-host links only by the host (403 `not_host`). At most "
            f"{invite_links.OPEN_MAX} links that still work per Space "
            "(409 `too_many_invite_links`)."
        ),
    )
    async def create(
        space_id: SpaceIdP, body: InviteLinkIn, request: Request, who: RequiredIdentity
    ) -> NewInviteLinkOut:
        link = await control().create_invite_link(
            actor(who),
            space_id,
            Role(body.role),
            max_uses=body.max_uses,
            ttl_s=body.expires_in_s,
        )
        token = invites.mint(link.space_id, link.role.value, body.expires_in_s, link_id=link.id)
        return NewInviteLinkOut(
            invite=token,
            url=f"{public_base(request)}/s/{link.space_id}/stage#invite={token}",
            expires_in=body.expires_in_s,
            link=link_out(link, LinkState.OPEN),
        )

    @router.get(
        "/{space_id}/invite-links",
        response_model=list[InviteLinkOut],
        summary="The Space's invite links, newest first, with their uses (host, co-hosts)",
    )
    async def listed(space_id: SpaceIdP, who: RequiredIdentity) -> list[InviteLinkOut]:
        return [link_out(*found) for found in await control().invite_links(actor(who), space_id)]

    @router.delete(
        "/{space_id}/invite-links/{link_id}",
        response_model=InviteLinkOut,
        summary="Revoke an invite link: it seats nobody from now on (host; co-hosts: speaker links)",
    )
    async def revoke(space_id: SpaceIdP, link_id: LinkIdP, who: RequiredIdentity) -> InviteLinkOut:
        link = await control().revoke_invite_link(actor(who), space_id, link_id)
        return link_out(link, LinkState.REVOKED)

    @router.post("/{space_id}/stage/join", summary="Take a seat on stage with an invite link")
    async def claim(space_id: SpaceIdP, body: ClaimIn, who: RequiredIdentity) -> dict[str, Any]:
        try:
            seat = invites.verify(body.invite, space_id)
        except TokenError as exc:
            raise Forbidden(TOKEN_SENTENCES.get(exc.code, exc.message), code=exc.code) from None
        member = await control().join_with_invite_link(
            actor(who), space_id, InviteLinkId(seat.invite_id)
        )
        return member_json(member)

    return router
