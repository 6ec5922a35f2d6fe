"""Composition root: the one place that builds components from config and wires them together."""

from __future__ import annotations

import contextlib
import logging
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


def create_app(config: Config) -> FastAPI:
    spaces = SpaceService(config.media, config.ice_servers)
    signer = TokenSigner(config.secret, config.token_ttl_s)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
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
