"""Schema versions: create, check, upgrade and downgrade a database (Alembic).

A database is *empty* (no tables: the first start creates the head),
*legacy* (the tables of the releases before migrations, no version: treated
as revision 0001), or at a revision. The service runs only at the head its
code knows; `flask --app wsgi db upgrade` moves an older database there,
backing a SQLite file up first.
"""
from contextlib import contextmanager
import fcntl
import os
import shutil
import sqlite3
import time

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
import sqlalchemy as sa

from . import database

MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
LEGACY = "0001"
UPGRADE_HINT = "run `flask --app wsgi db upgrade` (SQLite files are backed up first)"


class SchemaMismatch(Exception):
    """The database is not at the revision this code was written for."""


def _config(connection=None, **attributes):
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes.update(attributes, connection=connection)
    return config


def head() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}


def _engine(url):
    # Migrations run in transactions of their own, not on the store's autocommit pool.
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def current(url: str) -> str | None:
    """None (empty), LEGACY (tables without a version) or the stored revision."""
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            return _current(connection)
    finally:
        engine.dispose()


def _current(connection):
    revision = MigrationContext.configure(connection).get_current_revision()
    if revision is None and sa.inspect(connection).has_table("sessions"):
        return LEGACY
    return revision


def check(url: str) -> None:
    """Raise SchemaMismatch, saying what to do, unless the database is at the head."""
    found, expected = current(url), head()
    if found == expected:
        return
    where = database.describe(url)
    if found is None:
        raise SchemaMismatch("%s has no schema yet: %s" % (where, UPGRADE_HINT))
    if found not in known_revisions():
        raise SchemaMismatch(
            "%s is at schema revision %s, newer than this release knows (%s): run the release "
            "that upgraded it, or downgrade it with that release's `flask --app wsgi db downgrade %s`"
            % (where, found, expected, expected))
    raise SchemaMismatch("%s is at schema revision %s, older than this release's %s: %s"
                         % (where, found, expected, UPGRADE_HINT))


def prepare(url: str, host_id: str | None = None, domain: str | None = None) -> None:
    """On start: create the head on an empty database; leave any other as it is.
    Instances starting together on one empty database create it once."""
    if database.is_sqlite(url):
        path = database.sqlite_path(url)
        assert path is not None     # `sqlite://` (a database in no file) was never supported here
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with _file_lock(url):
        # Switching a file to WAL takes its exclusive lock: one process at a time.
        if database.is_sqlite(url):
            _enable_wal(url)
        if current(url) is None:
            _run_locked(url, command.upgrade, "head", True, host_id=host_id, domain=domain)


def _enable_wal(url):
    connection = sqlite3.connect(database.sqlite_path(url))
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


def backup_sqlite(url: str) -> str | None:
    """A consistent copy of the SQLite file beside it (sqlite3's online backup)."""
    path = database.sqlite_path(url)
    if not path or not os.path.exists(path):
        return None
    target = "%s.backup-%s" % (path, time.strftime("%Y%m%d-%H%M%S"))
    source, copy = sqlite3.connect(path), sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()
    shutil.copymode(path, target)
    return target


@contextmanager
def _file_lock(url):
    """SQLite: one migration at a time on this host (its DDL is not transactional here)."""
    if not database.is_sqlite(url):
        yield
        return
    fd = os.open(database.sqlite_path(url) + ".migrate.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _run(url, action, revision, only_if_empty=False, **attributes):
    with _file_lock(url):
        _run_locked(url, action, revision, only_if_empty, **attributes)


def _run_locked(url, action, revision, only_if_empty, **attributes):
    engine = _engine(url)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # One migration at a time across hosts, until this transaction ends.
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:c, 0)"),
                                   {"c": database.MIGRATION_LOCK})
            found = _current(connection)
            if only_if_empty and found is not None:
                return          # another instance made it meanwhile
            config = _config(connection, **attributes)
            if found == LEGACY:
                command.stamp(config, LEGACY)
            action(config, revision)
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head", host_id: str | None = None, domain: str | None = None,
            backup: bool = True) -> str | None:
    """Returns the backup's path (SQLite), if one was made."""
    copy = backup_sqlite(url) if backup and database.is_sqlite(url) else None
    _run(url, command.upgrade, revision, host_id=host_id, domain=domain)
    return copy


def downgrade(url: str, revision: str) -> None:
    _run(url, command.downgrade, revision)
