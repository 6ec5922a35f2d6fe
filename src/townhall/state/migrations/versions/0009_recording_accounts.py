"""Recording accounts: what each recorded Space's recording has been paid for, and the address
it was created from, so that every media node charges the same account (and the address too).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

Written out by hand (see 0001). Spaces recorded before this revision have no row: the media node
opens one for them when it first charges (their first hour paid, no address known).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "recording_accounts",
        sa.Column("space_id", ID, nullable=False),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("paid", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("paid >= 0", name=op.f("ck_recording_accounts_paid_range")),
        sa.ForeignKeyConstraint(
            ["space_id"],
            ["spaces.id"],
            name=op.f("fk_recording_accounts_space_id_spaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("space_id", name=op.f("pk_recording_accounts")),
    )


def downgrade() -> None:
    op.drop_table("recording_accounts")
