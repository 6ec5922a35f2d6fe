"""Alembic environment for townhall's records; there is no alembic.ini.

`townhall.state.database.migrate` runs `upgrade head` programmatically: it builds the Config
with `alembic_config(url)` and hands over an open connection, already inside the transaction that
holds the migration lock, in `config.attributes["connection"]`. The migration then runs in that
transaction and commits (or rolls back) with it.

For writing a new migration, call Alembic's command API with the same config, e.g.
`alembic.command.revision(alembic_config(url), message="…", autogenerate=True)`: without a
connection this file opens its own, through the same engine setup the app uses.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from townhall.state.database import create_engine
from townhall.state.schema import Base

config = context.config


def _run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite can ALTER almost nothing; batch mode rebuilds the table when a migration asks.
        render_as_batch=True,
        on_version_apply=config.attributes.get("on_version_apply"),
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_url(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_with)
            await connection.commit()
    finally:
        await engine.dispose()


def _run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=Base.metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
elif (shared := config.attributes.get("connection")) is not None:
    _run_with(shared)
else:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass a connection or set sqlalchemy.url")
    asyncio.run(_run_with_url(url))
