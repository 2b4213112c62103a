"""The schema at the newest revision, as SQLAlchemy Core tables.

The store's statements are built from these; the Alembic revisions in
`migrations/versions` are what creates and changes a real database, and a
test checks that upgrading an empty database to the head gives exactly this.
"""
import json
from typing import Any

import sqlalchemy as sa

from .models import ProcessHandle

# Seconds since the epoch as a double: sub-millisecond on both backends
# (PostgreSQL's REAL is 4 bytes, about 2 minutes of resolution today).
Timestamp: sa.types.TypeEngine[float] = sa.Double().with_variant(sa.REAL(), "sqlite")


class JsonText(sa.types.TypeDecorator):
    """A process handle (models.ProcessHandle) as its launcher's JSON in a TEXT
    column; none is NULL (an empty object written by older releases reads as none)."""
    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: ProcessHandle | dict[str, Any] | None, dialect: sa.Dialect) -> str | None:
        if isinstance(value, ProcessHandle):
            value = value.to_json()
        return json.dumps(value) if value else None

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> ProcessHandle | None:
        return ProcessHandle.from_json(json.loads(value)) if value else None


class Json(sa.types.TypeDecorator):
    """Any JSON value in a TEXT column (sa.JSON is not TEXT on PostgreSQL, and the
    migration adds TEXT)."""
    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else json.dumps(value)

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> Any:
        return None if value is None else json.loads(value)


metadata = sa.MetaData()

service = sa.Table(
    "service", metadata,
    # One row: the id every process of this service carries, whichever host started it.
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("created_at", Timestamp, nullable=False),
    # Keys the HMAC of suspended sessions' files, on every host sharing the store.
    sa.Column("secret", sa.Text),
)

