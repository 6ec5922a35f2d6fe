"""The stage's audio connection: WebRTC signalling for people on a Space's stage, ICE servers,
and the health check.

Connecting is JOIN_STAGE in the rules: the caller's identity must be on the Space's stage roster
and not banned. The offer goes to the node running the Space's media: this process, or the owner
the request is relayed to (see `node.forward`), which checks the rules again itself.
"""

import time
from collections.abc import Callable
from typing import Annotated, Literal, Protocol

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from townhall.api.auth import RequiredIdentity, client_address
from townhall.api.bounds import SDP_BODY_MAX
from townhall.api.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    Unavailable,
)
from townhall.api.fastpath import HealthBody
from townhall.config import Config
from townhall.media.audio import SpeakerId
from townhall.media.ingest import SdpError
from townhall.node.forward import Forwarder
from townhall.node.host import MediaHost, NodeFull
from townhall.node.keeper import OPEN_STATES, NodeKeeper
from townhall.ratelimit.table import RTC_PER_ADDRESS, RTC_PER_PERSON, take
from townhall.spaces import rules
from townhall.spaces.model import SpaceState, UserId, is_space_id


class Offer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["offer"]
    sdp: str = Field(min_length=10, max_length=32_768)


class Answer(BaseModel):
    type: Literal["answer"] = "answer"
    sdp: str


class IceServerOut(BaseModel):
    urls: str
    username: str | None = None
    credential: str | None = None


class StageNode(Protocol):
    """What the stage's routes need of the running node (app.Node)."""

    host: MediaHost
    keeper: NodeKeeper
    forwarder: Forwarder


def no_room(exc: NodeFull) -> Unavailable:
    """No media node can run one more open Space: 503 + Retry-After (green rooms end, nodes join)."""
    return Unavailable(str(exc), code="capacity", headers={"Retry-After": "30"})


def build_media_router(
    config: Config, current: Callable[[], StageNode], clock: Callable[[], float] = time.time
) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["stage audio"])

    @router.post(
        "/spaces/{space_id}/rtc",
        response_model=Answer,
        summary="Connect your microphone to the stage (WebRTC offer → answer)",
        max_body_size=SDP_BODY_MAX,
    )
    async def connect(
        space_id: Annotated[str, Path()], body: Offer, request: Request, who: RequiredIdentity
    ) -> Answer | Response:
        if not is_space_id(space_id):
            raise NotFound("no such Space", code="space_not_found")
        stage = current()
        node = stage.host
        if not stage.forwarder.relayed(request):  # a relaying node has charged them already
            now = clock()
            await take(node.control.live, RTC_PER_ADDRESS, client_address(request), now)
            await take(node.control.live, RTC_PER_PERSON, f"{space_id}:{who.user_id}", now)
        user = UserId(who.user_id)
        # None, or a private one they are not on the stage of: 404 through the seam.
        standing = await node.control.admit(user, space_id, None)
        space, banned = standing.space, standing.banned
        if space.state.is_over:
            raise Gone("this Space has ended", code=f"space_{space.state.value}")
        decision = rules.decide(standing.role, rules.Action.JOIN_STAGE, actor_banned=banned)
        if not decision.allowed:
            raise Forbidden(
                "you are not on this Space's stage"
                if not banned
                else "you are banned from this Space",
                code=decision.reason,
            )
        if space.state is SpaceState.SCHEDULED:
            raise Conflict(
                "the Space has not opened yet: the host opens the green room first", code="not_open"
            )
        try:
            await stage.keeper.place_now(space)
        except NodeFull as exc:
            raise no_room(exc) from None

        async def still_open() -> bool:
            return space.state in OPEN_STATES

        relayed = await stage.forwarder.relay(
            request, space.id, lambda: node.runtime(space.id) is not None, still_open
        )
        if relayed is not None:
            return relayed
        runtime = node.runtime(space.id)
        if runtime is None:
            raise Unavailable(
                "the Space's audio is starting; try again", headers={"Retry-After": "1"}
            )
        try:
            sdp = await runtime.ingest.connect(SpeakerId(user), body.sdp)
        except SdpError as exc:
            raise BadRequest(str(exc), code="bad_sdp") from None
        runtime.director.speaker_connected(SpeakerId(user))
        return Answer(sdp=sdp)

    @router.delete("/spaces/{space_id}/rtc", status_code=204, summary="Hang up your stage audio")
    async def disconnect(
        space_id: Annotated[str, Path()], request: Request, who: RequiredIdentity
    ) -> Response:
        if not is_space_id(space_id):
            return Response(status_code=204)
        stage = current()

        async def open_elsewhere() -> bool:
            return True  # only the owner can hang up: wait for it during a take-over

        relayed = await stage.forwarder.relay(
            request, space_id, lambda: stage.host.runtime(space_id) is not None, open_elsewhere
        )
        if relayed is not None:
            return relayed
        runtime = stage.host.runtime(space_id)
        if runtime is not None:
            connection = runtime.ingest.connections.get(SpeakerId(who.user_id))
            if connection is not None:
                await connection.close()
        return Response(status_code=204)

    @router.get(
        "/ice-servers",
        response_model=list[IceServerOut],
        summary="STUN/TURN servers for stage clients",
    )
    async def ice_servers() -> list[IceServerOut]:
        return [IceServerOut(**s.as_dict()) for s in config.ice_servers]

    health_body = HealthBody(config.role)

    @router.get(
        "/health",
        summary="Liveness and what this process runs",
        response_model=dict[str, object],
    )
    async def health() -> Response:
        # The same bytes the fast path answers with (api/fastpath.py), which answers most.
        stage = current()
        body = health_body(stage.keeper.node_id, len(stage.host.running))
        return Response(body, media_type="application/json")

    return router
