"""The SQLite store: every SQL statement of the service lives in this module.

One file shared by all gunicorn workers and the sweeper. WAL lets readers
run beside one writer; decisions that must not race between workers
(capacity, port choice, status transitions) are single statements or
`BEGIN IMMEDIATE` transactions, so the database serialises them.
"""
import json
import os
import sqlite3
import time
from contextlib import contextmanager

from .models import LIVE_STATUSES, SessionRecord, TokenRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id          INTEGER PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    user        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('user', 'admin')),
    created_at  REAL NOT NULL,
    revoked_at  REAL
);
CREATE TABLE IF NOT EXISTS sessions (
    id              TEXT PRIMARY KEY,
    user            TEXT NOT NULL,
    label           TEXT,
    status          TEXT NOT NULL,
    created_at      REAL NOT NULL,
    last_activity   REAL NOT NULL,
    idle_timeout    INTEGER NOT NULL,
    max_lifetime    INTEGER NOT NULL,
    workspace       TEXT NOT NULL,
    ended_at        REAL,
    end_reason      TEXT,
    port            INTEGER,
    process         TEXT,
    health_failures INTEGER NOT NULL DEFAULT 0,
    workspace_removed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_by_status ON sessions (status);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user, status);
CREATE TABLE IF NOT EXISTS pool (
    id          TEXT PRIMARY KEY,
    status      TEXT NOT NULL CHECK (status IN ('starting', 'ready')),
    created_at  REAL NOT NULL,
    directory   TEXT NOT NULL,
    port        INTEGER,
    process     TEXT
);
CREATE TABLE IF NOT EXISTS sweeps (
    pid         INTEGER PRIMARY KEY,
    runs        INTEGER NOT NULL,
    last_run_at REAL NOT NULL
);
"""

_LIVE = "(%s)" % ", ".join("'%s'" % s for s in LIVE_STATUSES)


class StoreUnavailable(Exception):
    """The database cannot be read or written (locked, read-only, missing)."""


class LimitReached(Exception):
    def __init__(self, scope, limit):
        super().__init__("%s limit of %d live sessions reached" % (scope, limit))
        self.scope = scope      # "user" or "global"
        self.limit = limit


class Store:
    def __init__(self, path, busy_timeout=10.0):
        self.path = path
        self.pid = os.getpid()      # a connection must not cross a fork
        self.broken = False
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                                       check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            # WAL is a property of the file (set once in init_schema); this is per connection.
            self._db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as err:
            raise StoreUnavailable(str(err)) from err

    def close(self):
        self._db.close()

    def _execute(self, sql, params=()):
        try:
            return self._db.execute(sql, params)
        except (sqlite3.OperationalError, sqlite3.DatabaseError) as err:
            # A connection that met a read-only or damaged file can stay in
            # that state after the fault clears: whoever keeps it, replaces it.
            self.broken = True
            raise StoreUnavailable(str(err)) from err

    @contextmanager
    def _write_transaction(self):
        # IMMEDIATE takes the write lock up front, so a read-then-write
        # decision cannot interleave with another worker's.
        self._execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        else:
            self._execute("COMMIT")

    def init_schema(self):
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
        except sqlite3.OperationalError as err:
            raise StoreUnavailable(str(err)) from err

    def ping(self):
        self._execute("SELECT 1").fetchone()

    # Tokens

    def add_token(self, token_hash, user, role):
        cur = self._execute(
            "INSERT INTO tokens (token_hash, user, role, created_at) VALUES (?, ?, ?, ?)",
            (token_hash, user, role, time.time()))
        return cur.lastrowid

    def find_token(self, token_hash):
        row = self._execute(
            "SELECT * FROM tokens WHERE token_hash = ? AND revoked_at IS NULL",
            (token_hash,)).fetchone()
        return TokenRecord.from_row(row) if row else None

    def list_tokens(self):
        rows = self._execute("SELECT * FROM tokens ORDER BY id").fetchall()
        return [TokenRecord.from_row(r) for r in rows]

    def revoke_token(self, token_id):
        cur = self._execute(
            "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (time.time(), token_id))
        return cur.rowcount == 1

    # Sessions

    def insert_session(self, record, max_total, max_per_user, ports=None, port_is_free=None,
                       claim_pool=False):
        """Insert a starting session unless a limit is reached; reserve a port.

        `ports` is the configured range (None: ChimeraX picks and the port is
        recorded later); `port_is_free(port)` checks the host. With
        `claim_pool`, a ready pool process is taken for the session in the
        same transaction, so no two sessions can ever get the same one.
        Raises LimitReached. Returns the claimed pool entry (a dict) or None.
        """
        with self._write_transaction():
            # The user's own limit is checked first: it is the more useful answer.
            mine = self._execute(
                "SELECT COUNT(*) FROM sessions WHERE user = ? AND status IN %s" % _LIVE,
                (record.user,)).fetchone()[0]
            if mine >= max_per_user:
                raise LimitReached("user", max_per_user)
            claimed = self._take_ready_pool_entry() if claim_pool else None
            # Pool processes count against host capacity until claimed.
            total = self._execute(
                "SELECT (SELECT COUNT(*) FROM sessions WHERE status IN %s)"
                " + (SELECT COUNT(*) FROM pool)" % _LIVE).fetchone()[0]
            if claimed is None and total >= max_total:
                raise LimitReached("global", max_total)
            if claimed is not None:
                record.port, record.process = claimed["port"], claimed["process"]
            elif ports is not None:
                record.port = self._free_port(ports, port_is_free)
            self._execute(
                "INSERT INTO sessions (id, user, label, status, created_at, last_activity,"
                " idle_timeout, max_lifetime, workspace, port, process) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (record.id, record.user, record.label, record.status, record.created_at,
                 record.last_activity, record.idle_timeout, record.max_lifetime,
                 record.workspace, record.port, json.dumps(record.process) if record.process else None))
        return claimed

    def _take_ready_pool_entry(self):
        row = self._execute(
            "SELECT * FROM pool WHERE status = 'ready' ORDER BY created_at LIMIT 1").fetchone()
        if row is None:
            return None
        self._execute("DELETE FROM pool WHERE id = ?", (row["id"],))
        entry = dict(row)
        entry["process"] = json.loads(entry["process"])
        return entry

    # The warm pool

    def add_pool_entry(self, entry_id, directory, max_total, want, ports=None, port_is_free=None):
        """Reserve a pool slot if the pool is short and capacity allows: returns
        its port (None when ChimeraX picks), or False when nothing was reserved."""
        with self._write_transaction():
            pool = self._execute("SELECT COUNT(*) FROM pool").fetchone()[0]
            total = pool + self._execute(
                "SELECT COUNT(*) FROM sessions WHERE status IN %s" % _LIVE).fetchone()[0]
            if pool >= want or total >= max_total:
                return False
            port = self._free_port(ports, port_is_free) if ports is not None else None
            self._execute("INSERT INTO pool (id, status, created_at, directory, port) VALUES (?,?,?,?,?)",
                          (entry_id, "starting", time.time(), directory, port))
            return port

    def set_pool_entry(self, entry_id, status, process, port):
        cur = self._execute("UPDATE pool SET status = ?, process = ?, port = ? WHERE id = ?",
                            (status, json.dumps(process), port, entry_id))
        return cur.rowcount == 1

    def remove_pool_entry(self, entry_id):
        cur = self._execute("DELETE FROM pool WHERE id = ?", (entry_id,))
        return cur.rowcount == 1

    def pool_entries(self):
        entries = []
        for row in self._execute("SELECT * FROM pool ORDER BY created_at").fetchall():
            entry = dict(row)
            entry["process"] = json.loads(entry["process"]) if entry["process"] else {}
            entries.append(entry)
        return entries

    def _free_port(self, ports, port_is_free):
        taken = {row[0] for row in self._execute(
            "SELECT port FROM sessions WHERE status IN %s AND port IS NOT NULL"
            " UNION SELECT port FROM pool WHERE port IS NOT NULL" % _LIVE)}
        for port in ports:
            if port not in taken and (port_is_free is None or port_is_free(port)):
                return port
        raise LimitReached("port", len(ports))

    def get_session(self, session_id):
        row = self._execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return SessionRecord.from_row(row) if row else None

    def list_sessions(self, user=None, status=None):
        sql, params = "SELECT * FROM sessions WHERE 1=1", []
        if user is not None:
            sql += " AND user = ?"
            params.append(user)
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        rows = self._execute(sql + " ORDER BY created_at", params).fetchall()
        return [SessionRecord.from_row(r) for r in rows]

    def live_sessions(self):
        rows = self._execute(
            "SELECT * FROM sessions WHERE status IN %s ORDER BY created_at" % _LIVE).fetchall()
        return [SessionRecord.from_row(r) for r in rows]

    def transition(self, session_id, from_statuses, to_status, **fields):
        """Move a session to `to_status` only if it is in one of `from_statuses`.

        The compare-and-set is what makes concurrent deletes, sweeps and
        startups safe: exactly one caller wins each transition.
        """
        assignments = ["status = ?"]
        params = [to_status]
        for name, value in fields.items():
            if name not in ("ended_at", "end_reason", "port", "process", "last_activity",
                            "workspace_removed"):
                raise ValueError("not a transition field: %s" % name)
            assignments.append("%s = ?" % name)
            params.append(json.dumps(value) if name == "process" else value)
        marks = ", ".join("?" for _ in from_statuses)
        cur = self._execute(
            "UPDATE sessions SET %s WHERE id = ? AND status IN (%s)" % (", ".join(assignments), marks),
            params + [session_id] + list(from_statuses))
        return cur.rowcount == 1

    def expired_failed_workspaces(self, ended_before):
        rows = self._execute(
            "SELECT * FROM sessions WHERE status = 'failed' AND workspace_removed = 0"
            " AND ended_at < ?", (ended_before,)).fetchall()
        return [SessionRecord.from_row(r) for r in rows]

    def mark_workspace_removed(self, session_id):
        self._execute("UPDATE sessions SET workspace_removed = 1 WHERE id = ?", (session_id,))

    def touch(self, session_id, now, min_interval):
        """Record activity, skipping the write when the stored value is recent."""
        cur = self._execute(
            "UPDATE sessions SET last_activity = ? WHERE id = ? AND last_activity <= ?"
            " AND status IN %s" % _LIVE,
            (now, session_id, now - min_interval))
        return cur.rowcount == 1

    def record_health(self, session_id, ok):
        if ok:
            self._execute("UPDATE sessions SET health_failures = 0 WHERE id = ? AND health_failures != 0",
                          (session_id,))
            return 0
        self._execute("UPDATE sessions SET health_failures = health_failures + 1 WHERE id = ?",
                      (session_id,))
        row = self._execute("SELECT health_failures FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return row[0] if row else 0

    def count_sessions_by_status(self):
        return dict(self._execute("SELECT status, COUNT(*) FROM sessions GROUP BY status").fetchall())

    def count_pool_by_status(self):
        return dict(self._execute("SELECT status, COUNT(*) FROM pool GROUP BY status").fetchall())

    # Sweeper bookkeeping: which process swept, how often (proof of a single sweeper)

    def record_sweep(self, pid):
        self._execute(
            "INSERT INTO sweeps (pid, runs, last_run_at) VALUES (?, 1, ?)"
            " ON CONFLICT (pid) DO UPDATE SET runs = runs + 1, last_run_at = excluded.last_run_at",
            (pid, time.time()))

    def sweep_counts(self):
        return {row[0]: row[1] for row in self._execute("SELECT pid, runs FROM sweeps")}
