"""Web Push reminders: a push choice per reminder, the browsers that accept pushes, and the push
outbox.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

Written out by hand, enum values listed literally (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(64)
ENUM_LEN = 16


def upgrade() -> None:
    # SQLite cannot add a column with a CHECK to a table in place: batch mode rebuilds it.
    with op.batch_alter_table("reminders", recreate="always") as batch:
        batch.add_column(
            sa.Column(
                "push",
                sa.Boolean(create_constraint=True, name=op.f("ck_reminders_push")),
                server_default=sa.false(),
                nullable=False,
            )
        )

    op.create_table(
        "push_subscriptions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("p256dh", sa.String(88), nullable=False),
        sa.Column("auth", ID, nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_subscriptions")),
        sa.UniqueConstraint("endpoint", name=op.f("uq_push_subscriptions_endpoint")),
    )
    op.create_index(op.f("ix_push_subscriptions_user_id"), "push_subscriptions", ["user_id"])

    op.create_table(
        "reminder_push",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("space_id", ID, nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "starting",
                "soon",
                "changed",
                "cancelled",
                name=op.f("ck_reminder_push_kind"),
                native_enum=False,
                create_constraint=True,
                length=ENUM_LEN,
            ),
            nullable=False,
        ),
        sa.Column("key", ID, nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "delivered",
                "failed",
                name=op.f("ck_reminder_push_status"),
                native_enum=False,
                create_constraint=True,
                length=ENUM_LEN,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("next_attempt_at", sa.Double(), nullable=False),
        sa.Column("lease_until", sa.Double(), nullable=True),
        sa.Column("lease_token", ID, nullable=True),
        sa.Column("delivered_at", sa.Double(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminder_push")),
        sa.ForeignKeyConstraint(
            ["space_id"],
            ["spaces.id"],
            name=op.f("fk_reminder_push_space_id_spaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["push_subscriptions.id"],
            name=op.f("fk_reminder_push_subscription_id_push_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "subscription_id",
            "space_id",
            "key",
            name=op.f("uq_reminder_push_subscription_id_space_id_key"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_reminder_push_attempts_range")),
    )
    op.create_index(
        op.f("ix_reminder_push_status_next_attempt_at"),
        "reminder_push",
        ["status", "next_attempt_at"],
    )
    op.create_index(op.f("ix_reminder_push_space_id"), "reminder_push", ["space_id"])


def downgrade() -> None:
    op.drop_table("reminder_push")
    op.drop_table("push_subscriptions")
    with op.batch_alter_table("reminders", recreate="always") as batch:
        batch.drop_column("push")
