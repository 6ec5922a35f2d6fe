"""A Space's recording over HTTP: storage accounting, the host's download, and clips.

    GET  /api/spaces/{id}/recording      what it costs on disk, and why it stopped (host, co-hosts)
    GET  /api/spaces/{id}/recording.m4a  the whole recording as one file (host)
    POST /api/spaces/{id}/clips          a clip of up to a minute (anyone who may listen; limited
                                         per person and address, a storage quota per Space, and
                                         the clipper's and their address's storage budgets)
    GET  /api/clips/{clip_id}.m4a        a clip, by its unguessable id (a share link); a private
                                         Space's clip also needs its key (`?key=`, see
                                         delivery.capability), which its links carry
    GET  /api/clips/{clip_id}.vtt        its captions, when the Space was captioned (same access)

Files are made by remuxing the recorded AAC (`delivery.export`) on a worker thread, a few at a
time. A download is written to a temporary file whose name is removed as soon as it is opened for
sending, so nothing is left behind however the download ends. A clip is kept beside the recording
(`<recordings_dir>/<space>/clips/`), with the card its share page shows (`delivery.clip_card`),
and goes with it when retention deletes it. A recording
deleted by retention answers 410 `recording_expired`.
"""

import asyncio
import contextlib
import logging
import os
import re
import secrets
import string
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path as FsPath
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.responses import FileResponse, Response, StreamingResponse

from townhall.api.auth import RequiredIdentity, client_address
from townhall.api.errors import (
    Conflict,
    Forbidden,
    Gone,
    InsufficientStorage,
    NotFound,
    Unavailable,
    documented,
)
from townhall.api.media_routes import StageNode
from townhall.api.params import SpaceIdP
from townhall.api.tokens import Identity, IdentityKind
from townhall.captions.store import read_cues, timed_from
from townhall.config import Config
from townhall.delivery.capability import MediaKeys, clip_open
from townhall.delivery.clip_card import ClipCard, write_card
from townhall.delivery.export import (
    Exported,
    ExportError,
    NothingToExport,
    TooLarge,
    recorded_seconds,
    remux,
    wall_clock_at,
)
from townhall.delivery.recording import load_runs
from townhall.delivery.storage import CLIPS_DIR, DAY_S, clips_bytes, expired, usage
from townhall.node.host import MediaHost
from townhall.node.keeper import OPEN_STATES
from townhall.ratelimit.storage import clip_cost
from townhall.ratelimit.table import CLIP, CLIP_DAILY_PER_ADDRESS, CLIP_DAILY_PER_PERSON, take
from townhall.spaces.control import Actor, SpaceControl
from townhall.spaces.model import Role, Space, SpaceId, UserId

log = logging.getLogger(__name__)

CLIP_DEFAULT_S = 30.0  # "the last 30 s"
CLIP_MAX_S = 60.0
EXPORTS_AT_ONCE = 2  # remuxing is cheap but reads the disk: a few at a time per process
M4A = "audio/mp4"
CHUNK = 256 * 1024
_CLIP_ID = re.compile(r"^([a-z0-9]{10})-([a-z0-9]{12})$")
_ALPHABET = string.ascii_lowercase + string.digits


class RecordingOut(BaseModel):
    recording: bool  # being written now
    bytes: int  # on disk: runs and clips
    seconds: float  # recorded audio
    runs: int  # stream runs (a restart adds one)
    error: str | None  # why the recording stopped (a full disk), for the host to see
    expired: bool  # deleted by retention
    expires_at: float | None  # UNIX seconds when retention deletes it; None: kept


class ClipIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start_s: float | None = Field(default=None, ge=0, description="from the recording's start")
    end_s: float | None = Field(default=None, gt=0, description="default: the end (live: now)")

    @model_validator(mode="after")
    def _range(self) -> "ClipIn":
        if self.start_s is not None and self.end_s is not None:
            if self.end_s <= self.start_s:
                raise ValueError("the clip's end must be after its start")
            if self.end_s - self.start_s > CLIP_MAX_S:
                raise ValueError(f"a clip is at most {CLIP_MAX_S:.0f} seconds long")
        return self


