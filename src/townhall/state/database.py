"""The SQL database under the durable records: the engine, its sessions, and the migrations.

`create_engine(url)` sets an engine up the way the records need it (on SQLite: WAL, foreign keys,
a busy timeout and our own BEGIN); `migrate(engine, url)` brings the schema to the newest Alembic
revision; `SqlStore` is the base of every repository over the engine (records.py, webhook_outbox.py):
one read and one write session factory, every method one transaction.

Transactions. Writes take the database's write lock up front — `BEGIN IMMEDIATE` on SQLite, so a
read-check-write sequence cannot interleave with another process's and never fails half-way on a
lock upgrade. Reads run in a plain transaction; in SQLite's WAL mode they never wait for a writer,
and a writer waits for another writer for up to `busy_timeout_s` rather than failing.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, CursorResult, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

__all__ = [
    "DEFAULT_BUSY_TIMEOUT_S",
    "MIGRATIONS_DIR",
    "NO_SYNC",
    "SqlStore",
    "alembic_config",
    "create_engine",
    "migrate",
    "rowcount",
]

MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")
DEFAULT_BUSY_TIMEOUT_S: Final = 5.0
# Arbitrary constant key of the PostgreSQL advisory lock that serialises migrations.
_PG_MIGRATION_LOCK: Final = 7_486_803_001
# Execution option marking a session whose transactions write (see _sqlite_begin).
_WRITES: Final = "townhall_writes"

# Our sessions hold no objects across statements: bulk UPDATE/DELETE need not sync any.
NO_SYNC: Final = {"synchronize_session": False}


def create_engine(url: str, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> AsyncEngine:
    """An engine set up for the records: on SQLite, WAL, foreign keys, a busy timeout and our BEGIN.

    SQLite: the parent directory is created if needed; `:memory:` is not supported (every pooled
    connection would see its own empty database).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return _create_async_engine(url, pool_pre_ping=True)
    if parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = _create_async_engine(url)
    busy_ms = round(busy_timeout_s * 1000)

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Python's sqlite3 would BEGIN lazily and never for DDL; we emit BEGIN ourselves instead
        # (_sqlite_begin), which makes migrations transactional and lets writers BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")  # before anything that may lock
            cursor.execute("PRAGMA foreign_keys = ON")
            # WAL: readers never block the writer nor it them; it is a property of the file and
            # sticks. NORMAL sync is safe with WAL (no corruption; a power cut may lose the last
            # commits, a process crash loses nothing).
            _switch_to_wal(cursor, busy_timeout_s)
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    sa.event.listen(engine.sync_engine, "connect", on_connect)
    sa.event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def _switch_to_wal(cursor: Any, within_s: float) -> None:
    """Switching a new file to WAL needs it to itself, and SQLite answers "database is locked" at
    once (no busy handler) while a second process opens it too: retry, bounded by the timeout."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)  # a retry interval on a connecting thread, not synchronisation


def _sqlite_begin(connection: Connection) -> None:
    writes = connection.get_execution_options().get(_WRITES, False)
    # IMMEDIATE takes the write lock now (waiting up to busy_timeout), so a transaction that reads
    # before it writes cannot be refused later with SQLITE_BUSY when it tries to upgrade.
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


def writer(engine: AsyncEngine) -> AsyncEngine:
    """The same engine, its transactions marked as writing (BEGIN IMMEDIATE on SQLite)."""
    return engine.execution_options(**{_WRITES: True})


# --- migrations ------------------------------------------------------------------------------


def alembic_config(url: str) -> Config:
    """Alembic's Config for the packaged migrations, built in code: no alembic.ini needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # ConfigParser escaping
    return config


def _upgrade(connection: Connection, config: Config) -> tuple[str, ...]:
    """`alembic upgrade head` inside the caller's transaction; returns the revisions applied."""
    if connection.dialect.name == "postgresql":
        # Two processes starting at once: the second waits here, then finds the schema current.
        # (On SQLite the caller's BEGIN IMMEDIATE already is that lock.)
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
    applied: list[str] = []

    def on_version_apply(*, step: Any, **_: Any) -> None:
        applied.append(str(step.up_revision_id))

    config.attributes["connection"] = connection
    config.attributes["on_version_apply"] = on_version_apply
    command.upgrade(config, "head")
    return tuple(applied)


async def migrate(engine: AsyncEngine, url: str) -> tuple[str, ...]:
    """Bring the schema at `url` to head; returns the revisions applied (empty: it was current).

    Safe when several processes open the same database at once: the migration runs in one
    transaction holding the write lock (SQLite) or an advisory lock (PostgreSQL), so exactly one
    of them applies it and the others find it done.
    """
    async with writer(engine).begin() as connection:
        return await connection.run_sync(_upgrade, alembic_config(url))


# --- the base of the repositories ------------------------------------------------------------


def rowcount(result: sa.Result[Any]) -> int:
    """How many rows an UPDATE or DELETE touched."""
    assert isinstance(result, CursorResult)  # DML statements always give one
    return result.rowcount


class SqlStore:
    """A repository over one engine: `_read()` and `_write.begin()` open one transaction each."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._read = async_sessionmaker(engine, expire_on_commit=False)
        self._write = async_sessionmaker(writer(engine), expire_on_commit=False)

    async def close(self) -> None:
        await self.engine.dispose()
