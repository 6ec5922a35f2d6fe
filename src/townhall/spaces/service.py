"""Runs Spaces on this process: creates the record, starts its media engine, ends it.

Records live in memory for now (the state store comes with the control plane); ended Spaces are
kept, bounded, so that their links answer "ended" rather than "unknown".
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass

from townhall.config import IceServer, MediaConfig
from townhall.media.ingest import Ingest
from townhall.media.pipeline import SpaceMedia
from townhall.spaces.model import Space, SpaceId, SpaceState, UserId, new_space_id

MAX_ENDED_KEPT = 10_000
MAX_ENDED_MEDIA_KEPT = 50


class SpaceNotFound(LookupError):
    pass


class SpaceEnded(Exception):
    pass


class TooManySpaces(Exception):
    pass


@dataclass
class LiveSpace:
    space: Space
    media: SpaceMedia
    ingest: Ingest
    stage_seen_at: float  # last time anyone was connected to the stage (monotonic)


class SpaceService:
    def __init__(
        self,
        media_config: MediaConfig,
        ice_servers: tuple[IceServer, ...],
        *,
        max_live: int = 50,
        empty_stage_end_s: float = 900.0,
    ) -> None:
        self._media_config = media_config
        self._ice_servers = ice_servers
        self._max_live = max_live
        self._empty_stage_end_s = empty_stage_end_s
        self._live: dict[SpaceId, LiveSpace] = {}
        self._ended: OrderedDict[SpaceId, Space] = OrderedDict()
        # The final playlist (with ENDLIST) of recently ended Spaces, so players stop cleanly.
        self._ended_media: OrderedDict[SpaceId, SpaceMedia] = OrderedDict()
        self._lock = asyncio.Lock()

    def create(self, title: str, host_id: str) -> LiveSpace:
        if len(self._live) >= self._max_live:
            raise TooManySpaces(f"this server runs at most {self._max_live} live Spaces")
        space = Space(new_space_id(), title, UserId(host_id), time.time(), state=SpaceState.LIVE)
        media = SpaceMedia(space.id, self._media_config)
        live = LiveSpace(space, media, Ingest(media, self._ice_servers), time.monotonic())
        self._live[space.id] = live
        media.start()
        return live

    def get(self, space_id: str) -> Space:
        live = self._live.get(SpaceId(space_id))
        if live is not None:
            return live.space
        ended = self._ended.get(SpaceId(space_id))
        if ended is None:
            raise SpaceNotFound(space_id)
        return ended

    def live(self, space_id: str) -> LiveSpace:
        live = self._live.get(SpaceId(space_id))
        if live is None:
            if SpaceId(space_id) in self._ended:
                raise SpaceEnded(space_id)
            raise SpaceNotFound(space_id)
        return live

    def media_of(self, space_id: str) -> SpaceMedia | None:
        """The media engine of a live Space, or of an ended one whose playlist is still held."""
        live = self._live.get(SpaceId(space_id))
        return live.media if live is not None else self._ended_media.get(SpaceId(space_id))

    async def end(self, space_id: str) -> Space:
        async with self._lock:
            live = self.live(space_id)
            ended = live.space.ended(time.time())
            del self._live[ended.id]
            self._ended[ended.id] = ended
            while len(self._ended) > MAX_ENDED_KEPT:
                self._ended.popitem(last=False)
        await live.ingest.close()
        await live.media.stop()
        self._ended_media[ended.id] = live.media
        while len(self._ended_media) > MAX_ENDED_MEDIA_KEPT:
            self._ended_media.popitem(last=False)
        return ended

    async def end_abandoned(self, now: float) -> list[Space]:
        """End every Space whose stage has been empty longer than the configured limit, so that
        forgotten Spaces give their capacity back. `now` is the monotonic clock."""
        abandoned = []
        for live in list(self._live.values()):
            if live.media.speakers:
                live.stage_seen_at = now
            elif now - live.stage_seen_at > self._empty_stage_end_s:
                abandoned.append(live.space.id)
        return [await self.end(space_id) for space_id in abandoned if space_id in self._live]

    def list_live(self) -> list[Space]:
        return [live.space for live in self._live.values() if live.space.state is SpaceState.LIVE]

    async def close(self) -> None:
        for space_id in list(self._live):
            await self.end(space_id)
