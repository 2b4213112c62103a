"""Engines, and what differs between SQLite and PostgreSQL.

Every connection runs in autocommit: the store's decisions are single
compare-and-set statements, except the few that read before they write
(capacity, ports, the pool claim). Those run in `decision()`, which
serialises them across processes and hosts:

- SQLite: `BEGIN IMMEDIATE` takes the file's write lock up front.
- PostgreSQL: a transaction-scoped advisory lock per launcher domain
  (`pg_advisory_xact_lock`). Row locks (`FOR UPDATE SKIP LOCKED`) would do
  for taking one pool entry, but a capacity check counts rows, and the rows
  that would break it are the ones not inserted yet: no row lock covers
  them under READ COMMITTED. One lock per domain makes count-then-insert
  atomic, costs one round trip, and is released by COMMIT or by the
  server when the connection dies.
"""
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
import os
import sqlite3
import sys
import threading
from typing import Any
import zlib

import sqlalchemy as sa
from sqlalchemy import event, exc

from . import session_views

# Two-key advisory locks: (class, crc32 of the domain); classes keep the uses apart.
CAPACITY_LOCK, LEADER_LOCK, MIGRATION_LOCK, WEBHOOK_LOCK = 7301, 7302, 7303, 7304


class StoreUnavailable(Exception):
    """An operational fault of the database: locked, read-only, unreachable, gone."""


def database_url(config: Mapping[str, Any]) -> str:
    """DATABASE_URL, else DATABASE_PATH as a SQLite file."""
    url = config.get("DATABASE_URL") or ""
    if url:
        return url
    return "sqlite:///" + os.path.abspath(config["DATABASE_PATH"])


def as_url(target: str) -> str:
    """A URL from a URL or a SQLite file path (tests and tools pass paths)."""
    return target if "://" in str(target) else "sqlite:///" + os.path.abspath(target)


def is_sqlite(url: str) -> bool:
    return sa.engine.make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> str | None:
    return sa.engine.make_url(url).database if is_sqlite(url) else None


