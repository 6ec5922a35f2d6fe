"""The records' side of invite links: the links, who they seated, and who no link may seat.

`InviteLinkStore` is one part of the records (`Records` in records.py inherits it): making,
listing and revoking links. Redeeming one seats a person, so it runs inside the stage's own write
(`Records.seat_with_invite_link`), which calls `take_use` here after locking the Space's row and
before taking the seat: the link's checks, its use and the seat commit together or not at all.

Double-spend. Of two people opening a one-use link at the same moment, one is seated and the other
refused, from any number of processes: the use is counted by a conditional UPDATE (`uses <
max_uses`), atomic on both databases, under the Space's row lock (PostgreSQL) or the database-wide
write lock (SQLite). A seat refused afterwards (the stage is full) rolls the use back with it.

The rule the checks implement is spaces/invite_links.py's.
"""

from __future__ import annotations

import sqlalchemy as sa

from townhall.spaces.invite_links import (
    STATE_REFUSALS,
    InviteLink,
    InviteLinkId,
    LinkState,
    LinkUse,
    Refusal,
)
from townhall.spaces.model import Role, SpaceId, UserId
from townhall.state.database import NO_SYNC, SqlStore, rowcount
from townhall.state.errors import LinkRefused, NotFound, TooManyLinks
from townhall.state.event_outbox import LogEvent, Transaction, lock_space, queue_event
from townhall.state.schema import InviteLinkBarRow, InviteLinkRow, InviteLinkUseRow, StageMemberRow

__all__ = ["InviteLinkStore", "bar_from_links", "take_use", "unbar"]


def _link(row: InviteLinkRow, uses: tuple[LinkUse, ...] = ()) -> InviteLink:
    return InviteLink(
        id=InviteLinkId(row.id),
        space_id=SpaceId(row.space_id),
        role=row.role,
        max_uses=row.max_uses,
        uses=row.uses,
        created_by=UserId(row.created_by),
        created_by_name=row.created_by_name,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        used_by=uses,
    )


def _open_at(now: float) -> sa.ColumnElement[bool]:
    """Links that may still seat someone at `now`, as far as the link alone can tell."""
    return sa.and_(
        InviteLinkRow.revoked_at.is_(None),
        InviteLinkRow.expires_at > now,
        InviteLinkRow.uses < InviteLinkRow.max_uses,
    )


async def _role(session: Transaction, space_id: SpaceId, user: UserId) -> Role:
    role = await session.scalar(
        sa.select(StageMemberRow.role).where(
            StageMemberRow.space_id == space_id, StageMemberRow.user_id == user
        )
    )
    return Role(role) if role is not None else Role.LISTENER


async def take_use(
    session: Transaction,
    space_id: SpaceId,
    link_id: InviteLinkId,
    user: UserId,
    display_name: str,
    now: float,
) -> InviteLink:
    """Whether the link seats `user` now (raises LinkRefused if not); counts the use unless the
    link seated them before. In the seat's transaction, after the Space's row is locked."""
    barred = await session.scalar(
        sa.select(InviteLinkBarRow.at).where(
            InviteLinkBarRow.space_id == space_id, InviteLinkBarRow.user_id == user
        )
    )
    if barred is not None:
        raise LinkRefused(Refusal.BARRED)
    row = (
        await session.execute(
            sa.select(InviteLinkRow).where(
                InviteLinkRow.id == link_id, InviteLinkRow.space_id == space_id
            )
        )
    ).scalar_one_or_none()
    if row is None:
        raise LinkRefused(Refusal.UNKNOWN)
    link = _link(row)
    state = link.state(now, await _role(session, space_id, link.created_by))
    used_before = await session.scalar(
        sa.select(InviteLinkUseRow.at).where(
            InviteLinkUseRow.link_id == link_id, InviteLinkUseRow.user_id == user
        )
    )
    if used_before is not None and state is LinkState.USED_UP:
        return link  # their own use: coming back costs none
    if state is not LinkState.OPEN:
        raise LinkRefused(STATE_REFUSALS[state])
    if used_before is not None:
        return link
    counted = await session.execute(
        sa.update(InviteLinkRow)
        .where(InviteLinkRow.id == link_id, InviteLinkRow.uses < InviteLinkRow.max_uses)
        .values(uses=InviteLinkRow.uses + 1),
        execution_options=NO_SYNC,
    )
    if rowcount(counted) == 0:
        raise LinkRefused(Refusal.USED_UP)
    await session.execute(
        sa.insert(InviteLinkUseRow).values(
            link_id=link_id, user_id=user, display_name=display_name, at=now
        )
    )
    return link


