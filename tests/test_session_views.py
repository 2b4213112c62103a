"""Session rows kept for views on PostgreSQL (store/session_views.py): what a
view shows is told of every change — made by this process, by another
process or host, or by hand in the database — and never older than
SESSION_VIEW_CACHE_SECONDS, even when the notices stop. Real PostgreSQL, real
trigger and LISTEN; the clock is injected so that only a notice can explain a
change seen before the bound."""
import os
import time

import psycopg
import pytest

from app.store import SessionRecord, Store
from app.store.session_views import APPLICATION_NAME

from .conftest import wait_until

BOUND = 2.0


@pytest.fixture
def views(postgres_url):
    Store(postgres_url).init_schema()
    store = Store(postgres_url, view_seconds=BOUND)
    now = time.time()
    store.insert_session(SessionRecord(id="s1", user="u", label=None, status="starting", created_at=now,
                                       last_activity=now, idle_timeout=60, max_lifetime=600,
                                       workspace="/nowhere", host_id="h1", domain="local:test"), 10, 10)
    clock = [1000.0]
    store._views._clock = lambda: clock[0]
    # Served once the listener has proven its connection (it starts with the first view).
    wait_until(lambda: store.get_session("s1", view=True) and store._views.get("s1"), 10, message="a kept row")
    elsewhere = psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    try:
        yield store, elsewhere, clock
    finally:
        elsewhere.close()
        store.close()


def _status(store):
    record = store.get_session("s1", view=True)
    return record and record.status


def test_a_view_is_told_of_a_change_made_elsewhere_and_is_never_older_than_the_bound(views):
    store, elsewhere, clock = views
    # Changed by another host (here: another connection, as psql or a second instance would).
    elsewhere.execute("UPDATE sessions SET status = 'active' WHERE id = 's1'")
    wait_until(lambda: _status(store) == "active", 5, interval=0.005, message="the notice")
    # Without the notice the kept row is what a view shows (a decision reads the row) ...
    elsewhere.execute("ALTER TABLE sessions DISABLE TRIGGER sessions_changed")
    elsewhere.execute("UPDATE sessions SET status = 'suspended' WHERE id = 's1'")
    time.sleep(0.2)     # long past any notice: none comes
    assert _status(store) == "active"
    assert store.get_session("s1").status == "suspended"
    # ... until the bound, not beyond it.
    clock[0] += BOUND
    assert _status(store) == "suspended"
    # A TRUNCATE (no row triggers) forgets every row.
    elsewhere.execute("ALTER TABLE sessions ENABLE TRIGGER sessions_changed")
    wait_until(lambda: _status(store) == "suspended" and store._views.get("s1"), 5, message="kept again")
    elsewhere.execute("TRUNCATE sessions")
    wait_until(lambda: _status(store) is None, 5, interval=0.005, message="the TRUNCATE notice")


def test_this_processs_own_writes_are_seen_at_once(views, postgres_url):
    store, _elsewhere, _clock = views
    other_thread_store = Store(postgres_url, view_seconds=BOUND)      # each thread has its own handle
    try:
        assert other_thread_store.get_session("s1", view=True).status == "starting"
        assert not store.transition("s1", ["active"], "suspended")     # changed nothing: nothing forgotten
        assert store._views.get("s1")
        assert store.transition("s1", ["starting"], "active")
        assert other_thread_store.get_session("s1", view=True).status == "active"      # no notice waited for
    finally:
        other_thread_store.close()


def test_a_write_by_another_worker_of_the_host_is_seen_at_once_without_its_notice(views, postgres_url):
    """The host's mark: a worker forked from the same parent (as gunicorn's
    are) writes; the kept row is not served by the next read, though the
    notice is switched off."""
    store, elsewhere, _clock = views
    elsewhere.execute("ALTER TABLE sessions DISABLE TRIGGER sessions_changed")
    assert _status(store) == "starting" and store._views.get("s1")
    child = os.fork()
    if child == 0:      # the other worker
        try:
            os._exit(0 if Store(postgres_url).transition("s1", ["starting"], "active") else 1)
        except BaseException:
            os._exit(2)
    assert os.waitpid(child, 0)[1] == 0
    assert _status(store) == "active"


