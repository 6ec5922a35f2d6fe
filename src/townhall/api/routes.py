"""The control API for the audio path: create a Space, invite speakers, connect a speaker, end.

Stage actions need a stage token (Authorization: Bearer) minted for that one Space; listening needs
nothing. Everything a stranger can call is rate-limited per client address.
"""

import secrets
import time
from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from townhall.api.errors import (
    BadRequest,
    Forbidden,
    Gone,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from townhall.api.ratelimit import RateLimit, RateLimiter
from townhall.api.tokens import StageGrant, StageRole, TokenError, TokenSigner
from townhall.config import Config
from townhall.media.audio import SpeakerId
from townhall.media.ingest import SdpError
from townhall.spaces.model import TITLE_MAX, Space, is_space_id
from townhall.spaces.service import (
    LiveSpace,
    SpaceEnded,
    SpaceNotFound,
    SpaceService,
    TooManySpaces,
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CreateSpace(Strict):
    title: str = Field(min_length=1, max_length=TITLE_MAX)

    @field_validator("title")
    @classmethod
    def printable(cls, value: str) -> str:
        if any(ord(ch) < 32 for ch in value):
            raise ValueError("must not contain control characters")
        return value


class SpaceOut(BaseModel):
    id: str
    title: str
    state: str
    created_at: float
    ended_at: float | None
    listen_url: str
    playlist_url: str


class CreatedSpace(BaseModel):
    space: SpaceOut
    host_token: str
    stage_url: str


class Invite(BaseModel):
    speaker_token: str
    stage_url: str
    expires_in: int


class SessionDescription(Strict):
    type: Literal["offer"]
    sdp: str = Field(min_length=10, max_length=32_768)


class Answer(BaseModel):
    type: Literal["answer"] = "answer"
    sdp: str


class IceServerOut(BaseModel):
    urls: str
    username: str | None = None
    credential: str | None = None


def build_api(
    config: Config,
    spaces: SpaceService,
    signer: TokenSigner,
    clock: Callable[[], float] = time.monotonic,
) -> APIRouter:
    router = APIRouter(prefix="/api")
    create_limit = RateLimiter(
        RateLimit(per_second=0.2, burst=5)
    )  # a new Space every 5 s per address
    connect_per_address = RateLimiter(RateLimit(per_second=5.0, burst=30))  # a stage behind one NAT
    connect_per_speaker = RateLimiter(RateLimit(per_second=0.5, burst=5))  # reconnect loops

    def limited(limiter: RateLimiter, request: Request, caller: str | None = None) -> None:
        if caller is None:
            caller = request.client.host if request.client else "unknown"
        wait = limiter.check(caller, clock())
        if wait > 0:
            raise TooManyRequests(
                "too many requests; slow down",
                headers={"Retry-After": RateLimiter.retry_after(wait)},
            )

    def base(request: Request) -> str:
        """Links point where the caller reached us, unless TOWNHALL_PUBLIC_URL says otherwise
        (so binding 0.0.0.0 or sitting behind a proxy never hands out unusable links)."""
        return config.public_url.rstrip("/") or str(request.base_url).rstrip("/")

    def space_out(space: Space, request: Request) -> SpaceOut:
        return SpaceOut(
            id=space.id,
            title=space.title,
            state=space.state.value,
            created_at=space.created_at,
            ended_at=space.ended_at,
            listen_url=f"{base(request)}/s/{space.id}",
            playlist_url=f"{base(request)}/live/{space.id}/index.m3u8",
        )

    def stage_url(space_id: str, token: str, request: Request) -> str:
        return f"{base(request)}/s/{space_id}/stage#token={token}"

    def valid_space_id(space_id: str) -> str:
        if not is_space_id(space_id):
            raise NotFound("no such Space", code="space_not_found")
        return space_id

    def grant(
        space_id: Annotated[str, Depends(valid_space_id)],
        authorization: Annotated[str | None, Header()] = None,
    ) -> StageGrant:
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthorized(
                "a stage token is required (Authorization: Bearer …)", code="token_missing"
            )
        try:
            return signer.verify(authorization.removeprefix("Bearer ").strip(), space_id)
        except TokenError as exc:
            raise Unauthorized(exc.message, code=exc.code) from None

    def host_grant(g: Annotated[StageGrant, Depends(grant)]) -> StageGrant:
        if g.role is not StageRole.HOST:
            raise Forbidden("only the host can do this", code="not_host")
        return g

    def live_or_error(space_id: str) -> LiveSpace:
        try:
            return spaces.live(space_id)
        except SpaceNotFound:
            raise NotFound("no such Space", code="space_not_found") from None
        except SpaceEnded:
            raise Gone("this Space has ended", code="space_ended") from None

    @router.post(
        "/spaces", status_code=201, response_model=CreatedSpace, summary="Create a live Space"
    )
    async def create_space(body: CreateSpace, request: Request) -> CreatedSpace:
        limited(create_limit, request)
        host_id = SpeakerId(f"host-{secrets.token_hex(6)}")
        try:
            live = spaces.create(body.title, host_id)
        except TooManySpaces as exc:
            raise Unavailable(str(exc), code="capacity", headers={"Retry-After": "30"}) from None
        token = signer.mint(live.space.id, StageRole.HOST, host_id)
        return CreatedSpace(
            space=space_out(live.space, request),
            host_token=token,
            stage_url=stage_url(live.space.id, token, request),
        )

    @router.get("/spaces", response_model=list[SpaceOut], summary="Live Spaces")
    async def list_spaces(request: Request) -> list[SpaceOut]:
        return [space_out(s, request) for s in spaces.list_live()]

    @router.get("/spaces/{space_id}", response_model=SpaceOut, summary="One Space")
    async def get_space(
        space_id: Annotated[str, Depends(valid_space_id)], request: Request
    ) -> SpaceOut:
        try:
            return space_out(spaces.get(space_id), request)
        except SpaceNotFound:
            raise NotFound("no such Space", code="space_not_found") from None

    @router.post(
        "/spaces/{space_id}/invites",
        status_code=201,
        response_model=Invite,
        summary="Mint a speaker invite (host only)",
    )
    async def invite(
        space_id: str, request: Request, _: Annotated[StageGrant, Depends(host_grant)]
    ) -> Invite:
        live_or_error(space_id)
        token = signer.mint(space_id, StageRole.SPEAKER)
        return Invite(
            speaker_token=token,
            stage_url=stage_url(space_id, token, request),
            expires_in=config.token_ttl_s,
        )

    @router.post(
        "/spaces/{space_id}/rtc",
        response_model=Answer,
        summary="Connect to the stage: send a WebRTC offer, get the answer",
    )
    async def connect(
        space_id: str,
        body: SessionDescription,
        request: Request,
        g: Annotated[StageGrant, Depends(grant)],
    ) -> Answer:
        limited(connect_per_address, request)
        limited(connect_per_speaker, request, f"{space_id}/{g.speaker_id}")
        live = live_or_error(space_id)
        try:
            sdp = await live.ingest.connect(SpeakerId(g.speaker_id), body.sdp)
        except SdpError as exc:
            raise BadRequest(str(exc), code="bad_sdp") from None
        return Answer(sdp=sdp)

    @router.delete("/spaces/{space_id}/rtc", status_code=204, summary="Leave the stage")
    async def disconnect(space_id: str, g: Annotated[StageGrant, Depends(grant)]) -> None:
        live = live_or_error(space_id)
        connection = live.ingest.connections.get(SpeakerId(g.speaker_id))
        if connection is not None:
            await connection.close()

    @router.post(
        "/spaces/{space_id}/end", response_model=SpaceOut, summary="End the Space (host only)"
    )
    async def end_space(
        space_id: str, request: Request, _: Annotated[StageGrant, Depends(host_grant)]
    ) -> SpaceOut:
        live_or_error(space_id)
        return space_out(await spaces.end(space_id), request)

    @router.get(
        "/ice-servers",
        response_model=list[IceServerOut],
        summary="STUN/TURN servers for stage clients",
    )
    async def ice_servers() -> list[IceServerOut]:
        return [IceServerOut(**s.as_dict()) for s in config.ice_servers]

    @router.get("/health", summary="Liveness")
    async def health() -> dict[str, object]:
        return {"ok": True, "live_spaces": len(spaces.list_live())}

    return router
