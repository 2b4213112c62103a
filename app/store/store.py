"""The store: every SQL statement of the service lives in this package.

Statements are SQLAlchemy Core built on `tables`; they run on SQLite or
PostgreSQL alike. A Store is one thread's handle: it checks a connection out
of its process's pool when first used and gives it back on `release()`.
Decisions that must not race between workers or hosts (capacity, port
choice, the pool claim) run in `database.decision()`; status changes are
single compare-and-set statements.
"""
from collections.abc import Callable, Sequence
from contextlib import contextmanager
import os
import time
from typing import Any

import sqlalchemy as sa

from . import database
from .database import StoreUnavailable
from .models import CREATE_MORE, LIVE_STATUSES, PoolEntry, PoolStatus, ProcessHandle, SessionRecord, TokenRecord
from .tables import history, pool, service, sessions, sweeps, tokens

# On every request's path: compiled once (see database.Prepared).
FIND_TOKEN = database.Prepared(tokens.select().where(
    tokens.c.token_hash == sa.bindparam("token_hash"), tokens.c.revoked_at.is_(None)))
GET_SESSION = database.Prepared(sessions.select().where(sessions.c.id == sa.bindparam("id")))

TRANSITION_FIELDS = ("ended_at", "end_reason", "port", "process", "last_activity", "workspace_removed",
                     "suspended_at", "suspend_digest", "owner", "operation")


class _NotSuspended(Exception):
    pass


class LimitReached(Exception):
    def __init__(self, scope, limit):
        super().__init__("%s limit of %d live sessions reached" % (scope, limit))
        self.scope = scope      # "user", "global" or "port"
        self.limit = limit


def _live(table=sessions):
    return table.c.status.in_(LIVE_STATUSES)


def _filtered(query, table, **equal):
    """`query` narrowed to the columns given a value (None: any)."""
    return query.where(*(table.c[name] == value for name, value in equal.items() if value is not None))


