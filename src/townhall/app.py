"""Composition root: the one place that builds components from config and wires them together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from townhall import __version__
from townhall.api import errors
from townhall.api.accept import ConnectionCap, default_cap
from townhall.api.admission import Admission, AdmissionLimits, AdmissionMiddleware, watch_loop_lag
from townhall.api.bounds import BoundedApp
from townhall.api.fastpath import FastPath, HealthBody
from townhall.api.lanes import Lane
from townhall.api.media_routes import build_media_router, no_room
from townhall.api.recording_routes import build_recording_router
from townhall.captions.track import CaptionTrack
from townhall.config import Config
from townhall.control_plane import (
    ControlPlane,
    install_control_plane,
    open_control_plane,
    push_sender,
    reminder_sender,
)
from townhall.delivery.access import PrivateGate, SpaceAccess
from townhall.delivery.capability import MediaKeys
from townhall.delivery.fanout import SegmentFanout
from townhall.delivery.origin import build_origin
from townhall.delivery.replay import Replay
from townhall.delivery.segment_front import OpenSegmentFront
from townhall.media.pipeline import SpaceMedia
from townhall.node.embedded_placement import EmbeddedPlacement
from townhall.node.forward import Forwarder, relay_key
from townhall.node.host import MediaHost, NodeFull, SpaceRuntime
from townhall.node.keeper import OPEN_STATES, KeeperConfig, NodeKeeper
from townhall.node.placement import NodeId, Placement
from townhall.node.redis_placement import RedisPlacement
from townhall.node.routing import LiveRouter
from townhall.ratelimit.storage import StorageQuota
from townhall.reminders.soon import SoonSweep
from townhall.spaces.model import Space, SpaceId
from townhall.state.unavailable import is_unavailable
from townhall.tasks import cancel_and_wait
from townhall.telemetry.metrics import NodeMetrics, build_metrics_router
from townhall.telemetry.requests import RequestStats, RequestTelemetry
from townhall.web import pages
from townhall.webhooks.sender import WebhookSender

log = logging.getLogger(__name__)

REAP_INTERVAL_S = 5.0
NO_SHOW_CANCEL_S = 24 * 3600  # a scheduled Space nobody opened a day after its start is cancelled
BACKGROUND_STOP_S = 10.0  # how long shutdown waits for the cancelled background loops


async def _end_abandoned_spaces(host: MediaHost) -> None:
    while True:
        await asyncio.sleep(REAP_INTERVAL_S)
        try:
            await host.end_abandoned()
            await host.control.cancel_no_shows(NO_SHOW_CANCEL_S)
        except Exception:  # the reaper must outlive any one failure
            log.exception("ending abandoned Spaces failed")


RECORDING_CHARGE_S = 30.0  # a chunk (recording_meter.CHARGE_BYTES) takes minutes to record


async def _charge_recordings(host: MediaHost, quota: StorageQuota) -> None:
    if not quota.enabled:
        return
    while True:
        await asyncio.sleep(RECORDING_CHARGE_S)
        try:
            await host.charge_recordings(quota, time.time())
        except Exception:  # the meter must outlive any one failure (the store's outage)
            log.exception("charging recordings to their hosts failed")


RETENTION_SWEEP_S = 600.0  # retention is counted in days: a sweep every 10 minutes is plenty


async def _expire_recordings(host: MediaHost, retention_days: int) -> None:
    if retention_days <= 0:  # kept forever
        return
    while True:
        try:
            await host.expire_recordings(retention_days, time.time())
        except Exception:  # the sweep must outlive any one failure
            log.exception("deleting expired recordings failed")
        await asyncio.sleep(RETENTION_SWEEP_S)


EXCLUSIVE_KEEPER = KeeperConfig(scan_every_s=5.0, tick_s=1.0, renew_every_s=1.0)


class Node:
    """What the running process holds, made in lifespan: the control plane, the Spaces it runs
    (host), its leases (keeper) and the way to reach other nodes (forwarder)."""

    plane: ControlPlane
    host: MediaHost
    keeper: NodeKeeper
    forwarder: Forwarder
    placement: Placement


def _node_id(config: Config) -> NodeId:
    """Unique per process start: a restarted node is a new node (its old leases lapse)."""
    return NodeId(f"{socket.gethostname()}-{config.port}-{secrets.token_hex(3)}")


def create_app(config: Config) -> FastAPI:
    node = Node()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        node.plane = await open_control_plane(config)
        node.placement = (
            RedisPlacement.from_url(config.redis_url) if config.redis_url else EmbeddedPlacement()
        )
        node_id = _node_id(config)

        async def ended(runtime: SpaceRuntime) -> None:
            await node.keeper.on_ended(runtime)

        node.host = MediaHost(
            node.plane.control,
            config.media,
            config.ice_servers,
            max_live=config.max_live_spaces,
            host_absent_end_s=config.empty_stage_end_s,
            on_ended=ended,
            captions=config.captions,
            recording_reserve=config.recording_reserve_bytes,
        )
        node.keeper = NodeKeeper(
            node.host,
            node.placement,
            node.plane.records,
            node_id,
            config.internal_url,
            runs_media=config.runs_media,
            exclusive=not config.redis_url,
            # One process holds every lease itself and places every Space it opens at once
            # (place_now): a scan only finds Spaces to resume after a restart (its first, at
            # start) or whose media stopped, so it scans every 5 s, and renews its in-memory
            # leases once a second (an idle node's wakeups: docs/architecture.md).
            config=EXCLUSIVE_KEEPER if not config.redis_url else KeeperConfig(),
        )
        node.forwarder = Forwarder(node.placement, node_id, relay_key(config.secret))
        node.keeper.start()
        sender = WebhookSender(node.plane.records)
        background = [
            asyncio.create_task(watch_loop_lag(admission), name="loop-lag"),
            asyncio.create_task(_end_abandoned_spaces(node.host), name="end-abandoned"),
            asyncio.create_task(sender.run(), name="webhooks"),
            asyncio.create_task(
                _expire_recordings(node.host, config.recording_retention_days), name="retention"
            ),
            asyncio.create_task(
                _charge_recordings(node.host, config.storage_quota), name="recording-meter"
            ),
        ]
        mail = reminder_sender(config, node.plane)
        if mail is not None:  # reminder mail leaves from every process (one per person anyway)
            background.append(asyncio.create_task(mail.run(), name="reminder-mail"))
        pushes = push_sender(config, node.plane)  # and pushes (one per browser anyway)
        background.append(asyncio.create_task(pushes.run(), name="reminder-push"))
        # One sweep queues the 10-minute warnings for both (one per person and browser anyway).
        soon = SoonSweep(node.plane.records)
        background.append(asyncio.create_task(soon.run(), name="reminder-soon"))
        log.info("node %s (%s) reachable at %s", node_id, config.role, config.internal_url)
        try:
            yield
        finally:
            # Graceful drain: hand this node's Spaces to other nodes (if any can take them), then
            # stop streams and hang up speakers. Spaces stay open: another node, or this one at
            # its next start, resumes them. Undelivered webhooks and mail stay in their outboxes.
            # Awaited before the stores close: a task cancelled inside a query still hands its
            # connection back (a rollback through the store's own thread), which never completes
            # once the store is closed, and the loop's last sweep would then wait on it forever.
            stuck = await cancel_and_wait(*background, within=BACKGROUND_STOP_S)
            for task in stuck:
                log.error(
                    "background task %s did not stop within %.0f s",
                    task.get_name(),
                    BACKGROUND_STOP_S,
                )
            await node.keeper.drain()
            await node.keeper.close()
            await sender.close()
            await pushes.close()
            await node.host.close()
            await node.forwarder.close()
            await node.placement.close()
            await node.plane.close()

    app = BoundedApp(
        title="townhall",
        version=__version__,
        lifespan=lifespan,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    errors.install(app)

    async def run_media_for(space: Space) -> None:
        try:
            await node.keeper.place_now(space)
        except NodeFull as exc:
            raise no_room(exc) from None

    async def room_for_one() -> None:
        try:
            await node.keeper.ensure_room()
        except NodeFull as exc:
            raise no_room(exc) from None

    install_control_plane(app, config, lambda: node.plane, run_media_for, ensure_room=room_for_one)
    app.include_router(build_media_router(config, lambda: node))
    app.include_router(build_recording_router(config, lambda: node))

    def lookup(space_id: str) -> SpaceMedia | None:
        return node.host.media_of(space_id) if hasattr(node, "host") else None

    async def replay_of(space_id: str) -> Replay | None:
        return await node.host.replay_of(space_id) if hasattr(node, "host") else None

    def captions_of(space_id: str) -> CaptionTrack | None:
        return node.host.captions_of(space_id) if hasattr(node, "host") else None

    async def caption_file(space_id: str) -> str | None:
        return await node.host.caption_file(space_id) if hasattr(node, "host") else None

    async def replay_captions(space_id: str) -> str | None:
        return await node.host.replay_captions(space_id) if hasattr(node, "host") else None

    def expired(space_id: str) -> bool:
        return hasattr(node, "host") and node.host.recording_expired(space_id)

    async def is_open(space_id: str) -> bool:
        space = await node.plane.records.space(SpaceId(space_id))
        return space is not None and space.state in OPEN_STATES

    async def find(space_id: str) -> Space | None:
        return await node.plane.records.space(SpaceId(space_id))

    # A private Space's media only at its capability path (delivery.access); the gate is inside
    # the router, so a relayed request keeps its key and the Space's own node checks it. The
    # origin's routes are served without its own Starlette stack: the /live lane around them
    # already answers errors (in the API's JSON shape), and a streamed segment would otherwise
    # keep a second error and exception middleware suspended for as long as it streams
    # (docs/architecture.md, "Memory per directly served listener").
    fanout = SegmentFanout()  # streamed segments' parts to their listeners (and /metrics)
    gate = PrivateGate(
        build_origin(
            lookup,
            replays=replay_of,
            expired=expired,
            captions=captions_of,
            caption_file=caption_file,
            replay_captions=replay_captions,
            fanout=fanout,
        ).router,
        build_origin(lambda _space_id: None).router,  # what a Space that does not exist is answered
        SpaceAccess(find, MediaKeys(config.secret), is_unavailable),
    )
    live = LiveRouter(
        gate,
        lambda: node.forwarder if hasattr(node, "forwarder") else None,
        lambda space_id: lookup(space_id) is not None,
        is_open,
    )
    app.mount("/live", live)
    # The listeners' requests skip the API's stack (api/lanes.py): of the app's own middleware they
    # pass only the real client's address, request telemetry and admission control, added below.
    app.lanes.append(
        Lane("/live", live, keep=(ProxyHeadersMiddleware, RequestTelemetry, AdmissionMiddleware))
    )

    async def drain() -> None:
        """Hand this node's Spaces over before the server stops accepting requests (SIGTERM)."""
        if hasattr(node, "keeper"):
            await node.keeper.drain()

    app.state.drain = drain
    for route in pages.routes():
        app.router.routes.append(route)
    app.state.node = node
    admission = Admission(
        AdmissionLimits(
            media=config.inflight_media,
            listener=config.inflight_listener,
            interaction=config.inflight_interaction,
            control=config.inflight_control,
        )
    )
    app.state.admission = admission
    app.add_middleware(AdmissionMiddleware, admission=admission)
    # Outside admission: the 503s it sheds are counted (and logged) like every other answer.
    requests = RequestStats()
    app.add_middleware(RequestTelemetry, stats=requests, log_requests=config.access_log)
    # The connection cap is enforced by the server's protocol factory (cli.py, api/accept.py);
    # it lives here so that its refusals are counted with admission's.
    connections = ConnectionCap(
        config.max_connections or default_cap(), wait_max_s=config.accept_wait_max_ms / 1000
    )
    app.state.connection_cap = connections
    metrics = NodeMetrics(
        role=config.role,
        admission=admission,
        connections=connections,
        requests=requests,
        presence=app.state.presence_rates,
        node=lambda: node if hasattr(node, "keeper") else None,
        live=lambda: node.plane.live,
        records=lambda: node.plane.records,
        fanout=fanout,
    )
    app.include_router(build_metrics_router(metrics, config.metrics_token))
    if not config.access_log:  # with it on, every request's line is the framework's to write
        health = HealthBody(config.role)

        def health_body() -> bytes | None:
            if not hasattr(node, "keeper"):  # starting: the framework's route says so
                return None
            return health(node.keeper.node_id, len(node.host.running))

        def served_plain(space_id: str) -> bool:
            return hasattr(node, "host") and node.host.serves_plain(space_id)

        app.front = FastPath(admission, requests, health_body, app.state.snapshots.public)
        # A listener's open segment, answered by the server's protocol (api/listener_protocol.py).
        app.state.segment_front = OpenSegmentFront(
            lookup, fanout, served_plain, admission, requests
        )
    if config.trusted_proxies:
        # Outermost (added last), so everything inside sees the real client and scheme: per-address
        # limits, listener counts and the links built from the request. Only these peers' headers
        # are believed (uvicorn's own copy of this is switched off in cli.py).
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(config.trusted_proxies))
    return app
