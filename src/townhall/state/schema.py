"""The SQL schema of the durable records, as typed SQLAlchemy 2 declarative classes.

These classes describe the tables for queries in records.py and for comparing against the
migrations; they never leave the state package (records.py turns rows into the frozen domain
types of spaces/model.py). The tables are created and changed only by the Alembic migrations in
migrations/versions/, which spell the same definitions out by hand; a test checks that the two
agree.

Validation belongs at the API edge, but the schema still refuses a corrupt record on its own:
NOT NULL wherever the domain type has no None, CHECK constraints on every enum and range (the
broadcast delay is 0–30 s, stage limits are not negative, a scheduled Space has a start time),
lower-case unique usernames, and a key on every (Space, user) pair. Enums are stored as short
strings with a CHECK rather than as native database enums, so that adding a value later is a plain
constraint change on both SQLite and PostgreSQL.

User ids are deliberately not foreign keys: guests (`g-…`) and the audio path's ad-hoc hosts have
no account row, and a user's stage seat, hand or ban is about the Space, not the account.
Everything that belongs to a Space is deleted with it (ON DELETE CASCADE; SQLite needs
`PRAGMA foreign_keys = ON`, which database.py sets on every connection).
"""

from __future__ import annotations

import enum

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from townhall.spaces.model import DESCRIPTION_MAX, TITLE_MAX, Role, SpaceState, Visibility

# Every constraint and index gets a predictable name, so later migrations can address it (and
# SQLite's batch mode can rebuild tables) without guessing database-generated names.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LEN = 64  # room for every id scheme in use (u-/g- accounts, the audio path's host-… ids)
ENUM_LEN = 16  # stored enum values are short words; room to add more without a type change
USERNAME_MIN, USERNAME_MAX = 3, 32
DELAY_MAX_S = 30


class DeliveryStatus(enum.StrEnum):
    """Where a webhook delivery stands: pending (queued or being retried) → delivered | failed."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after the last allowed attempt; kept for inspection


def _enum(cls: type[enum.StrEnum], name: str) -> sa.Enum:
    """A string column holding one of `cls`'s values (not its names), with a CHECK listing them."""
    return sa.Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=ENUM_LEN,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


def _flag(name: str) -> sa.Boolean:
    # On SQLite a boolean is an integer; the CHECK keeps it to 0/1 (PostgreSQL has a real type).
    return sa.Boolean(create_constraint=True, name=name)


def _user_id() -> sa.String:
    return sa.String(ID_LEN)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class AccountRow(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        sa.CheckConstraint("username = lower(username)", name="username_lower"),
        sa.CheckConstraint(
            f"length(username) BETWEEN {USERNAME_MIN} AND {USERNAME_MAX}", name="username_length"
        ),
    )

    id: Mapped[str] = mapped_column(_user_id(), primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(USERNAME_MAX), unique=True)
    display_name: Mapped[str] = mapped_column(sa.Text)
    password_hash: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[float] = mapped_column(sa.Double)


class SpaceRow(Base):
    __tablename__ = "spaces"
    __table_args__ = (
        sa.CheckConstraint(f"length(title) <= {TITLE_MAX}", name="title_length"),
        sa.CheckConstraint(f"length(description) <= {DESCRIPTION_MAX}", name="description_length"),
        sa.CheckConstraint(f"delay_s >= 0 AND delay_s <= {DELAY_MAX_S}", name="delay_range"),
        sa.CheckConstraint("max_cohosts >= 0", name="max_cohosts_range"),
        sa.CheckConstraint("max_speakers >= 0", name="max_speakers_range"),
        sa.CheckConstraint(
            "state <> 'scheduled' OR scheduled_start IS NOT NULL", name="scheduled_has_start"
        ),
        # The home page: public Spaces in some states, newest first (keyset on created_at, id).
        sa.Index(None, "state", "visibility", "created_at"),
        # Reminders / auto-open: scheduled Spaces whose start has passed.
        sa.Index(None, "state", "scheduled_start"),
    )

    id: Mapped[str] = mapped_column(sa.String(ID_LEN), primary_key=True)
    title: Mapped[str] = mapped_column(sa.Text)
    description: Mapped[str] = mapped_column(sa.Text)
    host_id: Mapped[str] = mapped_column(_user_id(), index=True)
    state: Mapped[SpaceState] = mapped_column(_enum(SpaceState, "state"))
    visibility: Mapped[Visibility] = mapped_column(_enum(Visibility, "visibility"))
    invite_code: Mapped[str] = mapped_column(sa.String(ID_LEN))
    created_at: Mapped[float] = mapped_column(sa.Double)
    scheduled_start: Mapped[float | None] = mapped_column(sa.Double)
    started_at: Mapped[float | None] = mapped_column(sa.Double)
    ended_at: Mapped[float | None] = mapped_column(sa.Double)
    record: Mapped[bool] = mapped_column(_flag("record"))
    captions: Mapped[bool] = mapped_column(_flag("captions"), server_default=sa.false())
    max_cohosts: Mapped[int] = mapped_column(sa.Integer)
    max_speakers: Mapped[int] = mapped_column(sa.Integer)
    delay_s: Mapped[float] = mapped_column(sa.Double)
    pinned_link: Mapped[str | None] = mapped_column(sa.Text)


