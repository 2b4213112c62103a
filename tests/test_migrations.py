"""Schema versions: the first revision is the schema of the releases before
migrations, an existing file of that release upgrades without losing a row,
every revision goes down and up again on both backends, and the service
refuses a database its code was not written for."""
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
import pytest
import sqlalchemy as sa

from app.services.processes.locate import PROJECT_ROOT
from app.store import Store, schema
from app.store.tables import metadata

from .conftest import HERE

# Written by the Store of commit edfad2e (the last release before migrations):
# 2 tokens (one revoked), 4 sessions (active, terminated, failed, starting),
# a ready pool entry, a sweeper's record.
RELEASE_FILE = os.path.join(HERE, "data", "release-edfad2e.sqlite3")


def rows(path, table):
    db = sqlite3.connect(path)
    try:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM %s ORDER BY 1" % table)]
    finally:
        db.close()


@pytest.fixture
def release_copy(tmp_path):
    path = str(tmp_path / "sessions.sqlite3")
    shutil.copy(RELEASE_FILE, path)
    return path


def test_upgrading_a_file_of_the_previous_release_keeps_every_row(release_copy):
    url = "sqlite:///" + release_copy
    before = {t: rows(release_copy, t) for t in ("tokens", "sessions", "pool", "sweeps")}
    assert schema.current(url) == schema.LEGACY
    with pytest.raises(schema.SchemaMismatch, match="db upgrade"):
        schema.check(url)

    backup = schema.upgrade(url, host_id="alpha", domain="local:alpha")
    schema.check(url)
    assert _differences(url) == []
    assert rows(backup, "sessions") == before["sessions"]       # the backup is the old file, whole

    token_columns = ("scopes", "expires_at", "act_as", "note", "created_by", "last_used")     # by 0010
    after = rows(release_copy, "tokens")
    assert all(all(row[c] is None for c in token_columns) for row in after)
    assert [{k: v for k, v in row.items() if k not in token_columns} for row in after] == before["tokens"]
    for table in ("sessions", "pool"):
        after = rows(release_copy, table)
        added = ("host_id", "domain", "suspended_at", "suspend_digest", "deleted_at",     # by 0002-0004
                 "owner", "operation",                                              # by 0006
                 "cpu_seconds", "memory_bytes", "memory_peak_bytes", "usage_process",
                 "usage_process_cpu")                                               # by 0008
        assert [{k: v for k, v in r.items() if k not in added} for r in after] == before[table]
        assert all(r.get("suspended_at") is None and r.get("suspend_digest") is None for r in after)
        assert {(r["host_id"], r["domain"]) for r in after} == {("alpha", "local:alpha")}
    assert rows(release_copy, "sweeps") == [dict(before["sweeps"][0], host_id="alpha")]
    # Processes of the old release carry a hash of the file's path: still recognised.
    store = Store(url)
    try:
        assert store.service_id() == hashlib.sha256(os.path.realpath(release_copy).encode()).hexdigest()[:16]
        active = store.get_session("00000000-0000-4000-8000-000000000001")
        assert active.process.details["pid"] == 100 and active.created_at == before["sessions"][0]["created_at"]
    finally:
        store.close()


def _differences(url):
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()


def test_the_head_is_exactly_the_declared_schema_and_round_trips(database_url):
    schema.prepare(database_url, host_id="h", domain="d")
    assert schema.current(database_url) == schema.head()
    assert _differences(database_url) == []

    store = Store(database_url)
    store.add_token("f" * 64, "alice", "user")
    store.close()
    schema.downgrade(database_url, "0001")
    assert schema.current(database_url) == "0001"
    schema.upgrade(database_url, host_id="h", domain="d", backup=False)
    assert _differences(database_url) == []
    store = Store(database_url)
    assert [t.user for t in store.list_tokens()] == ["alice"]
    store.close()

    schema.downgrade(database_url, "base")
    assert schema.current(database_url) is None
    schema.prepare(database_url)
    assert schema.current(database_url) == schema.head()


def _start(env, *args):
    return subprocess.run([sys.executable, *args], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def _env(tmp_path, path):
    return dict(os.environ, APP_ENV="testing", DATABASE_PATH=path, WORKSPACE_ROOT=str(tmp_path / "w"),
                LOG_LEVEL="WARNING")


def test_cli_upgrades_and_the_server_refuses_an_old_schema(tmp_path, release_copy):
    env = _env(tmp_path, release_copy)
    refused = _start(env, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-w", "1", "--bind",
                     "127.0.0.1:0", "wsgi:app")
    assert refused.returncode != 0
    assert "older than this release" in refused.stderr and "flask --app wsgi db upgrade" in refused.stderr

    flask = ["-m", "flask", "--app", "wsgi", "db"]
    assert "revision 0001; this release: %s" % schema.head() in _start(env, *flask, "current").stdout
    upgraded = _start(env, *flask, "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "backed up %s to %s.backup-" % (release_copy, release_copy) in upgraded.stdout
    assert "revision %s; this release: %s" % ((schema.head(),) * 2) in _start(env, *flask, "current").stdout


def test_a_schema_newer_than_the_code_is_refused(tmp_path):
    path = str(tmp_path / "s.sqlite3")
    url = "sqlite:///" + path
    schema.prepare(url)
    db = sqlite3.connect(path)
    db.execute("UPDATE alembic_version SET version_num = '9999'")
    db.commit()
    db.close()
    with pytest.raises(schema.SchemaMismatch, match="newer than this release knows"):
        schema.check(url)
    refused = _start(_env(tmp_path, path), "-m", "gunicorn", "-c", "gunicorn.conf.py", "-w", "1",
                     "--bind", "127.0.0.1:0", "wsgi:app")
    assert refused.returncode != 0 and "9999, newer than this release knows" in refused.stderr


def test_instances_starting_together_on_an_empty_database_create_it_once(database_url):
    import threading
    errors, barrier = [], threading.Barrier(4)

    def start():
        barrier.wait()
        try:
            schema.prepare(database_url, host_id="h", domain="d")
        except Exception as err:
            errors.append(err)
    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert schema.current(database_url) == schema.head()
    store = Store(database_url)
    assert store.service_id()
    store.close()