def describe(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


# SQLite's primary result codes for faults of the file or its host: busy or
# locked, read-only, permission, I/O, damaged, full, cannot open, not a
# database. Its OperationalError also carries SQLITE_ERROR (1: a syntax
# error, a missing table), which is our bug.
SQLITE_FAULTS = {3, 5, 6, 8, 10, 11, 13, 14, 15, 26}


def operational(err: BaseException | None) -> bool:
    """Whether a database error is a fault of the database (503), not of our code (500).
    Takes SQLAlchemy's wrapped errors and the drivers' own (from `Prepared`)."""
    if isinstance(err, exc.TimeoutError):       # no connection free in the pool
        return True
    if isinstance(err, exc.DBAPIError):
        return err.connection_invalidated or operational(err.orig)
    if isinstance(err, sqlite3.Error):
        code = getattr(err, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in SQLITE_FAULTS
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(err, (psycopg.OperationalError, psycopg.InterfaceError))


def disconnected(engine: sa.Engine, err: BaseException | None, connection: sa.Connection | None) -> bool:
    """Whether the error means the connection (or the server) is gone."""
    if isinstance(err, exc.DBAPIError):
        if err.connection_invalidated:
            return True
        err = err.orig
    try:
        raw = connection.connection.dbapi_connection if connection is not None else None
    except exc.SQLAlchemyError:
        return True     # SQLAlchemy already found it dead and invalidated it
    return isinstance(err, engine.dialect.loaded_dbapi.Error) and engine.dialect.is_disconnect(err, raw, None)


class Prepared:
    """A Core SELECT compiled once per dialect and run on the driver's own cursor.

    For the reads every request makes (its token, its session): SQLAlchemy's
    execution machinery costs several times the query itself on SQLite, which
    was most of the API's overhead (BENCHMARKS.md, figure 4). The statement is
    still Core, and values still pass through the columns' own result
    processors; errors are the driver's (see `operational`).
    """

    def __init__(self, statement):
        self.statement = statement
        self._compiled = {}

    def _for(self, dialect):
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            c = self.statement.compile(dialect=dialect)
            compiled = self._compiled[dialect.name] = [c.string, list(c.positiontup) if c.positional else None,
                                                       None]
        return compiled

    def _columns(self, dialect, description):
        # The processors depend on the types the driver reports: known after a first run.
        return [(column.key, column.type.dialect_impl(dialect).result_processor(dialect, described[1]))
                for column, described in zip(self.statement.selected_columns, description, strict=True)]

    def first(self, connection: sa.Connection, **params: Any) -> dict[str, Any] | None:
        """The first row as a dict, or None."""
        compiled = self._for(connection.dialect)
        sql, names, columns = compiled
        cursor = connection.connection.cursor()
        try:
            cursor.execute(sql, [params[n] for n in names] if names is not None else params)
            row = cursor.fetchone()
            if columns is None:
                columns = compiled[2] = self._columns(connection.dialect, cursor.description)
        finally:
            cursor.close()
        if row is None:
            return None
        return {key: process(value) if process else value for (key, process), value in zip(columns, row, strict=True)}


_engines: dict = {}
_engines_lock = threading.Lock()


def engine_for(url: str, busy_timeout: float = 5.0) -> sa.Engine:
    """One engine (and connection pool) per URL, busy timeout and process: a
    pool must not cross a fork, and a store asking for another timeout gets it."""
    key = (url, busy_timeout, os.getpid())
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = _create_engine(url, busy_timeout)
        return engine


SQLITE_CACHE_KIB = 512


def _create_engine(url, busy_timeout):
    if is_sqlite(url):
        path = sqlite_path(url)
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_size=4, max_overflow=64,
                                  pool_reset_on_return=None,
                                  connect_args={"timeout": busy_timeout, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):
            # WAL is a property of the file (set when the schema is made); this is per connection.
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")
            # Each worker thread keeps its connection (Store.end_request), and
            # each connection its own page cache (SQLite's default: up to 2 MB):
            # bounded here, it is what the hot lookups need; the rest is read
            # from the OS's file cache.
            dbapi_connection.execute("PRAGMA cache_size=-%d" % SQLITE_CACHE_KIB)
        return engine
    # No pre-ping (a round trip per checkout): Store._run replaces the pool
    # when it finds a connection the server dropped. A server connection costs
    # a backend process to open: kept for each of a worker's busy threads (16
    # by default) rather than opened and closed per request above 4.
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_size=16, max_overflow=32,
                              pool_reset_on_return=None,
                              connect_args={"connect_timeout": max(1, int(busy_timeout))})
    session_views.announce_own_writes(engine)
    return engine


def dispose_all() -> None:
    session_views.stop_all()        # its listeners hold connections of their own
    with _engines_lock:
        for (_url, _timeout, pid), engine in list(_engines.items()):
            if pid == os.getpid():
                engine.dispose()
            del _engines[(_url, _timeout, pid)]


def lock_key(domain: str) -> int:
    # pg advisory keys are signed int4 pairs.
    return zlib.crc32(domain.encode()) - 2**31


@contextmanager
def transaction(connection: sa.Connection) -> Iterator[None]:
    """One transaction on an autocommit connection: all of it or none. SQLite
    takes its write lock up front (BEGIN IMMEDIATE: a read followed by a write
    never fails halfway to upgrade its lock); PostgreSQL locks rows as the
    statements ask (SELECT ... FOR UPDATE)."""
    sqlite = connection.dialect.name == "sqlite"
    connection.exec_driver_sql("BEGIN IMMEDIATE" if sqlite else "BEGIN")
    try:
        yield
    except BaseException:
        try:
            connection.exec_driver_sql("ROLLBACK")
        except exc.DBAPIError:
            pass        # the connection is gone; so is its transaction
        raise
    else:
        connection.exec_driver_sql("COMMIT")


@contextmanager
def decision(connection: sa.Connection, domain: str) -> Iterator[None]:
    """A transaction no other process or host can interleave with, for `domain`."""
    with transaction(connection):
        if connection.dialect.name != "sqlite":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:c, :k)"),
                               {"c": CAPACITY_LOCK, "k": lock_key(domain)})
        yield