class ClipOut(BaseModel):
    id: str
    url: str  # the file
    page: str  # the share page (/c/…): the link to give people
    space_id: str
    start_s: float
    end_s: float
    seconds: float


def clip_range(
    start_s: float | None, end_s: float | None, recorded: float
) -> tuple[float, float] | None:
    """The clip's [start, end) on the recording's timeline, or None if nothing recorded is in it.

    No bounds: the last 30 s. One bound: 30 s from or up to it. A range past the end is cut at
    the end (a live Space's recording is still growing).
    """
    if start_s is None and end_s is None:
        end = recorded
        start = end - CLIP_DEFAULT_S
    elif start_s is None:
        assert end_s is not None
        end = min(end_s, recorded)
        start = end_s - CLIP_DEFAULT_S
    elif end_s is None:
        start = start_s
        end = min(start_s + CLIP_DEFAULT_S, recorded)
    else:
        start, end = start_s, min(end_s, recorded)
    start = max(0.0, start)
    return (start, end) if end > start else None


def _open_unlinked(path: FsPath) -> BinaryIO:
    """Open the file and remove its name: the disk space returns when the handle closes, however
    the download ends (finished, or the client went away)."""
    file = path.open("rb")
    path.unlink()
    return file


async def _chunks(file: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(file.read, CHUNK):
            yield chunk
    finally:
        file.close()


def build_recording_router(
    config: Config, current: Callable[[], StageNode], clock: Callable[[], float] = time.time
) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["recordings"])
    keys = MediaKeys(config.secret)
    exports = asyncio.Semaphore(EXPORTS_AT_ONCE)
    root = config.media.recordings_dir
    quota = config.clip_quota_per_space_mb * 1_000_000  # bytes of clips per Space; 0: none
    budgets = config.storage_quota

    def host() -> MediaHost:
        return current().host

    def control() -> SpaceControl:
        return host().control

    async def stage_role(space_id: str, who: Identity) -> tuple[Space, Role]:
        """The Space and the caller's role in it; 404 for a private Space they are not on the
        stage of (the recording's routes are the stage's: no invite code opens them)."""
        standing = await control().admit(UserId(who.user_id), space_id, None)
        return standing.space, standing.role

    def recordings(space: Space) -> FsPath:
        """The Space's recording directory; 404 or 410 if there is nothing to read."""
        if root is None or not space.record:
            raise NotFound("this Space is not recorded", code="not_recorded")
        if expired(root, space.id):
            raise Gone(
                "the recording was deleted after the retention period", code="recording_expired"
            )
        return root / space.id

    async def export(work: Callable[[], Exported]) -> Exported:
        async with exports:
            try:
                return await asyncio.to_thread(work)
            except NothingToExport as exc:
                raise NotFound(str(exc), code="nothing_recorded") from None
            except TooLarge as exc:
                raise Conflict(str(exc), code="recording_too_large") from None
            except ExportError:
                log.exception("export failed")
                raise Unavailable("could not make the file", code="export_failed") from None
            except OSError as exc:  # the disk (full, failing): say what, not where
                reason = exc.strerror or type(exc).__name__
                raise Unavailable(
                    f"could not make the file: {reason}", code="export_failed"
                ) from None

    def base(request: Request) -> str:
        return config.public_url.rstrip("/") or str(request.base_url).rstrip("/")

    # -- accounting -------------------------------------------------------------------------------
    @router.get(
        "/spaces/{space_id}/recording",
        response_model=RecordingOut,
        summary="The recording's disk use and state (host, co-hosts)",
    )
    async def recording(
        space_id: SpaceIdP, who: RequiredIdentity, request: Request
    ) -> RecordingOut | Response:
        space, role = await stage_role(space_id, who)
        if role not in (Role.HOST, Role.COHOST):
            raise Forbidden("only the host or a co-host sees the recording", code="not_moderator")

        async def still_open() -> bool:
            return space.state in OPEN_STATES

        # Whether it is writing, and why it stopped, only the node running the Space knows.
        relayed = await current().forwarder.relay(
            request, space.id, lambda: host().runtime(space.id) is not None, still_open
        )
        if relayed is not None:
            return relayed
        runtime = host().runtime(space.id)
        recorder = runtime.recorder if runtime is not None else None
        writing = recorder is not None and recorder.recording
        gone = root is not None and expired(root, space.id)
        used = await asyncio.to_thread(usage, root, space.id) if root is not None else None
        days = config.recording_retention_days
        expires_at = (
            space.ended_at + days * DAY_S
            if space.record and space.ended_at is not None and days > 0 and not gone
            else None
        )
        return RecordingOut(
            recording=writing,
            bytes=used.bytes if used else 0,
            seconds=round(used.seconds, 3) if used else 0.0,
            runs=used.runs if used else 0,
            error=host().recording_errors.get(SpaceId(space.id)),
            expired=gone,
            expires_at=expires_at,
        )

    # -- download ---------------------------------------------------------------------------------
    @router.get(
        "/spaces/{space_id}/recording.m4a",
        response_class=StreamingResponse,
        summary="Download the whole recording as one .m4a (host)",
    )
    async def download(space_id: SpaceIdP, who: RequiredIdentity) -> StreamingResponse:
        space, role = await stage_role(space_id, who)
        if role is not Role.HOST:
            raise Forbidden("only the host can download the recording", code="not_host")
        directory = recordings(space)

        def make() -> Exported:
            fd, name = tempfile.mkstemp(prefix="townhall-", suffix=".m4a")
            os.close(fd)
            out = FsPath(name)
            try:
                return remux(load_runs(directory), out)
            except BaseException:
                out.unlink(missing_ok=True)
                raise

        made = await export(make)
        file = await asyncio.to_thread(_open_unlinked, made.path)
        return StreamingResponse(
            _chunks(file),
            media_type=M4A,
            headers={
                "Content-Length": str(made.size),
                "Content-Disposition": f'attachment; filename="{space.id}.m4a"',
                "Cache-Control": "private, no-store",
            },
        )

    # -- clips ------------------------------------------------------------------------------------
    @router.post(
        "/spaces/{space_id}/clips",
        status_code=201,
        response_model=ClipOut,
        summary="Clip up to 60 s of a recorded Space, live or replay (default: the last 30 s)",
        description=(
            "One at a time and a number a day per person and per address (429); the clips of "
            "one Space share a storage quota (507 `clip_quota`); each clip is paid from the "
            "clipper's and their address's storage budgets (429 `quota_exceeded`)."
        ),
        responses={507: documented("The Space's clips have used their storage quota")},
    )
    async def make_clip(
        space_id: SpaceIdP,
        request: Request,
        who: RequiredIdentity,
        body: ClipIn | None = None,
        code: Annotated[str | None, Query(max_length=64)] = None,
    ) -> ClipOut:
        wanted = body or ClipIn()
        now = clock()
        await take(control().live, CLIP, who.user_id, now)
        await take(control().live, CLIP_DAILY_PER_PERSON, who.user_id, now)
        await take(control().live, CLIP_DAILY_PER_ADDRESS, client_address(request), now)
        actor = Actor(
            UserId(who.user_id), who.display_name, is_guest=who.kind is IdentityKind.GUEST
        )
        space = (await control().can_listen(actor, space_id, code)).space
        directory = recordings(space)
        assert root is not None  # recordings() answered 404 otherwise
        if quota > 0 and await asyncio.to_thread(clips_bytes, root, space.id) >= quota:
            raise InsufficientStorage(
                f"this Space's clips have used all the room they have "
                f"({config.clip_quota_per_space_mb} MB); share one of its clips instead",
                code="clip_quota",
            )
        runs = await asyncio.to_thread(load_runs, directory)
        window = clip_range(wanted.start_s, wanted.end_s, recorded_seconds(runs))
        if window is None:
            raise NotFound("nothing is recorded in that range", code="nothing_recorded")
        start, end = window
        # Paid before anything is written (a refusal leaves no file), given back if none is made.
        cost = clip_cost(end - start, config.media.aac_bitrate)
        address = client_address(request)
        live = control().live
        await budgets.charge(live, identity=who.user_id, address=address, size=cost, now=now)
        clip_id = f"{space.id}-{''.join(secrets.choice(_ALPHABET) for _ in range(12))}"
        clips = directory / CLIPS_DIR
        final = clips / f"{clip_id}.m4a"
        partial = clips / f"{clip_id}.m4a.tmp"

        def make() -> Exported:
            clips.mkdir(exist_ok=True)
            try:
                made = remux(runs, partial, start_s=start, end_s=end)
                os.replace(partial, final)
            finally:
                partial.unlink(missing_ok=True)
            return Exported(final, made.seconds, made.size)

        try:
            made = await export(make)
        except Exception:
            await budgets.refund(live, identity=who.user_id, address=address, size=cost, now=now)
            raise
        card = ClipCard(
            clip_id=clip_id,
            space_id=space.id,
            title=space.title,
            speakers=tuple(m.display_name for m in await control().stage(space.id)),
            recorded_at=wall_clock_at(runs, start),
            seconds=round(made.seconds, 3),
            visibility=space.visibility.value,
        )
        try:
            await asyncio.to_thread(write_card, root, card)
        except OSError as exc:  # the clip plays without it; its page just says less
            log.warning("clip %s: its card could not be written: %s", clip_id, exc)
        if space.captions and card.recorded_at is not None:
            await asyncio.to_thread(
                _write_clip_captions, directory, clips / f"{clip_id}.vtt", card.recorded_at, made
            )
        query = keys.clip_query(space, clip_id)
        return ClipOut(
            id=clip_id,
            url=f"{base(request)}/api/clips/{clip_id}.m4a{query}",
            page=f"{base(request)}/c/{clip_id}{query}",
            space_id=space.id,
            start_s=round(start, 3),
            end_s=round(end, 3),
            seconds=round(made.seconds, 3),
        )

    @router.get(
        "/clips/{clip_id}.m4a", response_class=FileResponse, summary="A clip (anyone with its link)"
    )
    async def clip(clip_id: str, key: Annotated[str | None, Query(max_length=64)] = None) -> Any:
        return await clip_file(clip_id, key, ".m4a", M4A)

    @router.get(
        "/clips/{clip_id}.vtt",
        response_class=FileResponse,
        summary="A clip's captions (WebVTT, from the clip's start; a captioned Space's clips)",
    )
    async def clip_captions(
        clip_id: str, key: Annotated[str | None, Query(max_length=64)] = None
    ) -> Any:
        return await clip_file(clip_id, key, ".vtt", "text/vtt; charset=utf-8")

    async def clip_file(clip_id: str, key: str | None, suffix: str, media_type: str) -> Any:
        """A file kept for a clip, to whoever may have the clip (its link, and a private
        Space's key)."""
        match = _CLIP_ID.fullmatch(clip_id)
        if match is None or root is None:
            raise NotFound("no such clip", code="clip_not_found")
        space = await control().records.space(SpaceId(match.group(1)))
        if not clip_open(keys, space, clip_id, key):
            raise NotFound("no such clip", code="clip_not_found")  # as for a clip never made
        if expired(root, match.group(1)):
            raise Gone(
                "the recording was deleted after the retention period", code="recording_expired"
            )
        path = root / match.group(1) / CLIPS_DIR / f"{clip_id}{suffix}"
        with contextlib.suppress(OSError):
            if path.is_file():
                return FileResponse(
                    path, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"}
                )
        raise NotFound("no such clip", code="clip_not_found")

    return router


def _write_clip_captions(space_dir: FsPath, path: FsPath, start: float, made: Exported) -> None:
    """The clip's captions beside it (worker thread), if any were kept for its time; the clip
    stands without them."""
    text = timed_from(read_cues(space_dir), start, made.seconds)
    if text is None:
        return
    try:
        path.write_text(text)
    except OSError as exc:
        log.warning("%s: the clip's captions could not be written: %s", path.name, exc)
