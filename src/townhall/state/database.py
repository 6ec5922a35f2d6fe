"""The SQL database under the durable records: the engine, its sessions, and the migrations.

`create_engine(url)` sets an engine up the way the records need it (on SQLite: WAL, foreign keys,
a busy timeout and our own BEGIN; on PostgreSQL: the asyncpg driver and a small, bounded pool);
`migrate(engine)` brings the schema to the newest Alembic revision; `SqlStore` is the base of every repository over the engine (records.py, webhook_outbox.py):
one read and one write session factory, every method one transaction.

Transactions. Writes take the database's write lock up front — `BEGIN IMMEDIATE` on SQLite, so a
read-check-write sequence cannot interleave with another process's and never fails half-way on a
lock upgrade. Reads run in a plain transaction; in SQLite's WAL mode they never wait for a writer,
and a writer waits for another writer for up to `busy_timeout_s` rather than failing.

Connections. Each process keeps a pool of `pool_size` connections and opens up to `max_overflow`
more under a burst; a transaction that finds none free within `pool_timeout_s` fails (sqlalchemy's
TimeoutError) rather than queueing without end. PostgreSQL serves 100 connections by default
(3 kept for superusers): the defaults, 3 + 1 per process, let 20 single-process nodes share one
server with room for an operator's psql and a migration's lock connection.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, CursorResult, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from townhall.config import make_private_dir
from townhall.state.wakeup import BELLS_KEY, Bells, RingingSession

__all__ = [
    "DEFAULT_BUSY_TIMEOUT_S",
    "DEFAULT_MAX_OVERFLOW",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_POOL_TIMEOUT_S",
    "MIGRATIONS_DIR",
    "NO_SYNC",
    "SqlStore",
    "alembic_config",
    "create_engine",
    "driver_url",
    "migrate",
    "rowcount",
]

MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")
DEFAULT_BUSY_TIMEOUT_S: Final = 5.0
DEFAULT_POOL_SIZE: Final = 3
DEFAULT_MAX_OVERFLOW: Final = 1
DEFAULT_POOL_TIMEOUT_S: Final = 5.0
# Arbitrary constant key of the PostgreSQL advisory lock that serialises migrations.
_PG_MIGRATION_LOCK: Final = 7_486_803_001
# Execution option marking a session whose transactions write (see _sqlite_begin).
_WRITES: Final = "townhall_writes"

# Our sessions hold no objects across statements: bulk UPDATE/DELETE need not sync any.
NO_SYNC: Final = {"synchronize_session": False}


# The async driver each database is reached through; a URL naming no driver (`postgresql://…`, as
# operators write it) gets this one.
_DRIVERS: Final = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}


def driver_url(url: str) -> str:
    """`url` with the async driver townhall ships for its database: `postgresql://…` and
    `postgres://…` become `postgresql+asyncpg://…`, `sqlite:///…` becomes `sqlite+aiosqlite:///…`.

    Raises ValueError for a database other than SQLite or PostgreSQL, or another driver (a sync
    one such as psycopg2 cannot serve the async engine, and only asyncpg is a dependency).
    """
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        raise ValueError(f"cannot read the database URL {_redacted(url)!r}") from None
    backend = "postgresql" if parsed.get_backend_name() == "postgres" else parsed.get_backend_name()
    driver = _DRIVERS.get(backend)
    if driver is None:
        raise ValueError(f"the database must be SQLite or PostgreSQL, not {backend!r}")
    if "+" in parsed.drivername and parsed.get_driver_name() != driver:
        raise ValueError(
            f"{parsed.drivername}:// is not supported: use {backend}:// (townhall uses {driver})"
        )
    return parsed.set(drivername=f"{backend}+{driver}").render_as_string(hide_password=False)


def _redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}…@{rest.rpartition('@')[2]}" if "@" in rest else url


def _private_file(path: Path) -> None:
    """Make the SQLite file readable by its owner only (it holds password hashes) before SQLite
    opens it; SQLite gives its -wal, -shm and journal files the same mode. A file from before
    this rule (0644) is tightened. Its directory, if made here, is the owner's only too."""
    make_private_dir(path.parent)
    try:
        os.close(
            os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        )  # empty: a new database
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)


