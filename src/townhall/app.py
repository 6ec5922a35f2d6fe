"""Composition root: the one place that builds components from config and wires them together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI

from townhall import __version__
from townhall.api import errors
from townhall.api.routes import build_api
from townhall.api.tokens import TokenSigner
from townhall.config import Config
from townhall.delivery.origin import build_origin
from townhall.media.pipeline import SpaceMedia
from townhall.spaces.service import SpaceService
from townhall.web import pages

log = logging.getLogger(__name__)


REAP_INTERVAL_S = 5.0


async def _end_abandoned_spaces(spaces: SpaceService) -> None:
    while True:
        await asyncio.sleep(REAP_INTERVAL_S)
        try:
            for space in await spaces.end_abandoned(time.monotonic()):
                log.info("space %s ended: its stage was empty too long", space.id)
        except Exception:  # the reaper must outlive any one failure
            log.exception("ending abandoned Spaces failed")


def create_app(config: Config) -> FastAPI:
    spaces = SpaceService(
        config.media,
        config.ice_servers,
        max_live=config.max_live_spaces,
        empty_stage_end_s=config.empty_stage_end_s,
    )
    signer = TokenSigner(config.secret, config.token_ttl_s)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        reaper = asyncio.create_task(_end_abandoned_spaces(spaces))
        yield
        reaper.cancel()
        # Graceful end: every live Space ends, so players see ENDLIST and speakers are hung up.
        await spaces.close()

    app = FastAPI(
        title="townhall",
        version=__version__,
        lifespan=lifespan,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    errors.install(app)
    app.include_router(build_api(config, spaces, signer))

    def lookup(space_id: str) -> SpaceMedia | None:
        return spaces.media_of(space_id)

    app.mount("/live", build_origin(lookup))
    for route in pages.routes():
        app.router.routes.append(route)
    app.state.spaces = spaces
    app.state.signer = signer
    return app