def _space_fk() -> sa.ForeignKey:
    return sa.ForeignKey("spaces.id", ondelete="CASCADE")


class StageMemberRow(Base):
    """Host, co-hosts and speakers; listeners are not stored (the enum has no 'listener')."""

    __tablename__ = "stage_members"
    __table_args__ = (
        sa.CheckConstraint("role <> 'listener'", name="role_on_stage"),
        # One host per Space, whatever the code above does.
        sa.Index(
            "uq_stage_members_one_host",
            "space_id",
            unique=True,
            sqlite_where=sa.text("role = 'host'"),
            postgresql_where=sa.text("role = 'host'"),
        ),
    )

    space_id: Mapped[str] = mapped_column(sa.String(ID_LEN), _space_fk(), primary_key=True)
    user_id: Mapped[str] = mapped_column(_user_id(), primary_key=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    display_name: Mapped[str] = mapped_column(sa.Text)
    joined_at: Mapped[float] = mapped_column(sa.Double)
    muted_by_host: Mapped[bool] = mapped_column(_flag("muted_by_host"))
    self_muted: Mapped[bool] = mapped_column(_flag("self_muted"))


class BanRow(Base):
    __tablename__ = "bans"

    space_id: Mapped[str] = mapped_column(sa.String(ID_LEN), _space_fk(), primary_key=True)
    user_id: Mapped[str] = mapped_column(_user_id(), primary_key=True)
    banned_by: Mapped[str] = mapped_column(_user_id())
    at: Mapped[float] = mapped_column(sa.Double)


class InvitationRow(Base):
    """An open invitation to take the stage, until the invitee accepts it (or is banned)."""

    __tablename__ = "invitations"
    __table_args__ = (sa.CheckConstraint("role IN ('cohost', 'speaker')", name="role_invitable"),)

    space_id: Mapped[str] = mapped_column(sa.String(ID_LEN), _space_fk(), primary_key=True)
    user_id: Mapped[str] = mapped_column(_user_id(), primary_key=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    invited_by: Mapped[str] = mapped_column(_user_id())
    at: Mapped[float] = mapped_column(sa.Double)


class ReminderRow(Base):
    """'Remind me' on a scheduled Space: by email to `email` if one was given (accounts only),
    by Web Push to the person's browsers with `push`, and with `soon` also 10 minutes before the
    start."""

    __tablename__ = "reminders"

    space_id: Mapped[str] = mapped_column(sa.String(ID_LEN), _space_fk(), primary_key=True)
    user_id: Mapped[str] = mapped_column(_user_id(), primary_key=True)
    email: Mapped[str | None] = mapped_column(sa.Text)
    soon: Mapped[bool] = mapped_column(_flag("soon"), server_default=sa.false())
    push: Mapped[bool] = mapped_column(_flag("push"), server_default=sa.false())
    # A private Space's invite code as the person showed it when asking (None: none shown). Only
    # while it is still the Space's code does a reminder's link carry it (reminder_links.py).
    invite_code: Mapped[str | None] = mapped_column(sa.String(ID_LEN))


class NoticeKind(enum.StrEnum):
    """Why a reminder mail is sent (reminders/notices.py writes each)."""

    STARTING = "starting"  # the Space went on air
    SOON = "soon"  # it starts in 10 minutes
    CHANGED = "changed"  # its start time changed
    CANCELLED = "cancelled"  # it was called off


class WebhookEndpointRow(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(sa.Text)
    secret: Mapped[str] = mapped_column(sa.Text)
    events: Mapped[str] = mapped_column(sa.Text)  # JSON list of event types / patterns
    created_at: Mapped[float] = mapped_column(sa.Double)


# A BIGINT primary key is not SQLite's auto-numbered INTEGER PRIMARY KEY, hence the variant.
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class WebhookDeliveryRow(Base):
    """The outbox: one row per (event, endpoint), worked off by whichever process claims it."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.CheckConstraint("attempts >= 0", name="attempts_range"),
        sa.Index(None, "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    event_type: Mapped[str] = mapped_column(sa.String(ID_LEN))
    payload: Mapped[str] = mapped_column(sa.Text)  # the JSON body, exactly as it will be signed
    status: Mapped[DeliveryStatus] = mapped_column(_enum(DeliveryStatus, "status"))
    attempts: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[float] = mapped_column(sa.Double)
    next_attempt_at: Mapped[float] = mapped_column(sa.Double)
    # A claim holds the row until lease_until; lease_token tells the claimer which rows it got.
    lease_until: Mapped[float | None] = mapped_column(sa.Double)
    lease_token: Mapped[str | None] = mapped_column(sa.String(ID_LEN))
    delivered_at: Mapped[float | None] = mapped_column(sa.Double)
    last_error: Mapped[str | None] = mapped_column(sa.Text)


class ReminderMailRow(Base):
    """The mail outbox: one row per notice per person, worked off like the webhook deliveries
    (state/leased_queue.py). (space, user, key) is unique, so a notice is queued once whichever
    process or sweep queues it: the key is the notice's kind, with the start time for the
    10-minute warning (a new time, a new warning)."""

    __tablename__ = "reminder_mail"
    __table_args__ = (
        sa.CheckConstraint("attempts >= 0", name="attempts_range"),
        sa.UniqueConstraint("space_id", "user_id", "key"),
        sa.Index(None, "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True, autoincrement=True)
    space_id: Mapped[str] = mapped_column(sa.String(ID_LEN), _space_fk())
    user_id: Mapped[str] = mapped_column(_user_id())
    email: Mapped[str] = mapped_column(sa.Text)
    kind: Mapped[NoticeKind] = mapped_column(_enum(NoticeKind, "kind"))
    key: Mapped[str] = mapped_column(sa.String(ID_LEN))
    data: Mapped[str] = mapped_column(sa.Text)  # JSON: the Space as the change left it, and extras
    status: Mapped[DeliveryStatus] = mapped_column(_enum(DeliveryStatus, "status"))
    attempts: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[float] = mapped_column(sa.Double)
    next_attempt_at: Mapped[float] = mapped_column(sa.Double)
    lease_until: Mapped[float | None] = mapped_column(sa.Double)
    lease_token: Mapped[str | None] = mapped_column(sa.String(ID_LEN))
    delivered_at: Mapped[float | None] = mapped_column(sa.Double)
    last_error: Mapped[str | None] = mapped_column(sa.Text)


P256_KEY_LEN = 88  # a browser's p256dh key: 65 bytes, 87 characters of base64url


class PushSubscriptionRow(Base):
    """A browser that accepts Web Push for a person (PushSubscription.toJSON()). An endpoint
    belongs to one browser profile, so it is unique: whoever subscribes it last owns it."""

    __tablename__ = "push_subscriptions"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(_user_id(), index=True)
    endpoint: Mapped[str] = mapped_column(sa.Text, unique=True)
    p256dh: Mapped[str] = mapped_column(sa.String(P256_KEY_LEN))
    auth: Mapped[str] = mapped_column(sa.String(ID_LEN))
    created_at: Mapped[float] = mapped_column(sa.Double)


class ReminderPushRow(Base):
    """The push outbox: one row per notice per browser of a person, worked off like the mail
    (state/leased_queue.py); (subscription, space, key) is unique as (space, user, key) is for
    mail. A subscription that goes takes its rows with it."""

    __tablename__ = "reminder_push"
    __table_args__ = (
        sa.CheckConstraint("attempts >= 0", name="attempts_range"),
        sa.UniqueConstraint("subscription_id", "space_id", "key"),
        sa.Index(None, "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True, autoincrement=True)
    space_id: Mapped[str] = mapped_column(sa.String(ID_LEN), _space_fk(), index=True)
    subscription_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("push_subscriptions.id", ondelete="CASCADE")
    )
    user_id: Mapped[str] = mapped_column(_user_id())
    kind: Mapped[NoticeKind] = mapped_column(_enum(NoticeKind, "kind"))
    key: Mapped[str] = mapped_column(sa.String(ID_LEN))
    data: Mapped[str] = mapped_column(sa.Text)  # JSON: the Space as the change left it, and extras
    status: Mapped[DeliveryStatus] = mapped_column(_enum(DeliveryStatus, "status"))
    attempts: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[float] = mapped_column(sa.Double)
    next_attempt_at: Mapped[float] = mapped_column(sa.Double)
    lease_until: Mapped[float | None] = mapped_column(sa.Double)
    lease_token: Mapped[str | None] = mapped_column(sa.String(ID_LEN))
    delivered_at: Mapped[float | None] = mapped_column(sa.Double)
    last_error: Mapped[str | None] = mapped_column(sa.Text)


class EventOutboxRow(Base):
    """A command's event, committed with its change and waiting for the Space's live log
    (state/event_outbox.py). Rows live for milliseconds unless the live store is out of reach or
    the process that wrote them died; `id` orders a Space's events as their changes committed."""

    __tablename__ = "event_outbox"
    __table_args__ = (
        sa.Index(None, "space_id", "id"),
        sa.Index(None, "at"),  # the sweep: events older than a few seconds
    )

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True, autoincrement=True)
    space_id: Mapped[str] = mapped_column(sa.String(ID_LEN), _space_fk())
    type: Mapped[str] = mapped_column(sa.String(ID_LEN))
    data: Mapped[str] = mapped_column(sa.Text)  # the event's JSON object
    at: Mapped[float] = mapped_column(sa.Double)


class InviteLinkRow(Base):
    """A stage invite link (spaces/invite_links.py): what it seats, how often, until when. The
    token in the link's URL names the row; the row alone says whether it still seats anyone."""

    __tablename__ = "invite_links"
    __table_args__ = (
        sa.CheckConstraint("role IN ('cohost', 'speaker')", name="role_invitable"),
        sa.CheckConstraint("max_uses >= 1", name="max_uses_range"),
        sa.CheckConstraint("uses >= 0 AND uses <= max_uses", name="uses_range"),
        # The host's list: a Space's links, newest first.
        sa.Index(None, "space_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(ID_LEN), primary_key=True)
    space_id: Mapped[str] = mapped_column(sa.String(ID_LEN), _space_fk())
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    max_uses: Mapped[int] = mapped_column(sa.Integer)
    uses: Mapped[int] = mapped_column(sa.Integer)
    created_by: Mapped[str] = mapped_column(_user_id())
    created_by_name: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[float] = mapped_column(sa.Double)
    expires_at: Mapped[float] = mapped_column(sa.Double)
    revoked_at: Mapped[float | None] = mapped_column(sa.Double)


class InviteLinkUseRow(Base):
    """Who an invite link seated: one row per person, so a person opening it again costs no use."""

    __tablename__ = "invite_link_uses"

    link_id: Mapped[str] = mapped_column(
        sa.String(ID_LEN),
        sa.ForeignKey("invite_links.id", ondelete="CASCADE"),
        primary_key=True,
    )
    user_id: Mapped[str] = mapped_column(_user_id(), primary_key=True)
    display_name: Mapped[str] = mapped_column(sa.Text)
    at: Mapped[float] = mapped_column(sa.Double)


class InviteLinkBarRow(Base):
    """Someone a moderator took off the stage (or removed from the Space): no invite link seats
    them until a moderator seats them directly, which deletes the row."""

    __tablename__ = "invite_link_bars"

    space_id: Mapped[str] = mapped_column(sa.String(ID_LEN), _space_fk(), primary_key=True)
    user_id: Mapped[str] = mapped_column(_user_id(), primary_key=True)
    barred_by: Mapped[str] = mapped_column(_user_id())
    at: Mapped[float] = mapped_column(sa.Double)


class RecordingAccountRow(Base):
    """What a recorded Space's recording has been paid for, and the address that pays beside its
    host (state/recording_accounts.py). Kept with the Space, not on the node recording it, so
    whichever media node records it next charges on from the same account."""

    __tablename__ = "recording_accounts"
    __table_args__ = (sa.CheckConstraint("paid >= 0", name="paid_range"),)

    space_id: Mapped[str] = mapped_column(sa.String(ID_LEN), _space_fk(), primary_key=True)
    # The per-address key (ratelimit.address.address_key: an IPv4 address or an IPv6 /64) the
    # Space was created from; None for a Space recorded before this table existed.
    address: Mapped[str | None] = mapped_column(sa.Text)
    paid: Mapped[int] = mapped_column(sa.BigInteger)