def test_a_row_read_while_a_notice_came_is_not_kept(views):
    store, _elsewhere, _clock = views
    kept = store._views
    row = dict(kept.get("s1"))
    kept.changed()
    epoch = kept.epoch("s1")
    kept.changed("s1")                          # told of a change while the row was being read
    kept.put("s1", row, epoch)
    assert kept.get("s1") is None
    kept.put("s1", row, kept.epoch("s1"))
    assert kept.get("s1") == row


def test_nothing_kept_is_served_while_the_listener_is_lost(views, postgres_url):
    store, elsewhere, _clock = views
    elsewhere.execute("ALTER TABLE sessions DISABLE TRIGGER sessions_changed")
    elsewhere.execute("UPDATE sessions SET status = 'active' WHERE id = 's1'")
    assert _status(store) == "starting"         # kept (no notice)
    elsewhere.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                      (APPLICATION_NAME,))
    # The clock stands still: only the lost listener explains reading the row again.
    wait_until(lambda: _status(store) == "active", 5, interval=0.005, message="the row read again")
    # It listens again, and rows are kept again.
    wait_until(lambda: _status(store) and store._views.get("s1"), 10, message="rows kept again")


def test_the_listener_connects_with_the_urls_own_options(views, postgres_url):
    """A DATABASE_URL may carry libpq options, ours among them (application_name)."""
    _store, elsewhere, _clock = views
    store = Store(postgres_url + "&application_name=portal&connect_timeout=3", view_seconds=BOUND)
    try:
        wait_until(lambda: store.get_session("s1", view=True) and store._views.get("s1"), 10,
                   message="a kept row through the URL with options")
        names = {row[0] for row in elsewhere.execute("SELECT application_name FROM pg_stat_activity")}
        assert APPLICATION_NAME in names
    finally:
        store.close()


class _DropsListen:
    """A connection as a transaction pooler hands it out: statements work, but
    a LISTEN does not stay with it, so no notice ever comes back (while `deaf`)."""

    def __init__(self, connection, deaf):
        self._connection, self._deaf = connection, deaf

    def execute(self, query, *args):
        if self._deaf[0] and query.startswith("LISTEN"):
            return None
        return self._connection.execute(query, *args)

    def __getattr__(self, name):
        return getattr(self._connection, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._connection.close()


def test_a_listener_whose_notices_stop_coming_back_serves_nothing_and_connects_again(views, caplog):
    store, elsewhere, clock = views
    kept, connections, deaf = store._views, [], [True]
    connect = kept._connect

    def through_the_pooler():
        connections.append(_DropsListen(connect(), deaf))
        return connections[-1]
    kept._connect = through_the_pooler
    elsewhere.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                      (APPLICATION_NAME,))
    wait_until(lambda: connections, 10, message="the listener connected through the pooler")
    # Never proven on this connection: every view reads the row (no notice is needed to see a change).
    elsewhere.execute("ALTER TABLE sessions DISABLE TRIGGER sessions_changed")
    for status in ("active", "suspended"):
        elsewhere.execute("UPDATE sessions SET status = %s WHERE id = 's1'", (status,))
        assert _status(store) == status and kept.get("s1") is None
    # No proof for the bound: it says so and connects again.
    clock[0] += BOUND
    wait_until(lambda: len(connections) >= 2, 10, message="a new connection after the bound without proof")
    assert "no notice came back within" in caplog.text
    # Through a connection that keeps its LISTEN, rows are kept again.
    deaf[0] = False
    clock[0] += BOUND
    wait_until(lambda: _status(store) and kept.get("s1"), 15, message="rows kept again")