async def bar_from_links(
    session: Transaction, space_id: SpaceId, user: UserId, by: UserId, at: float
) -> None:
    """No invite link seats `user` in this Space from now on (until `unbar`)."""
    await unbar(session, space_id, user)
    await session.execute(
        sa.insert(InviteLinkBarRow).values(space_id=space_id, user_id=user, barred_by=by, at=at)
    )


async def unbar(session: Transaction, space_id: SpaceId, user: UserId) -> None:
    await session.execute(
        sa.delete(InviteLinkBarRow).where(
            InviteLinkBarRow.space_id == space_id, InviteLinkBarRow.user_id == user
        ),
        execution_options=NO_SYNC,
    )


class InviteLinkStore(SqlStore):
    async def create_invite_link(
        self, link: InviteLink, *, open_max: int, event: LogEvent | None = None
    ) -> InviteLink:
        """Store a new link, unless the Space already has `open_max` links that may still seat
        someone (TooManyLinks). NotFound when the Space does not exist."""
        async with self._write.begin() as session:
            await lock_space(session, link.space_id)
            open_now = await session.scalar(
                sa.select(sa.func.count())
                .select_from(InviteLinkRow)
                .where(InviteLinkRow.space_id == link.space_id, _open_at(link.created_at))
            )
            if (open_now or 0) >= open_max:
                raise TooManyLinks(f"Space {link.space_id} has {open_now} open invite links")
            await session.execute(
                sa.insert(InviteLinkRow).values(
                    id=link.id,
                    space_id=link.space_id,
                    role=link.role,
                    max_uses=link.max_uses,
                    uses=0,
                    created_by=link.created_by,
                    created_by_name=link.created_by_name,
                    created_at=link.created_at,
                    expires_at=link.expires_at,
                    revoked_at=None,
                )
            )
            await queue_event(session, link.space_id, event)
        return link

    async def invite_links(self, space_id: SpaceId, *, limit: int) -> list[InviteLink]:
        """The Space's links, newest first, each with whom it seated (first first)."""
        async with self._read() as session:
            rows = list(
                await session.scalars(
                    sa.select(InviteLinkRow)
                    .where(InviteLinkRow.space_id == space_id)
                    .order_by(InviteLinkRow.created_at.desc(), InviteLinkRow.id)
                    .limit(limit)
                )
            )
            uses: dict[str, list[LinkUse]] = {row.id: [] for row in rows}
            if rows:
                found = await session.scalars(
                    sa.select(InviteLinkUseRow)
                    .where(InviteLinkUseRow.link_id.in_(list(uses)))
                    .order_by(InviteLinkUseRow.at, InviteLinkUseRow.user_id)
                )
                for use in found:
                    uses[use.link_id].append(LinkUse(UserId(use.user_id), use.display_name, use.at))
        return [_link(row, tuple(uses[row.id])) for row in rows]

    async def invite_link(self, space_id: SpaceId, link_id: InviteLinkId) -> InviteLink | None:
        async with self._read() as session:
            row = await session.scalar(
                sa.select(InviteLinkRow).where(
                    InviteLinkRow.id == link_id, InviteLinkRow.space_id == space_id
                )
            )
            return None if row is None else _link(row)

    async def revoke_invite_link(
        self, space_id: SpaceId, link_id: InviteLinkId, at: float, *, event: LogEvent | None = None
    ) -> InviteLink:
        """Revoke a link of this Space (NotFound if it has none by that id). Revoking it again
        keeps the first time and queues no event."""
        async with self._write.begin() as session:
            await lock_space(session, space_id)
            revoked = await session.execute(
                sa.update(InviteLinkRow)
                .where(
                    InviteLinkRow.id == link_id,
                    InviteLinkRow.space_id == space_id,
                    InviteLinkRow.revoked_at.is_(None),
                )
                .values(revoked_at=at),
                execution_options=NO_SYNC,
            )
            if rowcount(revoked) > 0:
                await queue_event(session, space_id, event)
            row = await session.scalar(
                sa.select(InviteLinkRow)
                .where(InviteLinkRow.id == link_id, InviteLinkRow.space_id == space_id)
                .execution_options(populate_existing=True)
            )
            if row is None:
                raise NotFound(f"no invite link {link_id} in Space {space_id}")
            return _link(row)
