"""A forgotten Space gives its capacity back; a Space with someone on stage keeps running."""

from __future__ import annotations

import pytest

from townhall.config import MediaConfig
from townhall.media.audio import SpeakerId
from townhall.spaces.model import SpaceState
from townhall.spaces.service import SpaceEnded, SpaceService, TooManySpaces


async def test_a_space_whose_stage_stays_empty_ends_by_itself() -> None:
    service = SpaceService(MediaConfig(), (), empty_stage_end_s=60)
    try:
        forgotten = service.create("forgotten", "h1")
        busy = service.create("busy", "h2")
        busy.media.add_speaker(SpeakerId("alice"))
        start = forgotten.stage_seen_at
        assert await service.end_abandoned(start + 30) == []
        ended = await service.end_abandoned(start + 61)
        assert [s.id for s in ended] == [forgotten.space.id]
        assert service.get(forgotten.space.id).state is SpaceState.ENDED
        assert service.get(busy.space.id).state is SpaceState.LIVE
        with pytest.raises(SpaceEnded):
            service.live(forgotten.space.id)
        # Its listeners still get the final playlist, which says the stream ended.
        media = service.media_of(forgotten.space.id)
        assert media is not None
        assert "#EXT-X-ENDLIST" in media.packager.media_playlist()
    finally:
        await service.close()


async def test_the_live_space_limit_is_enforced_and_freed_by_ending() -> None:
    service = SpaceService(MediaConfig(), (), max_live=2)
    try:
        first = service.create("one", "h")
        service.create("two", "h")
        with pytest.raises(TooManySpaces):
            service.create("three", "h")
        await service.end(first.space.id)
        service.create("three", "h")
    finally:
        await service.close()