class Store:
    def __init__(self, target: str, busy_timeout: float = 5.0) -> None:
        self.url = database.as_url(target)
        self.engine = database.engine_for(self.url, busy_timeout)
        self.pid = os.getpid()      # a handle (and its pool) must not cross a fork
        self._connection = None
        self._keeps_connection = database.is_sqlite(self.url)

    # Connections

    def _conn(self):
        if self._connection is None:
            self._connection = self.engine.connect()
        return self._connection

    def release(self) -> None:
        """Give the connection back to the pool (end of a request, of a job)."""
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:
                self._drop_connection()     # it died since its last use: not the caller's concern
            self._connection = None

    close = release

    def end_request(self) -> None:
        """Between two requests of a worker thread. A PostgreSQL connection is a
        server process shared through the pool: it goes back. A SQLite one
        (autocommit, no transaction open between statements) holds no lock and
        costs a file handle: the thread keeps it, which saves a pool checkout
        and return on every request."""
        if self._connection is None:
            return
        if not self._keeps_connection:
            self.release()
        elif self._connection.connection.dbapi_connection.in_transaction:
            self._drop_connection()     # never carry a transaction into the next request

    def _drop_connection(self):
        # Whatever state the fault left it in, the next call starts afresh.
        if self._connection is not None:
            try:
                self._connection.invalidate()
                self._connection.close()
            except Exception:       # already broken: dropping it is all that matters
                pass
            self._connection = None

    def _run(self, action, read=False):
        """Run `action(connection)`; operational faults become StoreUnavailable.

        No ping before each use (a round trip per request): a pooled
        connection the server dropped (a restart, an idle timeout) is found
        when used. Then the process's pool is replaced, and a read is tried
        once more on a fresh connection; a write is not (it may have been
        applied), its caller gets a 503 with Retry-After.
        """
        for attempt in (1, 2):
            try:
                return action(self._conn())
            except Exception as err:
                if not (self._fault(err) and read and attempt == 1):
                    raise StoreUnavailable(str(getattr(err, "orig", None) or err)) from err

    def _fault(self, err):
        """Re-raise our bugs (a 500 with its traceback); after an outage drop the
        connection, and the whole pool if the server dropped it. True: it did."""
        if not database.operational(err):
            raise err
        lost = database.disconnected(self.engine, err, self._connection)
        self._drop_connection()
        if lost:
            self.engine.dispose(close=False)
        return lost

    def _execute(self, statement, params=None):
        return self._run(lambda connection: connection.execute(statement, params),
                         read=getattr(statement, "is_select", False))

    def _first(self, prepared, **params):
        return self._run(lambda connection: prepared.first(connection, **params), read=True)

    @contextmanager
    def _decision(self, domain):
        connection = self._run(lambda connection: connection)
        try:
            with database.decision(connection, domain):
                yield
        except Exception as err:
            self._fault(err)
            raise StoreUnavailable(str(getattr(err, "orig", None) or err)) from err

    def init_schema(self) -> None:
        """Create the schema on an empty database (tests, first start); see `schema`."""
        from . import schema
        schema.prepare(self.url)

    def ping(self) -> None:
        self._execute(sa.select(1)).scalar()

    def service_id(self) -> str | None:
        return self._execute(sa.select(service.c.id)).scalar()

    def service_secret(self) -> str | None:
        return self._execute(sa.select(service.c.secret)).scalar()

    # Tokens

    def add_token(self, token_hash: str, user: str, role: str) -> int:
        return self._execute(tokens.insert().values(
            token_hash=token_hash, user=user, role=role, created_at=time.time())
            .returning(tokens.c.id)).scalar()

    def find_token(self, token_hash: str) -> TokenRecord | None:
        row = self._first(FIND_TOKEN, token_hash=token_hash)
        return TokenRecord.from_row(row) if row else None

    def list_tokens(self) -> list[TokenRecord]:
        rows = self._execute(tokens.select().order_by(tokens.c.id)).mappings()
        return [TokenRecord.from_row(r) for r in rows]

    def revoke_token(self, token_id: int) -> bool:
        result = self._execute(tokens.update().where(
            tokens.c.id == token_id, tokens.c.revoked_at.is_(None)).values(revoked_at=time.time()))
        return result.rowcount == 1

    # Sessions

    def insert_session(self, record, max_total, max_per_user, ports=None, port_is_free=None,
                       claim_pool=False):
        """Insert a starting session unless a limit is reached; reserve a port.

        Capacity (`max_total`, pool processes included) and ports are counted
        in the record's launcher domain; the per-user limit everywhere.
        `ports` is the configured range (None: ChimeraX picks and the port is
        recorded later); `port_is_free(port)` checks the host. With
        `claim_pool`, a ready pool process of the domain is taken for the
        session in the same decision, so no two sessions ever get the same one.
        Raises LimitReached. Returns the claimed pool entry (a dict) or None.
        """
        with self._decision(record.domain):
            # The user's own limit is checked first: it is the more useful answer.
            mine = self._count(sessions, _live(), sessions.c.user == record.user)
            if mine >= max_per_user:
                raise LimitReached("user", max_per_user)
            claimed = self._take_ready_pool_entry(record.domain) if claim_pool else None
            if claimed is None and self._used(record.domain) >= max_total:
                raise LimitReached("global", max_total)
            if claimed is not None:
                # A claimed process still has to move into the workspace: never adopted half done.
                record.port, record.process, record.operation = claimed.port, claimed.process, CREATE_MORE
            elif ports is not None:
                record.port = self._free_port(record.domain, ports, port_is_free)
            self._execute(sessions.insert().values(
                id=record.id, user=record.user, label=record.label, status=record.status,
                created_at=record.created_at, last_activity=record.last_activity,
                idle_timeout=record.idle_timeout, max_lifetime=record.max_lifetime,
                workspace=record.workspace, port=record.port, process=record.process,
                host_id=record.host_id, domain=record.domain, owner=record.owner, operation=record.operation))
        return claimed

    def resume_session(self, session_id, user, domain, host_id, max_total, max_per_user, ports=None,
                       port_is_free=None, claim_pool=False, owner=None):
        """Make a suspended session `starting` again if the limits allow (it did not
        count while suspended); reserve a port, or claim a ready pool process as a
        create does. Returns (resumed, the claimed pool entry or None); not
        resumed if it was not suspended (nothing is claimed then)."""
        try:
            with self._decision(domain):
                if self._count(sessions, _live(), sessions.c.user == user) >= max_per_user:
                    raise LimitReached("user", max_per_user)
                claimed = self._take_ready_pool_entry(domain) if claim_pool else None
                if claimed is None and self._used(domain) >= max_total:
                    raise LimitReached("global", max_total)
                if claimed is not None:
                    port, process = claimed.port, claimed.process
                else:
                    port = self._free_port(domain, ports, port_is_free) if ports is not None else None
                    process = None
                if self._execute(sessions.update().where(
                        sessions.c.id == session_id, sessions.c.status == "suspended")
                        .values(status="starting", port=port, process=process, domain=domain,
                                host_id=host_id, last_activity=time.time(), owner=owner,
                                operation="resume")).rowcount != 1:
                    raise _NotSuspended()       # rolls the claim back
                return True, claimed
        except _NotSuspended:
            return False, None

    def count_suspended(self, user: str) -> int:
        return self._count(sessions, sessions.c.status == "suspended", sessions.c.user == user)

    def suspended_sessions(self, suspended_before: float | None = None,
                           domain: str | None = None) -> list[SessionRecord]:
        query = sessions.select().where(sessions.c.status == "suspended")
        if suspended_before is not None:
            query = query.where(sessions.c.suspended_at < suspended_before)
        return [SessionRecord.from_row(r) for r in self._execute(_filtered(query, sessions, domain=domain))
                .mappings()]

    def _count(self, table, *conditions):
        return self._execute(sa.select(sa.func.count()).select_from(table).where(*conditions)).scalar()

    def _used(self, domain):
        """Live sessions and pool processes (they count until claimed) in a domain."""
        return (self._count(sessions, _live(), sessions.c.domain == domain)
                + self._count(pool, pool.c.domain == domain))

    def _take_ready_pool_entry(self, domain: str) -> PoolEntry | None:
        row = self._execute(pool.select().where(pool.c.status == "ready", pool.c.domain == domain)
                            .order_by(pool.c.created_at).limit(1)).mappings().first()
        if row is None:
            return None
        self._execute(pool.delete().where(pool.c.id == row["id"]))
        return PoolEntry.from_row(row)

    def _free_port(self, domain, ports, port_is_free):
        taken = set(self._execute(
            sa.select(sessions.c.port).where(_live(), sessions.c.domain == domain,
                                             sessions.c.port.is_not(None))
            .union(sa.select(pool.c.port).where(pool.c.domain == domain, pool.c.port.is_not(None))))
            .scalars())
        for port in ports:
            if port not in taken and (port_is_free is None or port_is_free(port)):
                return port
        raise LimitReached("port", len(ports))

    # The warm pool

    def add_pool_entry(self, entry_id: str, directory: str, max_total: int, want: int, host_id: str, domain: str,
                       ports: Sequence[int] | None = None, port_is_free: Callable[[int], bool] | None = None,
                       owner: str | None = None) -> PoolEntry | None:
        """Reserve a pool slot in `domain` if its pool is short and capacity allows:
        the new entry (status starting, with its port: None when ChimeraX picks), else None."""
        with self._decision(domain):
            if (self._count(pool, pool.c.domain == domain) >= want
                    or self._used(domain) >= max_total):
                return None
            port = self._free_port(domain, ports, port_is_free) if ports is not None else None
            entry = PoolEntry(id=entry_id, status=PoolStatus.STARTING, created_at=time.time(), directory=directory,
                              host_id=host_id, domain=domain, port=port, owner=owner)
            self._execute(pool.insert().values(id=entry.id, status=entry.status.value, created_at=entry.created_at,
                                               directory=directory, port=port, host_id=host_id,
                                               domain=domain, owner=owner))
            return entry

    def set_pool_entry(self, entry_id: str, status: PoolStatus, process: ProcessHandle | None,
                       port: int | None) -> bool:
        result = self._execute(pool.update().where(pool.c.id == entry_id)
                               .values(status=status.value, process=process, port=port))
        return result.rowcount == 1

    def remove_pool_entry(self, entry_id: str) -> bool:
        return self._execute(pool.delete().where(pool.c.id == entry_id)).rowcount == 1

    def pool_entries(self, domain: str | None = None, host_id: str | None = None) -> list[PoolEntry]:
        query = _filtered(pool.select().order_by(pool.c.created_at), pool, domain=domain, host_id=host_id)
        return [PoolEntry.from_row(row) for row in self._execute(query).mappings()]

    def get_session(self, session_id: str) -> SessionRecord | None:
        row = self._first(GET_SESSION, id=session_id)
        return SessionRecord.from_row(row) if row else None

    def list_sessions(self, user: str | None = None, statuses: Sequence[str] | None = None,
                      limit: int | None = None, before: tuple[float, str] | None = None) -> list[SessionRecord]:
        """Newest first. `before`: a (created_at, id) position; only sessions
        after it in this order (keyset paging: stable while rows are added)."""
        query = _filtered(sessions.select(), sessions, user=user)
        if statuses:
            query = query.where(sessions.c.status.in_(statuses))
        if before is not None:
            created_at, session_id = before
            query = query.where(sa.or_(sessions.c.created_at < created_at, sa.and_(
                sessions.c.created_at == created_at, sessions.c.id < session_id)))
        query = query.order_by(sessions.c.created_at.desc(), sessions.c.id.desc()).limit(limit)
        return [SessionRecord.from_row(r) for r in self._execute(query).mappings()]

    def live_sessions(self, domain: str | None = None, host_id: str | None = None) -> list[SessionRecord]:
        query = _filtered(sessions.select().where(_live()).order_by(sessions.c.created_at), sessions,
                          domain=domain, host_id=host_id)
        return [SessionRecord.from_row(r) for r in self._execute(query).mappings()]

    def transition(self, session_id: str, from_statuses: Sequence[str], to_status: str, **fields: Any) -> bool:
        """Move a session to `to_status` only if it is in one of `from_statuses`.

        The compare-and-set is what makes concurrent deletes, sweeps and
        startups safe: exactly one caller wins each transition, on any host.
        """
        unknown = set(fields) - set(TRANSITION_FIELDS)
        if unknown:
            raise ValueError("not a transition field: %s" % ", ".join(sorted(unknown)))
        result = self._execute(sessions.update().where(
            sessions.c.id == session_id, sessions.c.status.in_(list(from_statuses)))
            .values(status=to_status, **fields))
        return result.rowcount == 1

    def expired_failed_workspaces(self, ended_before: float, domain: str | None = None) -> list[SessionRecord]:
        query = sessions.select().where(sessions.c.status == "failed", sessions.c.workspace_removed == 0,
                                        sessions.c.ended_at < ended_before)
        return [SessionRecord.from_row(r) for r in self._execute(_filtered(query, sessions, domain=domain))
                .mappings()]

    def mark_workspace_removed(self, session_id: str) -> None:
        self._execute(sessions.update().where(sessions.c.id == session_id).values(workspace_removed=1))

    def touch(self, session_id: str, now: float, min_interval: float) -> bool:
        """Record activity, skipping the write when the stored value is recent."""
        result = self._execute(sessions.update().where(
            sessions.c.id == session_id, sessions.c.last_activity <= now - min_interval, _live())
            .values(last_activity=now))
        return result.rowcount == 1

    def record_health(self, session_id: str, ok: bool) -> int:
        if ok:
            self._execute(sessions.update().where(sessions.c.id == session_id,
                                                  sessions.c.health_failures != 0)
                          .values(health_failures=0))
            return 0
        failures = self._execute(sessions.update().where(sessions.c.id == session_id)
                                 .values(health_failures=sessions.c.health_failures + 1)
                                 .returning(sessions.c.health_failures)).scalar()
        return failures or 0

    def count_sessions_by_status(self) -> dict[str, int]:
        query = sa.select(sessions.c.status, sa.func.count()).group_by(sessions.c.status)
        return {status: n for status, n in self._execute(query)}

    def count_pool_by_status(self) -> dict[str, int]:
        query = sa.select(pool.c.status, sa.func.count()).group_by(pool.c.status)
        return {status: n for status, n in self._execute(query)}

    # Command history

    def add_history(self, session_id: str, at: float, command: str, verdict: str, ok: bool | None,
                    duration_ms: float | None, keep: int) -> None:
        """Append one entry; beyond `keep` entries the session's oldest go."""
        self._execute(history.insert().values(session_id=session_id, at=at, command=command,
                                              verdict=verdict, ok=ok, duration_ms=duration_ms))
        cutoff = (sa.select(history.c.id).where(history.c.session_id == session_id)
                  .order_by(history.c.id.desc()).offset(keep).limit(1).scalar_subquery())
        self._execute(history.delete().where(history.c.session_id == session_id, history.c.id <= cutoff))

    def history(self, session_id: str, offset: int = 0, limit: int | None = None) -> tuple[list[dict], int]:
        """(entries oldest first, total)."""
        query = (history.select().where(history.c.session_id == session_id).order_by(history.c.id)
                 .offset(offset).limit(limit))
        total = self._execute(sa.select(sa.func.count()).select_from(history)
                              .where(history.c.session_id == session_id)).scalar()
        return [dict(row) for row in self._execute(query).mappings()], total

    def mark_deleted(self, session_id: str, at: float) -> None:
        """Record the first DELETE of a session (it may have ended before, for another reason)."""
        self._execute(sessions.update().where(sessions.c.id == session_id, sessions.c.deleted_at.is_(None))
                      .values(deleted_at=at))

    def recent_denied(self, limit: int) -> list[dict]:
        """The newest commands the policy refused, across sessions, with their users."""
        query = (sa.select(history.c.at, history.c.command, history.c.session_id, sessions.c.user)
                 .join(sessions, sessions.c.id == history.c.session_id)
                 .where(history.c.verdict == "deny").order_by(history.c.id.desc()).limit(limit))
        return [dict(row) for row in self._execute(query).mappings()]

    # Sweeper bookkeeping: which process swept, how often (proof of a single sweeper)

    def record_sweep(self, host_id: str, pid: int) -> None:
        now = time.time()
        updated = self._execute(sweeps.update().where(sweeps.c.host_id == host_id, sweeps.c.pid == pid)
                                .values(runs=sweeps.c.runs + 1, last_run_at=now)).rowcount
        if not updated:
            # Only the leader writes its own row: no race between update and insert.
            self._execute(sweeps.insert().values(host_id=host_id, pid=pid, runs=1, last_run_at=now))

    def sweep_counts(self) -> dict[tuple[str, int], int]:
        return {(host, pid): runs for host, pid, runs in
                self._execute(sa.select(sweeps.c.host_id, sweeps.c.pid, sweeps.c.runs))}
