"""The media node: runs the audio engine of every green-room or live Space placed on this process.

For each Space it holds a SpaceMedia (mixer → encoders → packager), its speakers' WebRTC ingest and
a SpaceDirector that follows the Space's event log, so Go live, mutes, removals, delay, dump and
the end reach the audio from whichever process issued them. On start it resumes every Space the
records say is open (a restart loses a few seconds of audio, not the Space). A Space whose host
has been away from the stage longer than the configured limit is ended by the system.

Placement across several nodes (leases, take-over) is a later step; with one process every Space
runs here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from townhall.config import IceServer, MediaConfig
from townhall.media.audio import SpeakerId
from townhall.media.director import MediaCommand, SpaceDirector, state_commands
from townhall.media.ingest import Ingest
from townhall.media.pipeline import SpaceMedia
from townhall.spaces.control import ControlError, SpaceControl
from townhall.spaces.model import Space, SpaceId, SpaceState

log = logging.getLogger(__name__)

ENDED_MEDIA_KEPT = 50  # recently ended streams keep serving their final playlist (ENDLIST)


class NodeFull(Exception):
    """This process already runs as many Spaces as it is allowed to."""


@dataclass
class SpaceRuntime:
    space_id: SpaceId
    media: SpaceMedia
    ingest: Ingest
    director: SpaceDirector
    host_seen_at: float


class MediaHost:
    def __init__(
        self,
        control: SpaceControl,
        media_config: MediaConfig,
        ice_servers: tuple[IceServer, ...],
        *,
        max_live: int = 50,
        host_absent_end_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.control = control
        self._media_config = media_config
        self._ice_servers = ice_servers
        self._max_live = max_live
        self._host_absent_end_s = host_absent_end_s
        self._clock = clock
        self._running: dict[SpaceId, SpaceRuntime] = {}
        self._ended: OrderedDict[SpaceId, SpaceMedia] = OrderedDict()
        self._lock = asyncio.Lock()

    # -- lookups -------------------------------------------------------------------------------
    def runtime(self, space_id: str) -> SpaceRuntime | None:
        return self._running.get(SpaceId(space_id))

    def media_of(self, space_id: str) -> SpaceMedia | None:
        """The stream listeners fetch: a running Space's, or a recently ended one's final playlist."""
        running = self._running.get(SpaceId(space_id))
        return running.media if running is not None else self._ended.get(SpaceId(space_id))

    @property
    def running(self) -> list[SpaceId]:
        return list(self._running)

    # -- starting and stopping -----------------------------------------------------------------
    async def ensure(self, space: Space) -> SpaceRuntime | None:
        """Run the Space's media if its state calls for it (green room or live)."""
        if space.state not in (SpaceState.GREEN_ROOM, SpaceState.LIVE):
            return None
        async with self._lock:
            existing = self._running.get(space.id)
            if existing is not None:
                return existing
            if len(self._running) >= self._max_live:
                raise NodeFull(f"this server runs at most {self._max_live} open Spaces")
            media = SpaceMedia(space.id, self._media_config, on_air=space.state is SpaceState.LIVE)
            ingest = Ingest(media, self._ice_servers)
            live, records = self.control.live, self.control.records
            after = await live.latest_seq(space.id)
            stage = await records.stage(space.id)

            async def resync() -> list[MediaCommand]:
                fresh = await records.space(space.id)
                if fresh is None:
                    return []
                return state_commands(
                    fresh, await records.stage(space.id), list(ingest.connections)
                )

            async def on_end() -> None:
                await self._stop(space.id, ended=True)

            director = SpaceDirector(
                space.id,
                live,
                media,
                ingest,
                start_after_seq=after,
                on_end=on_end,
                resync=resync,
                initial=state_commands(space, stage),
            )
            runtime = SpaceRuntime(space.id, media, ingest, director, self._clock())
            self._running[space.id] = runtime
            media.start()
        await director.start()
        log.info("space %s: media running (%s)", space.id, space.state.value)
        return runtime

    async def _stop(self, space_id: SpaceId, *, ended: bool) -> None:
        runtime = self._running.pop(space_id, None)
        if runtime is None:
            return
        await runtime.director.stop()
        await runtime.ingest.close()
        await runtime.media.stop()
        if ended:
            self._ended[space_id] = runtime.media
            while len(self._ended) > ENDED_MEDIA_KEPT:
                self._ended.popitem(last=False)
        log.info("space %s: media stopped%s", space_id, " (ended)" if ended else "")

    async def resume_all(self) -> None:
        """After a (re)start: run every Space the records say is open."""
        for space in await self.control.records.list_spaces(
            [SpaceState.GREEN_ROOM, SpaceState.LIVE], limit=self._max_live
        ):
            try:
                await self.ensure(space)
            except NodeFull:
                log.error("space %s: not resumed, this node is full", space.id)
                break

    async def end_abandoned(self) -> list[SpaceId]:
        """End Spaces whose host has been off the stage's audio longer than the limit."""
        now = self._clock()
        abandoned = []
        for runtime in list(self._running.values()):
            space = await self.control.records.space(runtime.space_id)
            if space is None:
                continue
            if SpeakerId(space.host_id) in runtime.ingest.connections:  # the host may have changed
                runtime.host_seen_at = now
            elif now - runtime.host_seen_at > self._host_absent_end_s:
                abandoned.append(runtime.space_id)
        for space_id in abandoned:
            with contextlib.suppress(ControlError):  # already ended by someone else
                await self.control.end(None, space_id)
                log.info("space %s ended: its host was away too long", space_id)
        return abandoned

    async def close(self) -> None:
        """Stop every stream without ending any Space: they resume when the process starts again."""
        for space_id in list(self._running):
            await self._stop(space_id, ended=False)
