"""Which of the storage drivers' errors mean "the store is unreachable: try again shortly".

The state layer lets these propagate unchanged (no wrapping at every call); the API maps them to
503 + Retry-After in its one error seam (api/errors.py), and the event outbox (state/outbox.py)
holds an event when its append fails with one of them.

    redis-py     ConnectionError   refused, reset, pool exhausted, AuthenticationError, and
                                   BusyLoadingError while a restarted server loads its data
                 TimeoutError      a socket or connect timeout
                 OutOfMemoryError, ReadOnlyError, MasterDownError, ClusterDownError,
                 TryAgainError     a reachable server saying "not now": maxmemory reached, a
                                   replica after a failover, a cluster or replica still healing
    SQLAlchemy   OperationalError  the database is down, unreachable or locked (SQLite's
                                   "database is locked" under a long writer)
                 DBAPIError        only with `connection_invalidated`: a connection lost mid-query
                 DisconnectionError, TimeoutError (its pool had no connection to give)
                 InterfaceError    asyncpg: the connection was closed under the statement
    built-in     ConnectionError   asyncpg lets a refused or reset connect through as
                 TimeoutError      ConnectionRefusedError / OSError subclasses, and a connect
                                   timeout as the built-in TimeoutError

Anything else — an IntegrityError, a Redis script error — is a bug or a conflict, not an outage,
and is left to whoever handles it (a 500 that gets logged, at worst).
"""

from __future__ import annotations

from redis import exceptions as redis_errors
from sqlalchemy import exc as sql_errors

# The classes an error handler must be registered for; `is_unavailable` then says which instances
# of them are outages (a DBAPIError is one only when its connection was lost).
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.OutOfMemoryError,
    redis_errors.ReadOnlyError,
    redis_errors.MasterDownError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    sql_errors.DBAPIError,
    sql_errors.DisconnectionError,
    sql_errors.TimeoutError,
    ConnectionError,
    TimeoutError,
)


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` says a store could not be reached (worth a retry), not that a call was wrong."""
    if isinstance(exc, sql_errors.DBAPIError):
        return (
            isinstance(exc, sql_errors.OperationalError | sql_errors.InterfaceError)
            or exc.connection_invalidated
        )
    return isinstance(exc, UNAVAILABLE_ERRORS)