tokens = sa.Table(
    "tokens", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("token_hash", sa.Text, nullable=False, unique=True),
    sa.Column("user", sa.Text, nullable=False),
    sa.Column("role", sa.Text, sa.CheckConstraint("role IN ('user', 'admin')"), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("revoked_at", Timestamp),
    # What it may do (space-separated scopes; NULL: its role's), until when,
    # for whom it may act (an fnmatch pattern of user names, with act-as), why
    # it was made and by whom, and when it was last seen (written at most
    # once a minute per worker, not on every request).
    sa.Column("scopes", sa.Text),
    sa.Column("expires_at", Timestamp),
    sa.Column("act_as", sa.Text),
    sa.Column("note", sa.Text),
    sa.Column("created_by", sa.Text),
    sa.Column("last_used", Timestamp),
)

sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("user", sa.Text, nullable=False),
    sa.Column("label", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("last_activity", Timestamp, nullable=False),
    sa.Column("idle_timeout", sa.Integer, nullable=False),
    sa.Column("max_lifetime", sa.Integer, nullable=False),
    sa.Column("workspace", sa.Text, nullable=False),
    sa.Column("ended_at", Timestamp),
    sa.Column("end_reason", sa.Text),
    sa.Column("port", sa.Integer),
    sa.Column("process", JsonText),
    sa.Column("health_failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("workspace_removed", sa.Integer, nullable=False, server_default="0"),
    # The service instance that started it, and where its process runs as the
    # launcher names it: who can reach the process, whose capacity it uses.
    sa.Column("host_id", sa.Text, nullable=False),
    sa.Column("domain", sa.Text, nullable=False),
    # Suspended: since when, and the HMAC of its saved session file.
    sa.Column("suspended_at", Timestamp),
    sa.Column("suspend_digest", sa.Text),
    # Deleted by its user or an admin (DELETE): no longer served, whatever ended it.
    sa.Column("deleted_at", Timestamp),
    # A transition in progress (starting, terminating): the worker carrying it
    # out (services/upkeep/owners.py) and what it does (models.OPERATIONS).
    sa.Column("owner", sa.Text),
    sa.Column("operation", sa.Text),
    # Usage as the sweeper last sampled it (store/accounting.py): CPU of all the
    # session's processes so far, resident memory now and at most; which process
    # the last sample came from and its own CPU then (a resume starts a new count).
    sa.Column("cpu_seconds", sa.Float),
    sa.Column("memory_bytes", sa.BigInteger),
    sa.Column("memory_peak_bytes", sa.BigInteger),
    sa.Column("usage_process", sa.Text),
    sa.Column("usage_process_cpu", sa.Float),
    sa.Index("sessions_by_status", "status"),
    sa.Index("sessions_by_user", "user", "status"),
    sa.Index("sessions_by_domain", "domain", "status"),
    # Lists are pages, newest first (Store.list_sessions).
    sa.Index("sessions_by_user_created", "user", "created_at", "id"),
    sa.Index("sessions_by_created", "created_at", "id"),
    # Retention takes the oldest ended sessions first (Store.retire_sessions).
    sa.Index("sessions_by_status_ended", "status", "ended_at"),
)

pool = sa.Table(
    "pool", metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("status", sa.Text, sa.CheckConstraint("status IN ('starting', 'ready')"), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("directory", sa.Text, nullable=False),
    sa.Column("port", sa.Integer),
    sa.Column("process", JsonText),
    sa.Column("host_id", sa.Text, nullable=False),
    sa.Column("domain", sa.Text, nullable=False),
    sa.Column("owner", sa.Text),       # the worker starting it (services/upkeep/owners.py)
)

usage_daily = sa.Table(
    "usage_daily", metadata,
    # What sessions deleted by retention used, per user and UTC day
    # ('YYYY-MM-DD'): session time, CPU, the largest session peak.
    sa.Column("user", sa.Text, primary_key=True),
    sa.Column("day", sa.Text, primary_key=True),
    sa.Column("session_seconds", sa.Float, nullable=False),
    sa.Column("cpu_seconds", sa.Float, nullable=False),
    sa.Column("memory_peak_bytes", sa.BigInteger),
)

history = sa.Table(
    "history", metadata,
    # A session's commands in the order they came: replayable (format=cxc).
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("session_id", sa.Text, nullable=False),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("command", sa.Text, nullable=False),
    sa.Column("verdict", sa.Text, sa.CheckConstraint("verdict IN ('allow', 'deny')"), nullable=False),
    sa.Column("ok", sa.Boolean),            # None: denied, never ran
    sa.Column("duration_ms", sa.Float),
    # A command is also a resource (`/commands/<command_id>`): its state, the
    # reply of one run in the background (`wait: false`), who ran it, and the
    # worker running it (services/upkeep/owners.py) while it runs.
    sa.Column("command_id", sa.Text),
    sa.Column("status", sa.Text),           # running | done | failed | interrupted (None: older rows)
    sa.Column("result", Json),
    sa.Column("user", sa.Text),
    sa.Column("via", sa.Text),              # the token that acted for `user` (X-Act-As)
    sa.Column("owner", sa.Text),
    sa.Index("history_by_session", "session_id", "id"),
    sa.Index("history_by_command", "command_id"),
)

event_streams = sa.Table(
    "event_streams", metadata,
    # Open event streams (GET /events), counted per user across workers and
    # hosts; a stream renews its lease while open, so a dead worker's lapse.
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user", sa.Text, nullable=False),
    sa.Column("session_id", sa.Text, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Index("event_streams_by_user", "user", "expires_at"),
)

sweeps = sa.Table(
    "sweeps", metadata,
    # Which process swept, how often: the proof that one sweeper ran.
    sa.Column("host_id", sa.Text, primary_key=True),
    sa.Column("pid", sa.Integer, primary_key=True),
    sa.Column("runs", sa.Integer, nullable=False),
    sa.Column("last_run_at", Timestamp, nullable=False),
)

fetch_cache = sa.Table(
    "fetch_cache", metadata,
    # What the fetch broker downloaded: by source URL, the content's hash (its
    # folder in FETCH_CACHE_DIR) and the name ChimeraX gave the file.
    sa.Column("url", sa.Text, primary_key=True),
    sa.Column("sha256", sa.Text, nullable=False),
    sa.Column("save_name", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("fetched_at", Timestamp, nullable=False),
    sa.Column("last_used", Timestamp, nullable=False),
    sa.Column("mtime_ns", sa.BigInteger, nullable=False),   # as stored: a changed file is not served
    sa.Index("fetch_cache_by_use", "last_used"),
)

fetch_uses = sa.Table(
    "fetch_uses", metadata,
    # Which sessions opened which entry: never evicted while one of them lives.
    sa.Column("session_id", sa.Text, primary_key=True),
    sa.Column("url", sa.Text, primary_key=True),
    sa.Index("fetch_uses_by_url", "url"),
)

fetch_leases = sa.Table(
    "fetch_leases", metadata,
    # The one worker (of any host) downloading a URL now, until it expires.
    sa.Column("url", sa.Text, primary_key=True),
    sa.Column("holder", sa.Text, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
)

fetch_requests = sa.Table(
    "fetch_requests", metadata,
    # Each user's fetches of the last minute (FETCH_PER_USER_PER_MIN).
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user", sa.Text, nullable=False),
    sa.Column("at", Timestamp, nullable=False),
    sa.Index("fetch_requests_by_user", "user", "at"),
)

shares = sa.Table(
    "shares", metadata,
    # A session shared with another user: `view` (look) or `control` (also
    # run commands, interrupt, upload); until expires_at or revoked_at.
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("session_id", sa.Text, nullable=False),
    sa.Column("user", sa.Text, nullable=False),
    sa.Column("access", sa.Text, sa.CheckConstraint("access IN ('view', 'control')", name="shares_access"),
              nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp),
    sa.Column("revoked_at", Timestamp),
    sa.Index("shares_by_session", "session_id"),
    sa.Index("shares_by_user", "user"),
)

share_links = sa.Table(
    "share_links", metadata,
    # A secret link to a read-only live view of a session (its secret stored
    # only as a SHA-256 hash, like tokens).
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("session_id", sa.Text, nullable=False),
    sa.Column("secret_hash", sa.Text, nullable=False, unique=True),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp),
    sa.Column("revoked_at", Timestamp),
    sa.Index("share_links_by_session", "session_id"),
)

outbox = sa.Table(
    "outbox", metadata,
    # Lifecycle events for WEBHOOK_URLS, written in the transaction of the
    # change they tell of and sent by the sweeper: at least once, in id order
    # per session, retried with backoff, dead after WEBHOOK_MAX_ATTEMPTS.
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("event_id", sa.Text, nullable=False, unique=True),
    sa.Column("session_id", sa.Text),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", Timestamp, nullable=False),
    sa.Column("delivered_at", Timestamp),
    sa.Column("dead_at", Timestamp),
    sa.Column("last_error", sa.Text),
    sa.Index("outbox_pending", "delivered_at", "dead_at", "id"),
)

