"""The logs the store keeps: each session's command history, and the sweeper's
runs (which process swept, how often)."""
import time

import sqlalchemy as sa

from .base import StoreBase
from .tables import event_streams, history, sessions, sweeps

# Built once: a command writes its entry on the request's path (BENCHMARKS.md, figure 3).
_INSERT = history.insert()
_PRUNE = history.delete().where(
    history.c.session_id == sa.bindparam("session"),
    history.c.id <= (sa.select(history.c.id).where(history.c.session_id == sa.bindparam("session"))
                     .order_by(history.c.id.desc()).offset(sa.bindparam("keep")).limit(1).scalar_subquery()))


PRUNE_EVERY = 16


class HistoryQueries(StoreBase):
    # Command history

    def add_history(self, session_id: str, at: float, command: str, verdict: str, ok: bool | None,
                    duration_ms: float | None, keep: int, command_id: str | None = None,
                    status: str | None = None, user: str | None = None, owner: str | None = None,
                    result: dict | None = None, via: str | None = None) -> None:
        """Append one entry. Beyond `keep` entries the session's oldest go: deleted
        every PRUNE_EVERY entries (a statement less on most commands' path, a
        round trip on PostgreSQL), and never shown meanwhile (`history`)."""
        added = self._execute(_INSERT, dict(session_id=session_id, at=at, command=command, verdict=verdict, ok=ok,
                                            duration_ms=duration_ms, command_id=command_id, status=status,
                                            user=user, owner=owner, result=result, via=via)).inserted_primary_key[0]
        if added % PRUNE_EVERY == 0:
            self._execute(_PRUNE, dict(session=session_id, keep=keep))

    def history(self, session_id: str, offset: int = 0, limit: int | None = None,
                keep: int | None = None) -> tuple[list[dict], int]:
        """(entries oldest first, total): the newest `keep` of them, if given."""
        total = self._execute(sa.select(sa.func.count()).select_from(history)
                              .where(history.c.session_id == session_id)).scalar()
        hidden = max(0, total - keep) if keep is not None else 0
        query = (history.select().where(history.c.session_id == session_id).order_by(history.c.id)
                 .offset(hidden + offset).limit(limit))
        return [dict(row) for row in self._execute(query).mappings()], total - hidden

    def command_entry(self, session_id: str, command_id: str) -> dict | None:
        """One command of a session's history, by its id."""
        row = self._execute(history.select().where(history.c.session_id == session_id,
                                                   history.c.command_id == command_id)).mappings().first()
        return dict(row) if row else None

    def finish_command(self, command_id: str, status: str, ok: bool | None, duration_ms: float | None,
                       result: dict | None, only_if: str = "running", verdict: str = "allow") -> bool:
        """Record how a command ended, if it is still `only_if` (a compare-and-set:
        the worker that ran it and a reader that found its worker gone never both win)."""
        done = self._execute(history.update().where(history.c.command_id == command_id,
                                                    history.c.status == only_if)
                             .values(status=status, ok=ok, duration_ms=duration_ms, result=result, owner=None,
                                     verdict=verdict))
        return done.rowcount == 1

    # Event streams open per user (a lease each, renewed while open)

    def open_stream(self, user: str, session_id: str, now: float, ttl: float, limit: int) -> int | None:
        """A lease for one more stream of `user`, or None if `limit` are open.
        Inserted first, then ranked: two opening at once never both pass."""
        self._execute(event_streams.delete().where(event_streams.c.expires_at < now))
        stream = self._execute(event_streams.insert().values(user=user, session_id=session_id,
                                                             expires_at=now + ttl)).inserted_primary_key[0]
        ahead = self._execute(sa.select(sa.func.count()).select_from(event_streams).where(
            event_streams.c.user == user, event_streams.c.expires_at >= now,
            event_streams.c.id < stream)).scalar()
        if ahead >= limit:
            self.close_stream(stream)
            return None
        return stream

    def renew_stream(self, stream: int, now: float, ttl: float) -> None:
        self._execute(event_streams.update().where(event_streams.c.id == stream).values(expires_at=now + ttl))

    def close_stream(self, stream: int) -> None:
        self._execute(event_streams.delete().where(event_streams.c.id == stream))

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
