"""Reminders that arrive: an email address and a 10-minute warning per reminder, and the mail outbox.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-03

Written out by hand, enum values listed literally (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(64)
ENUM_LEN = 16


def upgrade() -> None:
    # SQLite cannot add a column with a CHECK to a table in place: batch mode rebuilds it.
    with op.batch_alter_table("reminders", recreate="always") as batch:
        batch.add_column(sa.Column("email", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column(
                "soon",
                sa.Boolean(create_constraint=True, name=op.f("ck_reminders_soon")),
                server_default=sa.false(),
                nullable=False,
            )
        )

    op.create_table(
        "reminder_mail",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("space_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "starting",
                "soon",
                "changed",
                "cancelled",
                name=op.f("ck_reminder_mail_kind"),
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
                name=op.f("ck_reminder_mail_status"),
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminder_mail")),
        sa.ForeignKeyConstraint(
            ["space_id"],
            ["spaces.id"],
            name=op.f("fk_reminder_mail_space_id_spaces"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "space_id", "user_id", "key", name=op.f("uq_reminder_mail_space_id_user_id_key")
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_reminder_mail_attempts_range")),
    )
    op.create_index(
        op.f("ix_reminder_mail_status_next_attempt_at"),
        "reminder_mail",
        ["status", "next_attempt_at"],
    )


def downgrade() -> None:
    op.drop_table("reminder_mail")
    with op.batch_alter_table("reminders", recreate="always") as batch:
        batch.drop_column("soon")
        batch.drop_column("email")
