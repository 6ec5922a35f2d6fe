"""A reminder of a private Space keeps the invite code the person showed when they asked, so its
link can open the Space for them while that code is still the Space's own (reminder_links.py).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

Written out by hand (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable and without a constraint: SQLite adds it in place, no table rebuild.
    op.add_column("reminders", sa.Column("invite_code", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reminders") as batch:
        batch.drop_column("invite_code")
