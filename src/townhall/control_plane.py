"""Wiring of the control plane (identity, Spaces, stage, audience) into a FastAPI app.

app.py installs it beside the media node's routes; `control_plane_app` builds an app with the
control plane alone (no media), for tests and for API-only processes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from townhall.api import errors
from townhall.api.audience_routes import build_audience_router
from townhall.api.auth import Sessions, build_auth_router
from townhall.api.bounds import BoundedApp
from townhall.api.control_routes import build_control_router
from townhall.api.headers import SecurityHeaders
from townhall.api.invite_routes import build_invite_router
from townhall.api.live_routes import PresenceRates, Snapshots, build_live_router
from townhall.api.origins import OriginCheck
from townhall.api.push_routes import build_push_router
from townhall.api.reminder_routes import build_reminder_router
from townhall.api.tokens import IdentityTokens, InviteTokens, UnsubscribeTokens
from townhall.config import Config, make_private_dir
from townhall.delivery.capability import MediaKeys
from townhall.node.forward import relay_key
from townhall.reminders.mailer import SmtpMailer
from townhall.reminders.push_sender import PushSender
from townhall.reminders.sender import ReminderSender
from townhall.reminders.webpush import VapidKey
from townhall.spaces.control import ControlConfig, SpaceControl
from townhall.spaces.invite_links import TTL_DEFAULT_S
from townhall.spaces.model import Space, SpaceId
from townhall.state.embedded_live import EmbeddedLiveState
from townhall.state.live import LiveState
from townhall.state.outbox import EventOutbox
from townhall.state.records import Records, ReminderMail, open_records
from townhall.state.redis_live import RedisLiveState

log = logging.getLogger(__name__)


def records_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'townhall.db'}"


async def open_config_records(config: Config) -> Records:
    """The records `config` names, with its pool settings, schema at head."""
    return await open_records(
        config.database_url or records_url(config.data_dir),
        pool_size=config.database_pool_size,
        max_overflow=config.database_max_overflow,
        pool_timeout_s=config.database_pool_timeout_s,
    )


@dataclass
class ControlPlane:
    records: Records
    live: LiveState
    control: SpaceControl

    async def close(self) -> None:
        """Stop sweeping queued events (they stay in the records for any process), then the stores."""
        await self.control.events.close()
        await self.live.close()
        await self.records.close()


async def open_control_plane(config: Config) -> ControlPlane:
    """Durable records in SQL (SQLite under the data directory unless TOWNHALL_DATABASE_URL says
    otherwise); live state embedded, or in Redis when TOWNHALL_REDIS_URL is set."""
    make_private_dir(config.data_dir)
    records = await open_config_records(config)
    live: LiveState = (
        RedisLiveState.from_url(config.redis_url) if config.redis_url else EmbeddedLiveState()
    )
    # Delivers committed changes' events that their own process could not (state/outbox.py).
    events = EventOutbox(records, live)
    events.start()
    quotas = ControlConfig(
        guests_may_create=config.guests_create_spaces,
        max_open_per_host=config.max_open_spaces_per_host,
        sends_mail=config.smtp.enabled,
        captions=config.captions.enabled,
    )
    return ControlPlane(records, live, SpaceControl(records, live, quotas, events=events))


def reminder_sender(config: Config, plane: ControlPlane) -> ReminderSender | None:
    """The mail sender of this process, or None when no SMTP server is configured. Its
    unsubscribe links carry a token signed with the installation's secret."""
    if not config.smtp.enabled:
        return None
    if not config.public_url:
        log.warning(
            "reminder mail links will point at %s: set TOWNHALL_PUBLIC_URL to the address "
            "people reach this server at",
            config.base_url,
        )
    tokens = UnsubscribeTokens(config.secret)

    def unsubscribe_url(mail: ReminderMail) -> str:
        token = tokens.mint(mail.space_id, mail.user_id)
        return f"{config.base_url}/api/reminders/unsubscribe?token={token}"

    return ReminderSender(
        plane.records,
        SmtpMailer(config.smtp),
        plane.live,
        base_url=config.base_url,
        unsubscribe_url=unsubscribe_url,
    )


def vapid_key(config: Config) -> VapidKey:
    return VapidKey(config.push.vapid_private_key, config.push.subject)


def push_sender(config: Config, plane: ControlPlane) -> PushSender:
    """The reminder push sender of this process. Every process runs one, all with the same key:
    a browser subscribed with one node's public key takes pushes signed by that key only."""
    return PushSender(plane.records, vapid_key(config), base_url=config.base_url)


async def _always_room() -> None:
    """A control plane without media nodes (tests, API-only apps) has no capacity to check."""


def install_control_plane(
    app: FastAPI,
    config: Config,
    plane: Callable[[], ControlPlane],
    on_space_changed: Callable[[Space], Awaitable[None]],
    *,
    ensure_room: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """`on_space_changed` places a Space that opened on a media node (503 when none has room);
    `ensure_room` answers the same 503 before a Space that opens at once is written."""
    identity = IdentityTokens(config.secret, config.session_ttl_s)
    keys = MediaKeys(config.secret)  # private Spaces' capability URLs (delivery.capability)
    sessions = Sessions(identity, lambda: plane().live)
    app.state.sessions = sessions
    app.state.config = config
    app.state.on_space_changed = on_space_changed
    app.state.ensure_room = ensure_room or _always_room
    app.state.media_keys = keys
    app.state.find_space = lambda space_id: plane().records.space(SpaceId(space_id))  # pages
    secure = config.public_url.startswith("https://")
    app.include_router(
        build_auth_router(
            lambda: plane().records, lambda: plane().live, sessions, secure_cookies=secure
        )
    )
    app.include_router(
        build_control_router(
            lambda: plane().control,
            keys,
            storage=config.storage_quota,
            recording_reserve=config.recording_reserve_bytes,
        )
    )
    app.include_router(
        build_invite_router(lambda: plane().control, InviteTokens(config.secret, TTL_DEFAULT_S))
    )
    app.include_router(
        build_reminder_router(lambda: plane().control, UnsubscribeTokens(config.secret))
    )
    app.include_router(build_push_router(lambda: plane().control, vapid_key(config), config.push))
    # Shared with /metrics (app.py): both turn presence beacons into the same listener count.
    app.state.presence_rates = PresenceRates()
    # Shared with the fast path (app.py), which answers a current public snapshot itself.
    app.state.snapshots = Snapshots()
    app.include_router(
        build_live_router(
            lambda: plane().control,
            sessions,
            keys,
            rates=app.state.presence_rates,
            snapshots=app.state.snapshots,
        )
    )
    app.include_router(build_audience_router(lambda: plane().control))
    # Cookie-authenticated writes and WebSockets from other sites' pages are refused; a request
    # another node relays was checked where it arrived.
    app.add_middleware(
        OriginCheck, public_url=config.public_url, relay_key=relay_key(config.secret)
    )
    app.add_middleware(SecurityHeaders)  # outside the check: its refusals carry them too


def control_plane_app(config: Config) -> FastAPI:
    """A FastAPI app with only the control plane (no media): for tests and API-only processes."""
    holder: dict[str, ControlPlane] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        holder["plane"] = await open_control_plane(config)
        yield
        await holder["plane"].close()

    app = BoundedApp(title="townhall control plane", lifespan=lifespan)
    errors.install(app)

    async def nothing_to_run(_space: Space) -> None:
        return None

    install_control_plane(app, config, lambda: holder["plane"], nothing_to_run)
    app.state.plane = lambda: holder["plane"]
    return app
