"""Session rows kept for the session view, told of every change by PostgreSQL.

Why: on PostgreSQL the one round trip of a GET (the session's row) cost the
hot read a quarter of its speed on 2 cores (BENCHMARKS.md, figure 4) — the
server shares the cores, and no statement is cheaper than not asking.

How it stays true:
- Other hosts: a trigger on `sessions` (migration 0012) sends
  `NOTIFY cxs_sessions, '<id>'` in the writing transaction; each process
  listens on a connection of its own and forgets the row when told
  (PostgreSQL delivers at commit; the listener then waits its turn for
  Python's lock: BENCHMARKS.md, figure 4c). A row is kept only if nothing was
  said of it while it was read (an epoch per bucket).
- This host: a write to `sessions` by any worker forked from the same master
  changes a mark in memory they share, after its commit and before its reply;
  a kept row read before the mark changed is not served. A client's own write
  is seen by its next request, whichever worker takes it.
- If notices stop: the listener proves delivery, not only its connection (a
  notice to itself, every `_period`); rows are served only within
  SESSION_VIEW_CACHE_SECONDS of that proof and of their own reading, so
  nothing older than the bound is ever served; a listener without proof for
  the bound starts again on a new connection.

Only views use it (GET /api/sessions/<id>); every decision reads the row.
"""
import itertools
import logging
import mmap
import os
import threading
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.sql.dml import UpdateBase

log = logging.getLogger(__name__)

CHANNEL = "cxs_sessions"
EVERYTHING = "*"            # the payload of a TRUNCATE
MAX_ROWS = 4096             # ~1 KiB each; a full cache starts again empty
APPLICATION_NAME = "cxs-session-views"      # the listeners in pg_stat_activity
_BUCKETS = 256
_WROTE = "cxs_wrote_sessions"       # set on a connection that wrote sessions, until its commit is announced

# The host's mark: created at import, which the master does before it forks
# (gunicorn.conf.py on_starting), so that its workers share the page.
_host_page = mmap.mmap(-1, 8)
_host_mark = memoryview(_host_page).cast("q")
_marks = itertools.count(1)
_OPEN = {1, 2, 3}       # libpq's PQTRANS_ACTIVE, INTRANS, INERROR: a transaction is open (UNKNOWN: broken)


class SessionViews:
    def __init__(self, connect, seconds: float, clock=time.monotonic) -> None:
        self._connect = connect         # () -> an autocommit psycopg connection of its own
        self.seconds = seconds
        self._clock = clock
        self._rows: dict[str, tuple[float, int, dict[str, Any]]] = {}
        self._epochs = [0] * _BUCKETS   # bumped when a row of the bucket may have changed
        self._all = 0                   # bumped when any may have
        self._proven = float("-inf")    # when a notice last made the round trip
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # How often the listener proves delivery (and looks at _stop).
        self._period = max(0.05, min(seconds / 2, 0.5))
        self._delay = 0.1       # before the next try after a failure; doubles up to 5 s

    # Reading

    def get(self, key: str) -> dict[str, Any] | None:
        self._start()
        now = self._clock()
        entry = self._rows.get(key)
        if entry is None or now - entry[0] >= self.seconds or now - self._proven >= self.seconds \
                or entry[1] != _host_mark[0]:
            return None
        return entry[2]

    def epoch(self, key: str) -> tuple[int, int, int, float]:
        """Taken before reading a row; `put` keeps it only if it still holds."""
        return self._all, self._epochs[hash(key) % _BUCKETS], _host_mark[0], self._clock()

    def put(self, key: str, row: dict[str, Any], epoch: tuple[int, int, int, float]) -> None:
        with self._lock:
            if epoch[:2] != (self._all, self._epochs[hash(key) % _BUCKETS]):
                return      # told of a change while it was read: it may be the old row
            if len(self._rows) >= MAX_ROWS:
                self._rows.clear()
            self._rows[key] = (epoch[3], epoch[2], row)

    # Forgetting

    def changed(self, key: str = EVERYTHING) -> None:
        with self._lock:
            if key == EVERYTHING:
                self._all += 1
                self._rows.clear()
            else:
                self._epochs[hash(key) % _BUCKETS] += 1
                self._rows.pop(key, None)

    def _lost(self) -> None:
        self._proven = float("-inf")
        self.changed()

    # The listener

    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._listen, name="session-views", daemon=True)
                    self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._period + 1)     # it looks up at least that often

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with self._connect() as connection:
                    self._serve(connection)
            except Exception as err:        # the database went away: serve nothing, try again
                self._lost()
                log.warning("session view notices lost (%s); reading every view until they return", err)
                self._stop.wait(self._delay)
                self._delay = min(self._delay * 2, 5.0)
        self._lost()

    def _serve(self, connection) -> None:
        ping = "cxs_views_%d_%x" % (os.getpid(), id(self))      # this listener's own channel
        connection.execute("LISTEN " + CHANNEL)
        connection.execute("LISTEN " + ping)
        self.changed()       # anything kept before now may have missed a notice
        started = self._clock()
        while not self._stop.is_set():
            connection.execute("SELECT pg_notify(%s, '')", (ping,))
            for notice in connection.notifies(timeout=self._period):
                if notice.channel == ping:
                    self._proven, self._delay = self._clock(), 0.1
                else:
                    self.changed(notice.payload)
            if self._clock() - max(self._proven, started) >= self.seconds:
                # Logged, and tried again after a pause, on a new connection.
                raise TimeoutError("no notice came back within %g s" % self.seconds)


