"""Path and query parameters shared by the routers, checked before any handler runs.

Async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per
request for what is one regular-expression match.
"""

import re
from typing import Annotated

from fastapi import Depends, Path, Query, Request

from townhall.api.errors import NotFound
from townhall.api.tokens import Identity, IdentityKind
from townhall.spaces.control import Actor
from townhall.spaces.invite_links import LINK_ID_PATTERN, InviteLinkId
from townhall.spaces.model import UserId, is_space_id, is_user_id


async def _space_id(space_id: Annotated[str, Path()]) -> str:
    if not is_space_id(space_id):
        raise NotFound("no such Space", code="space_not_found")
    return space_id


def checked_user_id(raw: str) -> UserId:
    """A user id from the path or a body; 404 for what cannot be one."""
    if not is_user_id(raw):
        raise NotFound("no such person", code="user_not_found")
    return UserId(raw)


async def _user_id(user_id: Annotated[str, Path()]) -> UserId:
    return checked_user_id(user_id)


_LINK_ID_RE = re.compile(LINK_ID_PATTERN)


async def _link_id(link_id: Annotated[str, Path()]) -> InviteLinkId:
    if not _LINK_ID_RE.fullmatch(link_id):
        raise NotFound("no such invite link", code="invite_link_not_found")
    return InviteLinkId(link_id)


SpaceIdP = Annotated[str, Depends(_space_id)]
TargetP = Annotated[UserId, Depends(_user_id)]
LinkIdP = Annotated[InviteLinkId, Depends(_link_id)]


def actor(who: Identity) -> Actor:
    """The person a verified identity is, as the commands take them."""
    return Actor(UserId(who.user_id), who.display_name, is_guest=who.kind is IdentityKind.GUEST)


def public_base(request: Request) -> str:
    """Where links point: the configured public URL, else the address the request came to."""
    public: str = request.app.state.config.public_url
    return public.rstrip("/") or str(request.base_url).rstrip("/")


# A private Space's invite code, as its invite link carries it (`?code=`): the proof a listener
# shows for everything the Space serves (spaces/control.py: `admit`).
InviteCodeQ = Annotated[str | None, Query(alias="code", max_length=64)]
