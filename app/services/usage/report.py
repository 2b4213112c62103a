"""A user's usage per UTC day (`GET /api/usage`): session-hours, CPU-seconds
and peak memory, from the sessions still kept and what retention rolled up."""
from datetime import date
from typing import Any

from ...store import Principal, Store
from ...store.accounting import DayUsage
from ..errors import Forbidden

HOUR = 3600


def _figures(used: DayUsage) -> dict[str, Any]:
    return {"session_hours": used.session_seconds / HOUR, "cpu_seconds": used.cpu_seconds,
            "memory_peak_bytes": used.memory_peak_bytes}


def report(principal: Principal, store: Store, user: str | None, since: date, until: date,
           now: float) -> dict[str, Any]:
    """`user`'s usage (default: the caller's own; another's for admins only) from
    `since` to `until`, both included; sessions not ended count until `now`."""
    user = user or principal.user
    if user != principal.user and not principal.is_admin:
        raise Forbidden("only admins may see another user's usage")
    days = store.usage_by_day(user, since.isoformat(), until.isoformat(), now)
    return {"user": user, "since": since.isoformat(), "until": until.isoformat(),
            "days": [dict(day=day, **_figures(used)) for day, used in days.items()],
            "totals": _figures(sum(days.values(), DayUsage()))}
