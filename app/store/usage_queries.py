"""Usage queries: each session's sampled usage, a user's usage per UTC day
(the sessions still kept, plus what retention rolled up), the live
sessions' totals and the largest of them, and retention itself."""
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa

from .accounting import DAY, DayUsage, SessionUsage, add_sample, day_start, session_days
from .base import StoreBase, live
from .models import FAILED, TERMINATED
from .tables import fetch_uses, history, sessions, usage_daily

# Decision domains (database.decision): a sample reads then writes a row;
# retention reads, rolls up and deletes, once across every sweeper.
USAGE, RETENTION = "usage", "retention"
USAGE_COLUMNS = [sessions.c[name] for name in SessionUsage.__dataclass_fields__]
TOP_ORDER = {"memory": sessions.c.memory_bytes, "cpu": sessions.c.cpu_seconds}


def _rolled_up(rows: Iterable[Any]) -> dict[tuple[str, str], DayUsage]:
    """{(user, day): usage} of ended sessions' rows."""
    rolled: dict[tuple[str, str], DayUsage] = {}
    for row in rows:
        for day, used in session_days(row.created_at, row.ended_at, row.ended_at, row.cpu_seconds,
                                      row.memory_peak_bytes).items():
            rolled[(row.user, day)] = rolled.get((row.user, day), DayUsage()) + used
    return rolled


class UsageQueries(StoreBase):
    def record_usage(self, session_id: str, process: str, cpu_seconds: float | None, memory_bytes: int | None,
                     memory_peak_bytes: int | None) -> bool:
        """Add a sample of the session's process `process` (accounting.add_sample);
        False if the session has no row (any more)."""
        with self._decision(USAGE):
            row = self._execute(sa.select(*USAGE_COLUMNS).where(sessions.c.id == session_id)
                                .with_for_update()).mappings().first()
            if row is None:
                return False
            kept = SessionUsage(**row)
            usage = add_sample(kept, process, cpu_seconds, memory_bytes, memory_peak_bytes)
            if usage != kept:
                self._execute(sessions.update().where(sessions.c.id == session_id).values(**asdict(usage)))
        return True

    def usage_by_day(self, user: str, first_day: str, last_day: str, now: float) -> dict[str, DayUsage]:
        """{day: usage} of `user` from `first_day` to `last_day` ('YYYY-MM-DD', UTC,
        both included), days with no session left out; sessions not ended count until `now`."""
        start, stop = day_start(first_day), day_start(last_day) + DAY
        kept = self._execute(sa.select(sessions.c.created_at, sessions.c.ended_at, sessions.c.cpu_seconds,
                                       sessions.c.memory_peak_bytes)
                             .where(sessions.c.user == user, sessions.c.created_at < stop,
                                    sa.or_(sessions.c.ended_at.is_(None), sessions.c.ended_at >= start)))
        days: dict[str, DayUsage] = {}
        for row in kept:
            for day, used in session_days(row.created_at, row.ended_at, now, row.cpu_seconds,
                                          row.memory_peak_bytes).items():
                if first_day <= day <= last_day:
                    days[day] = days.get(day, DayUsage()) + used
        rolled = self._execute(usage_daily.select().where(usage_daily.c.user == user,
                                                          usage_daily.c.day.between(first_day, last_day)))
        for row in rolled:
            days[row.day] = days.get(row.day, DayUsage()) + DayUsage(row.session_seconds, row.cpu_seconds,
                                                                     row.memory_peak_bytes)
        return dict(sorted(days.items()))

    def retire_sessions(self, ended_before: float, batch: int) -> int:
        """Delete up to `batch` sessions that ended before `ended_before` (their
        files already gone), with their history and fetch uses, after adding
        their usage to `usage_daily`: all in one transaction, so a worker
        dying midway leaves every session either counted there or still kept.
        Returns how many were deleted."""
        with self._decision(RETENTION):
            rows = self._execute(
                sa.select(sessions.c.id, sessions.c.user, sessions.c.created_at, sessions.c.ended_at,
                          sessions.c.cpu_seconds, sessions.c.memory_peak_bytes)
                .where(sessions.c.status.in_((TERMINATED, FAILED)), sessions.c.ended_at < ended_before,
                       sessions.c.workspace_removed != 0)
                .order_by(sessions.c.ended_at).limit(batch).with_for_update()).all()
            if not rows:
                return 0
            self._add_to_daily(_rolled_up(rows))
            ids = [row.id for row in rows]
            self._execute(history.delete().where(history.c.session_id.in_(ids)))
            self._execute(fetch_uses.delete().where(fetch_uses.c.session_id.in_(ids)))
            self._execute(sessions.delete().where(sessions.c.id.in_(ids)))
        return len(rows)

    def _add_to_daily(self, rolled):
        users, days = {user for user, _ in rolled}, {day for _, day in rolled}
        existing = {(row.user, row.day): DayUsage(row.session_seconds, row.cpu_seconds, row.memory_peak_bytes)
                    for row in self._execute(usage_daily.select().where(usage_daily.c.user.in_(users),
                                                                        usage_daily.c.day.in_(days)))}
        changed = [dict(k_user=user, k_day=day, **asdict(existing[(user, day)] + used))
                   for (user, day), used in rolled.items() if (user, day) in existing]
        added = [dict(user=user, day=day, **asdict(used))
                 for (user, day), used in rolled.items() if (user, day) not in existing]
        if changed:
            self._execute(usage_daily.update().where(usage_daily.c.user == sa.bindparam("k_user"),
                                                     usage_daily.c.day == sa.bindparam("k_day")), changed)
        if added:
            self._execute(usage_daily.insert(), added)

    def live_usage_totals(self) -> dict[str, float]:
        """Over live sessions, as last sampled: {"memory_bytes", "cpu_seconds"} summed."""
        memory, cpu = self._execute(sa.select(sa.func.coalesce(sa.func.sum(sessions.c.memory_bytes), 0),
                                              sa.func.coalesce(sa.func.sum(sessions.c.cpu_seconds), 0.0))
                                    .where(live())).one()
        return {"memory_bytes": float(memory), "cpu_seconds": float(cpu)}

    def top_sessions(self, by: str, limit: int) -> list[dict[str, Any]]:
        """The live sessions using most memory now ("memory") or CPU so far ("cpu"), as last sampled."""
        order = TOP_ORDER[by]
        query = (sa.select(sessions.c.id, sessions.c.user, sessions.c.label, sessions.c.status,
                           sessions.c.memory_bytes, sessions.c.memory_peak_bytes, sessions.c.cpu_seconds)
                 .where(live(), order.is_not(None)).order_by(order.desc(), sessions.c.id).limit(limit))
        return [dict(row) for row in self._execute(query).mappings()]
