"""Session queries: create and resume within the limits, status compare-and-set
transitions (each with the lifecycle event it tells of, in its transaction:
outbox_queries), activity and health, listings and counts."""
from collections.abc import Callable, Sequence
import time
from typing import Any

import sqlalchemy as sa

from . import database
from .base import filtered, live
from .models import CREATE_MORE, PoolEntry, SessionRecord
from .outbox_queries import CREATED, ENDED, OutboxQueries, lifecycle_event, may_tell, outbox_insert
from .pool_queries import LimitReached, PoolQueries
from .tables import sessions

# On every request's path: compiled once (see database.Prepared).
GET_SESSION = database.Prepared(sessions.select().where(sessions.c.id == sa.bindparam("id")))

TRANSITION_FIELDS = ("ended_at", "end_reason", "port", "process", "last_activity", "workspace_removed",
                     "suspended_at", "suspend_digest", "owner", "operation")


class _NotSuspended(Exception):
    pass


# The outbox's queries come with the sessions' because their transitions write it.
class SessionQueries(PoolQueries, OutboxQueries):
    def insert_session(self, record: SessionRecord, max_total: int, max_per_user: int,
                       ports: Sequence[int] | None = None, port_is_free: Callable[[int], bool] | None = None,
                       claim_pool: bool = False) -> PoolEntry | None:
        """Insert a starting session unless a limit is reached; reserve a port.

        Capacity (`max_total`, pool processes included) and ports are counted
        in the record's launcher domain; the per-user limit everywhere.
        `ports` is the configured range (None: ChimeraX picks and the port is
        recorded later); `port_is_free(port)` checks the host. With
        `claim_pool`, a ready pool process of the domain is taken for the
        session in the same decision, so no two sessions ever get the same one.
        Raises LimitReached. Returns the claimed pool entry (a PoolEntry) or None.
        Its `session.created` event is written in the same transaction.
        """
        with self._decision(record.domain):
            # The user's own limit is checked first: it is the more useful answer.
            mine = self._count(sessions, live(), sessions.c.user == record.user)
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
            outbox_insert(self._conn(), CREATED, record.id, record.user, now=record.created_at)
        return claimed

    def resume_session(self, session_id: str, user: str, domain: str, host_id: str, max_total: int,
                       max_per_user: int, ports: Sequence[int] | None = None,
                       port_is_free: Callable[[int], bool] | None = None, claim_pool: bool = False,
                       owner: str | None = None) -> tuple[bool, PoolEntry | None]:
        """Make a suspended session `starting` again if the limits allow (it did not
        count while suspended); reserve a port, or claim a ready pool process as a
        create does. Returns (resumed, the claimed pool entry or None); not
        resumed if it was not suspended (nothing is claimed then)."""
        try:
            with self._decision(domain):
                if self._count(sessions, live(), sessions.c.user == user) >= max_per_user:
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
        return [SessionRecord.from_row(r) for r in self._execute(filtered(query, sessions, domain=domain))
                .mappings()]

    def get_session(self, session_id: str, view: bool = False) -> SessionRecord | None:
        """`view`: for showing, not deciding; it may come from the rows PostgreSQL
        keeps this process told of (session_views), at most the bound old."""
        views = self._views if view else None
        if views is None:
            row = self._first(GET_SESSION, id=session_id)
        else:
            row = views.get(session_id)
            if row is None:
                epoch = views.epoch(session_id)
                row = self._first(GET_SESSION, id=session_id)
                if row is not None:
                    views.put(session_id, row, epoch)
        return SessionRecord.from_row(row) if row else None

    def list_sessions(self, user: str | None = None, statuses: Sequence[str] | None = None,
                      limit: int | None = None, before: tuple[float, str] | None = None,
                      or_ids: Sequence[str] = ()) -> list[SessionRecord]:
        """Newest first: `user`'s, and those of `or_ids` (shared with them). `before`: a
        (created_at, id) position; only sessions after it in this order (keyset
        paging: stable while rows are added)."""
        if user is not None and or_ids:
            query = sessions.select().where(sa.or_(sessions.c.user == user, sessions.c.id.in_(list(or_ids))))
        else:
            query = filtered(sessions.select(), sessions, user=user)
        if statuses:
            query = query.where(sessions.c.status.in_(statuses))
        if before is not None:
            created_at, session_id = before
            query = query.where(sa.or_(sessions.c.created_at < created_at, sa.and_(
                sessions.c.created_at == created_at, sessions.c.id < session_id)))
        query = query.order_by(sessions.c.created_at.desc(), sessions.c.id.desc()).limit(limit)
        return [SessionRecord.from_row(r) for r in self._execute(query).mappings()]

    def live_sessions(self, domain: str | None = None, host_id: str | None = None) -> list[SessionRecord]:
        query = filtered(sessions.select().where(live()).order_by(sessions.c.created_at), sessions,
                         domain=domain, host_id=host_id)
        return [SessionRecord.from_row(r) for r in self._execute(query).mappings()]

    def transition(self, session_id: str, from_statuses: Sequence[str], to_status: str, **fields: Any) -> bool:
        """Move a session to `to_status` only if it is in one of `from_statuses`.

        The compare-and-set is what makes concurrent deletes, sweeps and
        startups safe: exactly one caller wins each transition, on any host.
        A change that tells of a lifecycle event (outbox_queries.lifecycle_event)
        writes it in the same transaction, so the winner alone writes it, once.
        """
        unknown = set(fields) - set(TRANSITION_FIELDS)
        if unknown:
            raise ValueError("not a transition field: %s" % ", ".join(sorted(unknown)))
        change = sessions.update().where(sessions.c.id == session_id, sessions.c.status.in_(list(from_statuses))) \
            .values(status=to_status, **fields)
        if not may_tell(from_statuses, to_status):
            return self._execute(change).rowcount == 1
        with self._transaction() as connection:
            # Which event depends on what the row was: read it, locked, before changing it.
            row = connection.execute(sa.select(
                sessions.c.status, sessions.c.user, sessions.c.operation, sessions.c.suspend_digest,
                sessions.c.end_reason).where(sessions.c.id == session_id).with_for_update()).first()
            if row is None or row.status not in from_statuses or connection.execute(change).rowcount != 1:
                return False
            event = lifecycle_event(row.status, to_status, row.operation, row.suspend_digest is not None)
            if event is not None:
                data = {"end_reason": fields.get("end_reason", row.end_reason)} if event == ENDED else None
                outbox_insert(connection, event, session_id, row.user, data)
        return True

    def expired_failed_workspaces(self, ended_before: float, domain: str | None = None) -> list[SessionRecord]:
        query = sessions.select().where(sessions.c.status == "failed", sessions.c.workspace_removed == 0,
                                        sessions.c.ended_at < ended_before)
        return [SessionRecord.from_row(r) for r in self._execute(filtered(query, sessions, domain=domain))
                .mappings()]

    def mark_workspace_removed(self, session_id: str) -> None:
        self._execute(sessions.update().where(sessions.c.id == session_id).values(workspace_removed=1))

    def mark_deleted(self, session_id: str, at: float) -> None:
        """Record the first DELETE of a session (it may have ended before, for another reason)."""
        self._execute(sessions.update().where(sessions.c.id == session_id, sessions.c.deleted_at.is_(None))
                      .values(deleted_at=at))

    def touch(self, session_id: str, now: float, min_interval: float) -> bool:
        """Record activity, skipping the write when the stored value is recent."""
        result = self._execute(sessions.update().where(
            sessions.c.id == session_id, sessions.c.last_activity <= now - min_interval, live())
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