def create_engine(
    url: str,
    *,
    busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    pool_size: int = DEFAULT_POOL_SIZE,
    max_overflow: int = DEFAULT_MAX_OVERFLOW,
    pool_timeout_s: float = DEFAULT_POOL_TIMEOUT_S,
) -> AsyncEngine:
    """An engine set up for the records, with a bounded pool (see Connections above).

    On SQLite: WAL, foreign keys, a busy timeout and our BEGIN; the parent directory is created if
    needed; `:memory:` is not supported (every pooled connection would see its own empty
    database). On PostgreSQL: connections are checked before use (a restarted server costs one
    failed ping, not a failed request) and sessions run in UTC.
    """
    parsed = make_url(driver_url(url))
    pool: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_timeout": pool_timeout_s,
    }
    if parsed.get_backend_name() != "sqlite":
        return _create_async_engine(
            parsed,
            pool_pre_ping=True,
            # Nothing stores a timestamp type (times are UNIX seconds), but now() and logs should
            # not depend on the server's zone.
            connect_args={"server_settings": {"timezone": "UTC"}},
            **pool,
        )
    if parsed.database and parsed.database != ":memory:":
        _private_file(Path(parsed.database))
    engine = _create_async_engine(parsed, **pool)
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
    # ConfigParser escaping
    config.set_main_option("sqlalchemy.url", driver_url(url).replace("%", "%%"))
    return config


def _upgrade(connection: Connection, config: Config) -> tuple[str, ...]:
    """`alembic upgrade head` inside the caller's transaction; returns the revisions applied."""
    applied: list[str] = []

    def on_version_apply(*, step: Any, **_: Any) -> None:
        applied.append(str(step.up_revision_id))

    config.attributes["connection"] = connection
    config.attributes["on_version_apply"] = on_version_apply
    command.upgrade(config, "head")
    return tuple(applied)


async def migrate(engine: AsyncEngine) -> tuple[str, ...]:
    """Bring the engine's database schema to head; returns the revisions applied (empty: it was current).

    Safe when several processes open the same database at once: exactly one of them applies a
    migration and the others wait, then find it done. On SQLite the migration's transaction
    holds the database's write lock (BEGIN IMMEDIATE). On PostgreSQL one connection takes a
    session-level advisory lock, runs the migration in its own transaction, then lets go: the lock
    spans the whole upgrade whatever a migration does with transactions, and the server drops it
    with the session if the process dies half-way.
    """
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    if engine.dialect.name != "postgresql":
        async with writer(engine).begin() as connection:
            return await connection.run_sync(_upgrade, config)
    async with engine.connect() as connection:
        await connection.exec_driver_sql(f"SELECT pg_advisory_lock({_PG_MIGRATION_LOCK})")
        await connection.commit()
        try:
            async with connection.begin():
                return await connection.run_sync(_upgrade, config)
        finally:
            if not connection.invalidated:
                await connection.exec_driver_sql(f"SELECT pg_advisory_unlock({_PG_MIGRATION_LOCK})")
                await connection.commit()


# --- the base of the repositories ------------------------------------------------------------


def insert_or_skip(session: AsyncSession, table: type[Any]) -> Any:
    """An INSERT into `table` in the session's dialect, which has `.on_conflict_do_nothing()`
    (the same clause on SQLite and PostgreSQL, each with its own insert construct)."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def rowcount(result: sa.Result[Any]) -> int:
    """How many rows an UPDATE or DELETE touched."""
    assert isinstance(result, CursorResult)  # DML statements always give one
    return result.rowcount


class SqlStore:
    """A repository over one engine: `_read()` and `_write.begin()` open one transaction each."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._read = async_sessionmaker(engine, expire_on_commit=False)
        self._writer = writer(engine)  # for Core statements where a session's work is not needed
        # Commits of the write sessions ring the bells of the work they queued (state/wakeup.py).
        self.bells = Bells()
        self._write = async_sessionmaker(
            self._writer,
            expire_on_commit=False,
            sync_session_class=RingingSession,
            info={BELLS_KEY: self.bells},
        )

    async def close(self) -> None:
        await self.engine.dispose()
