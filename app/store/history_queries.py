"""The logs the store keeps: each session's command history, and the sweeper's
runs (which process swept, how often)."""
import time

import sqlalchemy as sa

from .base import StoreBase
from .tables import history, sessions, sweeps


class HistoryQueries(StoreBase):
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
