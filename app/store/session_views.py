"""Session rows kept for the session view, told of every change by PostgreSQL.

Why: on PostgreSQL the one round trip of a GET (the session's row) cost the
hot read a quarter of its speed on 2 cores (BENCHMARKS.md, figure 4) — the
server shares the cores, and no statement is cheaper than not asking.

How it stays true: a trigger on `sessions` (migration 0012) sends
`NOTIFY cxs_sessions, '<id>'` in the writing transaction, from any host or
tool; each process listens on a connection of its own and forgets the row
when told (PostgreSQL delivers at commit: ~0.1-0.3 ms here). A row is kept
only if nothing was said of it while it was read (an epoch per bucket), and
served only while the listener proved its connection within the bound and
the row is younger than it: if notices stop (a lost connection, a stuck
thread), nothing older than SESSION_VIEW_CACHE_SECONDS is ever served. This
process's own writes forget everything at once (read-your-writes in a worker).

Only views use it (GET /api/sessions/<id>); every decision reads the row.
"""
import logging
import os
import threading
import time
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)

CHANNEL = "cxs_sessions"
EVERYTHING = "*"            # the payload of a TRUNCATE
MAX_ROWS = 4096             # ~1 KiB each; a full cache starts again empty
APPLICATION_NAME = "cxs-session-views"      # the listeners in pg_stat_activity
_BUCKETS = 256


class SessionViews:
    def __init__(self, connect, seconds: float, clock=time.monotonic) -> None:
        self._connect = connect         # () -> an autocommit psycopg connection
        self.seconds = seconds
        self._clock = clock
        self._rows: dict[str, tuple[float, dict[str, Any]]] = {}
        self._epochs = [0] * _BUCKETS   # bumped when a row of the bucket may have changed
        self._all = 0                   # bumped when any may have
        self._proven = float("-inf")    # when the listener last knew its connection alive
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # How often the listener proves its connection (and looks at _stop).
        self._period = min(seconds / 2, 0.5)

    # Reading

    def get(self, key: str) -> dict[str, Any] | None:
        self._start()
        now = self._clock()
        entry = self._rows.get(key)
        if entry is None or now - entry[0] >= self.seconds or now - self._proven >= self.seconds:
            return None
        return entry[1]

    def epoch(self, key: str) -> tuple[int, int]:
        """Taken before reading a row; `put` keeps it only if it still holds."""
        return self._all, self._epochs[hash(key) % _BUCKETS]

    def put(self, key: str, row: dict[str, Any], epoch: tuple[int, int]) -> None:
        with self._lock:
            if epoch != (self._all, self._epochs[hash(key) % _BUCKETS]):
                return      # told of a change while it was read: it may be the old row
            if len(self._rows) >= MAX_ROWS:
                self._rows.clear()
            self._rows[key] = (self._clock(), row)

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
        delay = 0.1
        while not self._stop.is_set():
            try:
                with self._connect() as connection:
                    connection.execute("LISTEN " + CHANNEL)
                    self.changed()       # anything kept before now may have missed a notice
                    self._proven, delay = self._clock(), 0.1
                    while not self._stop.is_set():
                        for notice in connection.notifies(timeout=self._period):
                            self.changed(notice.payload)
                        connection.execute("SELECT 1")      # still connected: rows may be served on
                        self._proven = self._clock()
            except Exception as err:        # the database went away: serve nothing, try again
                self._lost()
                log.warning("session view notices lost (%s); reading every view until they return", err)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
        self._lost()


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
            views = _views[key] = SessionViews(lambda: _autocommit(engine), seconds)
        return views


def _autocommit(engine):
    raw = engine.raw_connection()
    raw.detach()                    # the listener's own, for its life: never back to the pool
    connection = raw.dbapi_connection
    connection.autocommit = True
    connection.execute("SET application_name = '%s'" % APPLICATION_NAME)
    return connection


def stop_all() -> None:
    with _views_lock:
        for key, views in list(_views.items()):
            if key[1] == os.getpid():
                views.stop()
            del _views[key]
