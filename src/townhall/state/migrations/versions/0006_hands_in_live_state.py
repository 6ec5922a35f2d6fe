"""Raised hands move to the live state: the raised_hands table goes.

A raised hand is the audience asking, minutes long, raised and lowered by thousands in a busy
Space; it is live state (state/live.py), not a durable record. Hands up when this runs are dropped:
the listener pages raise them again on their next click.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("raised_hands")


def downgrade() -> None:
    op.create_table(
        "raised_hands",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("space_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("raised_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raised_hands")),
        sa.UniqueConstraint("space_id", "user_id", name=op.f("uq_raised_hands_space_id_user_id")),
        sa.ForeignKeyConstraint(
            ["space_id"],
            ["spaces.id"],
            name=op.f("fk_raised_hands_space_id_spaces"),
            ondelete="CASCADE",
        ),
    )