def announce_own_writes(engine: sa.Engine) -> None:
    """Mark the connections of `engine` that write `sessions` (Store._wrote
    changes the host's mark after their commit)."""
    @event.listens_for(engine, "after_execute")
    def _note(connection, statement, _multiparams, _params, _options, result):
        # Only a statement that changed a row (a compare-and-set that lost, or a
        # sweep's no-op UPDATE, would make every worker forget for nothing).
        if isinstance(statement, UpdateBase) and statement.table.name == "sessions" and result.rowcount != 0:
            connection.info[_WROTE] = True


def wrote(connection: sa.Connection | None) -> None:
    """After a statement or a transaction of the store: a committed write to
    `sessions`, or a connection lost with one in flight, changes the host's mark."""
    try:
        raw = connection.connection.dbapi_connection if connection is not None else None
        # In a transaction: announced at its end. Else only if it wrote.
        if connection is not None and raw is not None and not connection.invalidated and (
                raw.info.transaction_status in _OPEN or not connection.info.pop(_WROTE, False)):
            return
    except sa.exc.SQLAlchemyError:
        pass                    # closed meanwhile: announce, to be safe
    _host_mark[0] = (os.getpid() << 32) + next(_marks)


_views: dict[tuple[str, int, float], SessionViews] = {}
_views_lock = threading.Lock()


def for_engine(engine: sa.Engine, seconds: float) -> SessionViews | None:
    """The process's views of the sessions of `engine`'s database: None on
    SQLite (one host, and a read costs 5 us) or when turned off."""
    if seconds <= 0 or engine.dialect.name != "postgresql":
        return None
    key = (str(engine.url), os.getpid(), seconds)
    with _views_lock:
        views = _views.get(key)
        if views is None:
            views = _views[key] = SessionViews(lambda: _listener_connection(engine, seconds), seconds)
        return views


def _listener_connection(engine, seconds):
    import psycopg
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    kwargs.pop("context", None)
    # Ours win over the URL's own (?application_name=...). A peer gone without
    # a word (failover, a cut cable) fails the next ping within
    # tcp_user_timeout instead of the kernel's ~15 minutes.
    kwargs.update(autocommit=True, application_name=APPLICATION_NAME, connect_timeout=max(2, int(seconds) + 1),
                  tcp_user_timeout=int(max(seconds, 1) * 2000))
    return psycopg.connect(*args, **kwargs)


def stop_all() -> None:
    with _views_lock:
        for key, views in list(_views.items()):
            if key[1] == os.getpid():
                views.stop()
            del _views[key]
