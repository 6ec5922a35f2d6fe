"""Spaces get a `captions` flag: the host's choice of live captions (off for every existing one).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: rebuilding `spaces` (batch mode) would cascade deletes
    # into every table that references it on SQLite, and cannot drop its key on PostgreSQL.
    # SQLite's ALTER cannot add the CHECK that keeps its integer boolean to 0/1 (PostgreSQL's is a
    # real boolean): the records layer only ever writes a bool there.
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.add_column(
        "spaces",
        sa.Column(
            "captions",
            sa.Boolean(create_constraint=not sqlite, name=op.f("ck_spaces_captions")),
            server_default=sa.false(),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("spaces", "captions")
