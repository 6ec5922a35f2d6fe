"""Durable records: accounts, Spaces, the stage roster, bans, invitations, reminders, webhooks.

`Records` is an async repository over one SQLAlchemy `AsyncEngine` — SQLite (the default, one file
in the data directory) or PostgreSQL (at scale). It takes and returns the frozen domain types of
spaces/model.py; rows (schema.py) never leave this module. `open_records(url)` is the front door:
it creates the engine, brings the schema to the newest Alembic revision and returns the repository.
The engine, its transactions and the migrations are database.py's; the webhook outbox, the
event outbox and the invite links, which `Records` inherits, are webhook_outbox.py's,
event_outbox.py's and invite_links.py's; the errors are errors.py's (all re-exported here).

Theory of operation. Any number of processes may open the same database. Every method is one
transaction. Writes take the database's write lock up front (`BEGIN IMMEDIATE` on SQLite, see
database.py) and, where a count or a check must hold (stage limits, bans), they also lock the
Space's row with `SELECT … FOR UPDATE`, which is how the same code serialises on PostgreSQL
(SQLite ignores the clause; its lock is already database-wide). Compare-and-set
(`update_space(expect_state=…)`) and the webhook outbox's leases are single conditional UPDATEs,
atomic on both databases. The writes a command announces to webhooks (`create_space`,
`update_space`, `put_stage_member`, `remove_stage_member`, `ban`, `transfer_host`) take an
`Announcement` and queue its deliveries in their own transaction, so the change and its webhook
commit together or not at all (webhook_outbox.py). The same way, every write a command makes
takes the `LogEvent` for the Space's live log and queues it in the event outbox in its own
transaction (event_outbox.py); such a write locks the Space's row before anything else.

Errors: the tree in errors.py (NotFound, Conflict, UsernameTaken, StageFull, Banned, LinkRefused,
TooManyLinks); a database failure surfaces as SQLAlchemy's own.

Lookups of one record (`space`, `account`, `stage_member`, …) return None when there is none.
Timestamps are UNIX seconds as floats, passed in by the caller (the domain values carry them).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from townhall.spaces.invite_links import InviteLinkId
from townhall.spaces.model import (
    Account,
    Ban,
    Role,
    Roster,
    Space,
    SpaceId,
    SpaceState,
    StageLimits,
    StageMember,
    Standing,
    UserId,
    Visibility,
)
from townhall.state.database import (
    DEFAULT_BUSY_TIMEOUT_S,
    DEFAULT_MAX_OVERFLOW,
    DEFAULT_POOL_SIZE,
    DEFAULT_POOL_TIMEOUT_S,
    NO_SYNC,
    alembic_config,
    create_engine,
    migrate,
    rowcount,
)
from townhall.state.errors import (
    Banned,
    Conflict,
    LinkRefused,
    NotFound,
    RecordsError,
    StageFull,
    TooManyLinks,
    UsernameTaken,
)
from townhall.state.event_outbox import (
    EventQueue,
    LogEvent,
    lock_space,
    order_events,
    queue_event,
)
from townhall.state.invite_links import InviteLinkStore, bar_from_links, take_use, unbar
from townhall.state.push_outbox import PushOutbox, PushSubscription, ReminderPush
from townhall.state.recording_accounts import RecordingAccountStore, RecordingDeposit, open_account
from townhall.state.reminder_outbox import (
    DEFAULT_MAX_MAIL_ATTEMPTS,
    Notice,
    NoticeKind,
    ReminderMail,
    ReminderOutbox,
    queue_notice,
)
from townhall.state.schema import (
    AccountRow,
    BanRow,
    InvitationRow,
    ReminderRow,
    SpaceRow,
    StageMemberRow,
)
from townhall.state.wakeup import Work, queued
from townhall.state.webhook_outbox import (
    DEFAULT_MAX_DELIVERY_ATTEMPTS,
    Announced,
    Announcement,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookOutbox,
    queue_deliveries,
)

__all__ = [
    "Announced",
    "Announcement",
    "Banned",
    "Conflict",
    "DeliveryStatus",
    "LinkRefused",
    "LogEvent",
    "NotFound",
    "Notice",
    "NoticeKind",
    "PushSubscription",
    "Records",
    "RecordsError",
    "ReminderMail",
    "ReminderPush",
    "Roster",
    "StageFull",
    "Standing",
    "TooManyLinks",
    "UsernameTaken",
    "WebhookDelivery",
    "WebhookEndpoint",
    "alembic_config",
    "create_engine",
    "open_records",
]

log = logging.getLogger(__name__)

# Stage order: host, co-hosts, speakers; within a role, who joined first.
_ROLE_RANK = sa.case({Role.HOST: 0, Role.COHOST: 1}, value=StageMemberRow.role, else_=2)


# --- opening ---------------------------------------------------------------------------------


async def open_records(
    url: str,
    *,
    busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    pool_size: int = DEFAULT_POOL_SIZE,
    max_overflow: int = DEFAULT_MAX_OVERFLOW,
    pool_timeout_s: float = DEFAULT_POOL_TIMEOUT_S,
    max_delivery_attempts: int = DEFAULT_MAX_DELIVERY_ATTEMPTS,
) -> Records:
    """Open the records at `url` (`sqlite:///data/townhall.db`, `postgresql://user@host/db`; the
    async driver is filled in), schema at head.

    Safe when several processes open the same database at once (see database.migrate): exactly
    one of them applies a migration and the others find it done.
    """
    engine = create_engine(
        url,
        busy_timeout_s=busy_timeout_s,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout_s=pool_timeout_s,
    )
    records = Records(engine, max_delivery_attempts=max_delivery_attempts)
    try:
        applied = await migrate(engine)
    except BaseException:
        await engine.dispose()
        raise
    if applied:
        log.info("records: applied migrations %s", ", ".join(applied))
    records.applied_migrations = applied
    return records


# --- rows <-> values -------------------------------------------------------------------------


def _space(row: SpaceRow) -> Space:
    return Space(
        id=SpaceId(row.id),
        title=row.title,
        host_id=UserId(row.host_id),
        created_at=row.created_at,
        state=row.state,
        description=row.description,
        visibility=row.visibility,
        invite_code=row.invite_code,
        scheduled_start=row.scheduled_start,
        started_at=row.started_at,
        ended_at=row.ended_at,
        record=row.record,
        captions=row.captions,
        limits=StageLimits(max_cohosts=row.max_cohosts, max_speakers=row.max_speakers),
        delay_s=row.delay_s,
        pinned_link=row.pinned_link,
    )


def _space_values(space: Space) -> dict[str, Any]:
    """Everything about a Space that may change (not its id, not created_at)."""
    return {
        "title": space.title,
        "description": space.description,
        "host_id": space.host_id,
        "state": space.state,
        "visibility": space.visibility,
        "invite_code": space.invite_code,
        "scheduled_start": space.scheduled_start,
        "started_at": space.started_at,
        "ended_at": space.ended_at,
        "record": space.record,
        "captions": space.captions,
        "max_cohosts": space.limits.max_cohosts,
        "max_speakers": space.limits.max_speakers,
        "delay_s": space.delay_s,
        "pinned_link": space.pinned_link,
    }


def _account(row: AccountRow) -> Account:
    return Account(
        id=UserId(row.id),
        username=row.username,
        display_name=row.display_name,
        password_hash=row.password_hash,
        created_at=row.created_at,
    )


def _member(row: StageMemberRow) -> StageMember:
    return StageMember(
        space_id=SpaceId(row.space_id),
        user_id=UserId(row.user_id),
        role=row.role,
        display_name=row.display_name,
        joined_at=row.joined_at,
        muted_by_host=row.muted_by_host,
        self_muted=row.self_muted,
    )


def _member_values(member: StageMember) -> dict[str, Any]:
    return {
        "role": member.role,
        "display_name": member.display_name,
        "joined_at": member.joined_at,
        "muted_by_host": member.muted_by_host,
        "self_muted": member.self_muted,
    }


def _ban(row: BanRow) -> Ban:
    return Ban(
        space_id=SpaceId(row.space_id),
        user_id=UserId(row.user_id),
        banned_by=UserId(row.banned_by),
        at=row.at,
    )


_PerUser = type[StageMemberRow] | type[BanRow] | type[InvitationRow] | type[ReminderRow]


def _of(table: _PerUser, space_id: str, user_id: str) -> sa.ColumnElement[bool]:
    """The row of one user in one Space."""
    return sa.and_(table.space_id == space_id, table.user_id == user_id)


def _seats(role: Role, limits: StageLimits) -> int:
    return {Role.HOST: 1, Role.COHOST: limits.max_cohosts, Role.SPEAKER: limits.max_speakers}[role]


def _reminders(space_id: SpaceId) -> sa.Select[str]:
    """Who asked to be reminded of a Space, by user id."""
    return (
        sa.select(ReminderRow.user_id)
        .where(ReminderRow.space_id == space_id)
        .order_by(ReminderRow.user_id)
    )


# --- the repository --------------------------------------------------------------------------


class Records(
    WebhookOutbox, EventQueue, ReminderOutbox, PushOutbox, InviteLinkStore, RecordingAccountStore
):
    """The durable records over one engine. Use `open_records`, which also migrates the schema."""

    def __init__(
        self, engine: AsyncEngine, *, max_delivery_attempts: int = DEFAULT_MAX_DELIVERY_ATTEMPTS
    ) -> None:
        super().__init__(engine, max_delivery_attempts=max_delivery_attempts)
        self.max_mail_attempts = DEFAULT_MAX_MAIL_ATTEMPTS
        self.applied_migrations: tuple[str, ...] = ()  # what open_records applied (empty: none)

    # -- helpers --

    @staticmethod
    async def _refuse_banned(session: AsyncSession, space_id: SpaceId, user_id: UserId) -> None:
        banned = await session.scalar(
            sa.select(BanRow.user_id).where(_of(BanRow, space_id, user_id))
        )
        if banned is not None:
            raise Banned(f"{user_id} is banned from Space {space_id}")

    @staticmethod
    async def _publish(
        session: AsyncSession,
        space_id: SpaceId,
        announce: Announcement | None,
        event: LogEvent | None = None,
    ) -> None:
        """Queue the change's live-log event and `announce`'s webhook deliveries in the change's
        own transaction, after its writes (the payload is built from the Space as this
        transaction left it)."""
        await queue_event(session, space_id, event)
        if announce is None:
            return
        row = await session.scalar(
            sa.select(SpaceRow)
            .where(SpaceRow.id == space_id)
            # A row loaded earlier in this session is stale after a bulk UPDATE: read it afresh.
            .execution_options(populate_existing=True)
        )
        if row is None:
            raise NotFound(f"no Space {space_id}")
        reminders: tuple[UserId, ...] = ()
        if announce.reminders > 0:
            found = await session.scalars(_reminders(space_id).limit(announce.reminders))
            reminders = tuple(UserId(user_id) for user_id in found)
        payload = announce.payload(Announced(_space(row), reminders))
        await queue_deliveries(session, announce.event_type, payload, announce.at)

    async def _delete(
        self,
        tables: tuple[_PerUser, ...],
        space_id: SpaceId,
        user_id: UserId,
        announce: Announcement | None = None,
        event: LogEvent | None = None,
        *,
        publish_always: bool = True,
        bar: tuple[UserId, float] | None = None,
    ) -> bool:
        """Delete the user's row from each of `tables`; True if the first had one. The change is
        published (`announce`, `event`) either way, or with `publish_always=False` only if so.
        With `bar` (who, when), invite links no longer seat the user (state/invite_links.py)."""
        async with self._write.begin() as session:
            if event is not None:
                await order_events(session, space_id)
            deleted = [
                rowcount(
                    await session.execute(
                        sa.delete(table).where(_of(table, space_id, user_id)),
                        execution_options=NO_SYNC,
                    )
                )
                > 0
                for table in tables
            ]
            if bar is not None:
                await bar_from_links(session, space_id, user_id, *bar)
            if publish_always or deleted[0]:
                await self._publish(session, space_id, announce, event)
            return deleted[0]

    # -- accounts --

    async def create_account(self, account: Account) -> Account:
        """Store a new account; its username is stored lower-case. Returns what was stored."""
        stored = Account(
            id=account.id,
            username=account.username.lower(),
            display_name=account.display_name,
            password_hash=account.password_hash,
            created_at=account.created_at,
        )
        try:
            async with self._write.begin() as session:
                taken = await session.scalar(
                    sa.select(AccountRow.id).where(AccountRow.username == stored.username)
                )
                if taken is not None:
                    raise UsernameTaken(f"username {stored.username!r} is taken")
                await session.execute(
                    sa.insert(AccountRow).values(
                        id=stored.id,
                        username=stored.username,
                        display_name=stored.display_name,
                        password_hash=stored.password_hash,
                        created_at=stored.created_at,
                    )
                )
        except IntegrityError as exc:  # lost a race (PostgreSQL) or a duplicate id
            if await self.account_by_username(stored.username) is not None:
                raise UsernameTaken(f"username {stored.username!r} is taken") from exc
            if await self.account(stored.id) is not None:
                raise Conflict(f"account {stored.id} exists") from exc
            raise  # a corrupt record the schema refused
        return stored

    async def account(self, user_id: UserId) -> Account | None:
        async with self._read() as session:
            row = await session.scalar(sa.select(AccountRow).where(AccountRow.id == user_id))
            return None if row is None else _account(row)

    async def account_by_username(self, username: str) -> Account | None:
        async with self._read() as session:
            row = await session.scalar(
                sa.select(AccountRow).where(AccountRow.username == username.lower())
            )
            return None if row is None else _account(row)

    # -- spaces --

    async def create_space(
        self,
        space: Space,
        *,
        host: StageMember | None = None,
        announce: Announcement | None = None,
        event: LogEvent | None = None,
        deposit: RecordingDeposit | None = None,
    ) -> Space:
        """Store a new Space and, in the same transaction, seat its `host` (the Space and its
        host exist together or not at all) and open its recording's account with `deposit`
        (state/recording_accounts.py)."""
        if host is not None and (host.role is not Role.HOST or host.space_id != space.id):
            raise ValueError("the host is seated as the host of the Space being created")
        try:
            async with self._write.begin() as session:
                await session.execute(
                    sa.insert(SpaceRow).values(
                        id=space.id, created_at=space.created_at, **_space_values(space)
                    )
                )
                if host is not None:
                    await session.execute(
                        sa.insert(StageMemberRow).values(
                            space_id=space.id, user_id=host.user_id, **_member_values(host)
                        )
                    )
                if deposit is not None:
                    await open_account(session, space.id, deposit)
                await self._publish(session, space.id, announce, event)
                if space.scheduled_start is not None:
                    queued(session, Work.SCHEDULE)  # its 10-minute warning may be due soon
        except IntegrityError as exc:
            if await self.space(space.id) is not None:
                raise Conflict(f"Space {space.id} exists") from exc
            raise  # a corrupt record the schema refused
        return space

    async def space(self, space_id: SpaceId) -> Space | None:
        async with self._read() as session:
            row = await session.scalar(sa.select(SpaceRow).where(SpaceRow.id == space_id))
            return None if row is None else _space(row)

    async def spaces(self, space_ids: Collection[SpaceId]) -> dict[SpaceId, Space]:
        """The Spaces with these ids that exist, in one read (a node's periodic look at every
        Space it runs costs one query, not one per Space)."""
        if not space_ids:
            return {}
        async with self._read() as session:
            rows = await session.scalars(sa.select(SpaceRow).where(SpaceRow.id.in_(space_ids)))
            return {SpaceId(row.id): _space(row) for row in rows}

    async def update_space(
        self,
        new: Space,
        *,
        expect_state: SpaceState | None = None,
        announce: Announcement | None = None,
        event: LogEvent | None = None,
        notify: Notice | None = None,
    ) -> Space:
        """Replace the stored Space with `new` (same id; created_at is kept).

        With `expect_state`, only if the stored state still is that one — compare-and-set, so of
        two hosts or processes pressing "Go live" or "End" at once exactly one wins; the other
        gets Conflict and should re-read. `notify` mails everyone reminded of it by email, in the
        same transaction (reminder_outbox.py).
        """
        statement = sa.update(SpaceRow).where(SpaceRow.id == new.id)
        if expect_state is not None:
            statement = statement.where(SpaceRow.state == expect_state)
        async with self._write.begin() as session:
            result = await session.execute(
                statement.values(**_space_values(new)),
                execution_options=NO_SYNC,
            )
            if rowcount(result) == 0:
                current = await session.scalar(
                    sa.select(SpaceRow.state).where(SpaceRow.id == new.id)
                )
                if current is None:
                    raise NotFound(f"no Space {new.id}")
                raise Conflict(f"Space {new.id} is {current}, not {expect_state}")
            await self._publish(session, new.id, announce, event)
            if notify is not None:
                await queue_notice(session, new, notify)
            queued(session, Work.SCHEDULE)  # a new start time or state: warnings replan
        return new

    async def list_spaces(
        self,
        states: Collection[SpaceState],
        *,
        visibility: Visibility | None = None,
        limit: int = 50,
        before: float | None = None,
        before_id: SpaceId | None = None,
    ) -> list[Space]:
        """Spaces in any of `states`, newest first (created_at, then id, descending).

        Keyset pagination: pass the last item's created_at as `before` (and its id as `before_id`,
        so that Spaces created in the same instant are neither skipped nor repeated).
        """
        if not states or limit <= 0:
            return []
        query = sa.select(SpaceRow).where(SpaceRow.state.in_(list(states)))
        if visibility is not None:
            query = query.where(SpaceRow.visibility == visibility)
        if before is not None:
            if before_id is None:
                query = query.where(SpaceRow.created_at < before)
            else:
                query = query.where(
                    sa.or_(
                        SpaceRow.created_at < before,
                        sa.and_(SpaceRow.created_at == before, SpaceRow.id < before_id),
                    )
                )
        query = query.order_by(SpaceRow.created_at.desc(), SpaceRow.id.desc()).limit(limit)
        async with self._read() as session:
            return [_space(row) for row in await session.scalars(query)]

    async def count_hosted(self, host_id: UserId, states: Collection[SpaceState]) -> int:
        """How many Spaces `host_id` hosts in any of `states` (an index on the host)."""
        if not states:
            return 0
        query = (
            sa.select(sa.func.count())
            .select_from(SpaceRow)
            .where(SpaceRow.host_id == host_id, SpaceRow.state.in_(list(states)))
        )
        async with self._read() as session:
            return int(await session.scalar(query) or 0)

    async def hosted_spaces(
        self,
        host_id: UserId,
        states: Collection[SpaceState],
        *,
        visibility: Visibility | None = None,
        limit: int = 50,
    ) -> list[Space]:
        """A host's Spaces in any of `states`, newest first (their calendar feed)."""
        if not states or limit <= 0:
            return []
        query = sa.select(SpaceRow).where(
            SpaceRow.host_id == host_id, SpaceRow.state.in_(list(states))
        )
        if visibility is not None:
            query = query.where(SpaceRow.visibility == visibility)
        query = query.order_by(SpaceRow.created_at.desc(), SpaceRow.id.desc()).limit(limit)
        async with self._read() as session:
            return [_space(row) for row in await session.scalars(query)]

    async def spaces_due(self, now: float, *, limit: int = 100) -> list[Space]:
        """Scheduled Spaces whose start time has come, soonest first."""
        query = (
            sa.select(SpaceRow)
            .where(SpaceRow.state == SpaceState.SCHEDULED, SpaceRow.scheduled_start <= now)
            .order_by(SpaceRow.scheduled_start, SpaceRow.id)
            .limit(limit)
        )
        async with self._read() as session:
            return [_space(row) for row in await session.scalars(query)]

    # -- stage roster --

    async def put_stage_member(
        self,
        member: StageMember,
        limits: StageLimits,
        *,
        announce: Announcement | None = None,
        event: LogEvent | None = None,
    ) -> StageMember:
        """Seat `member` on the stage, or change the role of someone already there.

        Taking a role checks its seats (one host; `limits` for co-hosts and speakers) in the same
        transaction that writes, under the Space's lock: concurrent joins, from any number of
        processes, never seat more than the limit. Raises StageFull (Conflict for a second host),
        Banned, or NotFound when the Space does not exist. Keeping the same role just rewrites the
        member's other fields. (Whoever is seated no longer waits with a raised hand: the caller
        lowers it in the live state, spaces/control.py.)
        """
        if not member.role.on_stage:
            raise ValueError("listeners are not stored on the stage")
        async with self._write.begin() as session:
            await lock_space(session, member.space_id)
            await self._refuse_banned(session, member.space_id, member.user_id)
            await self._seat(session, member, limits)
            # Seated by a moderator's act: invite links may seat them again (invite_links.py).
            await unbar(session, member.space_id, member.user_id)
            await self._publish(session, member.space_id, announce, event)
        return member

    async def seat_with_invite_link(
        self,
        member: StageMember,
        limits: StageLimits,
        link_id: InviteLinkId,
        now: float,
        *,
        announce: Announcement | None = None,
        event: LogEvent | None = None,
    ) -> StageMember:
        """Seat `member` by an invite link: the link's checks (state/invite_links.py `take_use`),
        its use and the seat, in one transaction. Raises LinkRefused, Banned, StageFull (the use
        is not counted then), or NotFound when the Space does not exist. The member's role must
        be the link's (Conflict otherwise: the caller read another link)."""
        async with self._write.begin() as session:
            await lock_space(session, member.space_id)
            await self._refuse_banned(session, member.space_id, member.user_id)
            link = await take_use(
                session, member.space_id, link_id, member.user_id, member.display_name, now
            )
            if link.role is not member.role:
                raise Conflict(f"invite link {link_id} is for a {link.role}, not a {member.role}")
            await self._seat(session, member, limits)
            await self._publish(session, member.space_id, announce, event)
        return member

    @staticmethod
    async def _seat(session: AsyncSession, member: StageMember, limits: StageLimits) -> None:
        """put_stage_member's writes, in the caller's transaction (the Space's row locked)."""
        current = await session.scalar(
            sa.select(StageMemberRow.role).where(
                _of(StageMemberRow, member.space_id, member.user_id)
            )
        )
        if current is not member.role:
            taken = await session.scalar(
                sa.select(sa.func.count())
                .select_from(StageMemberRow)
                .where(
                    StageMemberRow.space_id == member.space_id,
                    StageMemberRow.role == member.role,
                    StageMemberRow.user_id != member.user_id,
                )
            )
            if (taken or 0) >= _seats(member.role, limits):
                if member.role is Role.HOST:
                    raise Conflict(f"Space {member.space_id} already has a host")
                raise StageFull(f"all {member.role} seats in Space {member.space_id} are taken")
        if current is None:
            await session.execute(
                sa.insert(StageMemberRow).values(
                    space_id=member.space_id, user_id=member.user_id, **_member_values(member)
                )
            )
        else:
            await session.execute(
                sa.update(StageMemberRow)
                .where(_of(StageMemberRow, member.space_id, member.user_id))
                .values(**_member_values(member)),
                execution_options=NO_SYNC,
            )

    async def update_stage_member(
        self, member: StageMember, *, event: LogEvent | None = None
    ) -> StageMember:
        """Rewrite a seated member's name and mute flags. Role changes go through put_stage_member
        (which checks the seats): a different role here raises Conflict; no seat raises NotFound."""
        async with self._writer.begin() as session:  # Core: no session's work needed
            if event is not None:
                await order_events(session, member.space_id)
            # One statement in the common case; what went wrong is looked up only if it matched
            # nothing (this runs for every mute and unmute).
            updated = await session.execute(
                sa.update(StageMemberRow)
                .where(
                    _of(StageMemberRow, member.space_id, member.user_id),
                    StageMemberRow.role == member.role,
                )
                .values(**_member_values(member))
            )
            if rowcount(updated) == 0:
                current = await session.scalar(
                    sa.select(StageMemberRow.role).where(
                        _of(StageMemberRow, member.space_id, member.user_id)
                    )
                )
                if current is None:
                    raise NotFound(
                        f"{member.user_id} is not on the stage of Space {member.space_id}"
                    )
                raise Conflict(
                    f"{member.user_id} is {current}, not {member.role}; use put_stage_member"
                )
            await queue_event(session, member.space_id, event)
        return member

    async def remove_stage_member(
        self,
        space_id: SpaceId,
        user_id: UserId,
        *,
        bar: tuple[UserId, float] | None = None,
        announce: Announcement | None = None,
        event: LogEvent | None = None,
    ) -> bool:
        """Take someone off the stage (back to the audience); False if they were not on the stage.
        With `bar` (the moderator, when) no invite link seats them again until a moderator does
        (spaces/invite_links.py). `announce` and `event` are queued either way (the caller decided
        the change)."""
        return await self._delete((StageMemberRow,), space_id, user_id, announce, event, bar=bar)

    async def stage(self, space_id: SpaceId) -> list[StageMember]:
        """The stage in display order: host, co-hosts, speakers; each role by who joined first."""
        query = (
            sa.select(StageMemberRow)
            .where(StageMemberRow.space_id == space_id)
            .order_by(_ROLE_RANK, StageMemberRow.joined_at, StageMemberRow.user_id)
        )
        async with self._read() as session:
            return [_member(row) for row in await session.scalars(query)]

    async def stage_member(self, space_id: SpaceId, user_id: UserId) -> StageMember | None:
        async with self._read() as session:
            row = await session.scalar(
                sa.select(StageMemberRow).where(_of(StageMemberRow, space_id, user_id))
            )
            return None if row is None else _member(row)

    async def roster(self, space_id: SpaceId) -> Roster | None:
        """The Space with its stage (in display order) and its bans, read together in one
        transaction; None when there is no such Space. Its `hands` are empty: raised hands are
        live state (state/live.py), which the caller adds."""
        async with self._read() as session:
            row = await session.scalar(sa.select(SpaceRow).where(SpaceRow.id == space_id))
            if row is None:
                return None
            stage = await session.scalars(
                sa.select(StageMemberRow)
                .where(StageMemberRow.space_id == space_id)
                .order_by(_ROLE_RANK, StageMemberRow.joined_at, StageMemberRow.user_id)
            )
            members = tuple(_member(member) for member in stage)
            bans = await session.scalars(
                sa.select(BanRow.user_id).where(BanRow.space_id == space_id)
            )
            banned = frozenset(UserId(user_id) for user_id in bans)
        return Roster(_space(row), members, banned, frozenset())

    async def transfer_host(
        self,
        space_id: SpaceId,
        from_host: UserId,
        to: UserId,
        limits: StageLimits,
        *,
        announce: Announcement | None = None,
        event: LogEvent | None = None,
    ) -> Space:
        """Hand the host role from `from_host` to `to` (who must be on the stage) in one
        transaction: the Space's host_id, the new host's seat and the old host's seat change
        together, so there is never no host or two.

        The old host stays on the stage as a co-host if a co-host seat is free (counting the one
        `to` vacates), else as a speaker (in the seat `to` vacated, so it always fits). Raises
        Conflict if the host is no longer `from_host` (another hand-over won), NotFound if there is
        no such Space or `to` is not on its stage. Returns the updated Space.
        """
        async with self._write.begin() as session:
            space = await self._hand_over(session, space_id, from_host, to, limits)
            await self._publish(session, space_id, announce, event)
            return space

    @staticmethod
    async def _hand_over(
        session: AsyncSession, space_id: SpaceId, from_host: UserId, to: UserId, limits: StageLimits
    ) -> Space:
        """transfer_host's writes, in the caller's transaction."""
        row = await session.scalar(
            sa.select(SpaceRow).where(SpaceRow.id == space_id).with_for_update()
        )
        if row is None:
            raise NotFound(f"no Space {space_id}")
        space = _space(row)
        if space.host_id != from_host:
            raise Conflict(f"{from_host} is no longer the host of Space {space_id}")
        if to == from_host:
            return space
        target = await session.scalar(
            sa.select(StageMemberRow.role).where(_of(StageMemberRow, space_id, to))
        )
        if target is None:
            raise NotFound(f"{to} is not on the stage of Space {space_id}")
        cohosts = await session.scalar(
            sa.select(sa.func.count())
            .select_from(StageMemberRow)
            .where(
                StageMemberRow.space_id == space_id,
                StageMemberRow.role == Role.COHOST,
                StageMemberRow.user_id.not_in([to, from_host]),
            )
        )
        old_role = Role.COHOST if (cohosts or 0) < limits.max_cohosts else Role.SPEAKER
        # Old host first: the one-host index must hold after every statement.
        for user_id, role in ((from_host, old_role), (to, Role.HOST)):
            await session.execute(
                sa.update(StageMemberRow)
                .where(_of(StageMemberRow, space_id, user_id))
                .values(role=role),
                execution_options=NO_SYNC,
            )
        await session.execute(
            sa.update(SpaceRow).where(SpaceRow.id == space_id).values(host_id=to),
            execution_options=NO_SYNC,
        )
        return replace(space, host_id=to)

    # -- invitations to speak --

    async def put_invitation(
        self,
        space_id: SpaceId,
        user_id: UserId,
        role: Role,
        invited_by: UserId,
        at: float,
        *,
        event: LogEvent | None = None,
    ) -> None:
        """Invite someone onto the stage as `role` (co-host or speaker), replacing any earlier
        invitation. Raises Banned, or NotFound when the Space does not exist."""
        if role not in (Role.COHOST, Role.SPEAKER):
            raise ValueError(f"one is invited as a co-host or a speaker, not as {role}")
        async with self._write.begin() as session:
            await lock_space(session, space_id)
            await self._refuse_banned(session, space_id, user_id)
            await session.execute(
                sa.delete(InvitationRow).where(_of(InvitationRow, space_id, user_id)),
                execution_options=NO_SYNC,
            )
            await session.execute(
                sa.insert(InvitationRow).values(
                    space_id=space_id, user_id=user_id, role=role, invited_by=invited_by, at=at
                )
            )
            await queue_event(session, space_id, event)

    async def take_invitation(self, space_id: SpaceId, user_id: UserId) -> Role | None:
        """Use up the user's invitation: the role offered, or None if there is none. Seating them
        is the caller's next step (put_stage_member checks the seats)."""
        async with self._write.begin() as session:
            role = await session.scalar(
                sa.select(InvitationRow.role).where(_of(InvitationRow, space_id, user_id))
            )
            if role is not None:
                await session.execute(
                    sa.delete(InvitationRow).where(_of(InvitationRow, space_id, user_id)),
                    execution_options=NO_SYNC,
                )
            return role

    # -- bans --

    async def ban(
        self, ban: Ban, *, announce: Announcement | None = None, event: LogEvent | None = None
    ) -> bool:
        """Ban a user from a Space and, in the same transaction, take them off the stage and drop
        any invitation (their raised hand is live state: the caller lowers it). False if they were
        already banned (the first ban is kept); `announce` and `event` are queued either way."""
        async with self._write.begin() as session:
            await lock_space(session, ban.space_id)
            for row in (StageMemberRow, InvitationRow):
                await session.execute(
                    sa.delete(row).where(_of(row, ban.space_id, ban.user_id)),
                    execution_options=NO_SYNC,
                )
            existing = await session.scalar(
                sa.select(BanRow.at).where(_of(BanRow, ban.space_id, ban.user_id))
            )
            if existing is None:
                await session.execute(
                    sa.insert(BanRow).values(
                        space_id=ban.space_id,
                        user_id=ban.user_id,
                        banned_by=ban.banned_by,
                        at=ban.at,
                    )
                )
            await self._publish(session, ban.space_id, announce, event)
            return existing is None

    async def is_banned(self, space_id: SpaceId, user_id: UserId) -> bool:
        async with self._read() as session:
            found = await session.scalar(sa.select(BanRow.at).where(_of(BanRow, space_id, user_id)))
            return found is not None

    async def bans(self, space_id: SpaceId) -> list[Ban]:
        query = (
            sa.select(BanRow).where(BanRow.space_id == space_id).order_by(BanRow.at, BanRow.user_id)
        )
        async with self._read() as session:
            return [_ban(row) for row in await session.scalars(query)]

    # -- reminders --

    async def add_reminder(
        self,
        space_id: SpaceId,
        user_id: UserId,
        *,
        email: str | None = None,
        soon: bool = False,
        push: bool = False,
        invite_code: str | None = None,
    ) -> bool:
        """'Remind me' (by mail to `email` if given, by push to the person's browsers with `push`,
        and with `soon` 10 minutes before too); False if already set, in which case the new
        address and choices replace the old. `invite_code`: the private Space's code the person
        showed (state/reminder_links.py). NotFound when the Space does not exist."""
        async with self._write.begin() as session:
            await lock_space(session, space_id)
            if soon:
                queued(session, Work.SCHEDULE)  # the warning may be due already
            existing = await session.scalar(
                sa.select(ReminderRow.user_id).where(_of(ReminderRow, space_id, user_id))
            )
            if existing is not None:
                await session.execute(
                    sa.update(ReminderRow)
                    .where(_of(ReminderRow, space_id, user_id))
                    .values(email=email, soon=soon, push=push, invite_code=invite_code),
                    execution_options=NO_SYNC,
                )
                return False
            await session.execute(
                sa.insert(ReminderRow).values(
                    space_id=space_id,
                    user_id=user_id,
                    email=email,
                    soon=soon,
                    push=push,
                    invite_code=invite_code,
                )
            )
            return True

    async def remove_reminder(self, space_id: SpaceId, user_id: UserId) -> bool:
        """Cancel a reminder, and the mails still waiting for it (reminder_outbox.unsubscribe)."""
        return await self.unsubscribe(space_id, user_id)

    async def reminders(self, space_id: SpaceId) -> list[UserId]:
        async with self._read() as session:
            return [UserId(user_id) for user_id in await session.scalars(_reminders(space_id))]
