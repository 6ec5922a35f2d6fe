"""Invite links as records: use limit, expiry, uses, revocation; who used them; who is barred.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

Stage invite links were signed tokens only; now a token names one of these rows, and the row
decides (spaces/invite_links.py). Links minted before this revision name no row and stop working.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "invite_links",
        sa.Column("id", ID, nullable=False),
        sa.Column("space_id", ID, nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "host",
                "cohost",
                "speaker",
                "listener",
                name=op.f("ck_invite_links_role"),
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("max_uses", sa.Integer(), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("created_by", ID, nullable=False),
        sa.Column("created_by_name", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invite_links")),
        sa.ForeignKeyConstraint(
            ["space_id"],
            ["spaces.id"],
            name=op.f("fk_invite_links_space_id_spaces"),
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "role IN ('cohost', 'speaker')", name=op.f("ck_invite_links_role_invitable")
        ),
        sa.CheckConstraint("max_uses >= 1", name=op.f("ck_invite_links_max_uses_range")),
        sa.CheckConstraint(
            "uses >= 0 AND uses <= max_uses", name=op.f("ck_invite_links_uses_range")
        ),
    )
    op.create_index(
        op.f("ix_invite_links_space_id_created_at"), "invite_links", ["space_id", "created_at"]
    )
    op.create_table(
        "invite_link_uses",
        sa.Column("link_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("link_id", "user_id", name=op.f("pk_invite_link_uses")),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["invite_links.id"],
            name=op.f("fk_invite_link_uses_link_id_invite_links"),
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "invite_link_bars",
        sa.Column("space_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("barred_by", ID, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("space_id", "user_id", name=op.f("pk_invite_link_bars")),
        sa.ForeignKeyConstraint(
            ["space_id"],
            ["spaces.id"],
            name=op.f("fk_invite_link_bars_space_id_spaces"),
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("invite_link_bars")
    op.drop_table("invite_link_uses")
    op.drop_index(op.f("ix_invite_links_space_id_created_at"), table_name="invite_links")
    op.drop_table("invite_links")
