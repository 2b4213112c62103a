"""The accounting rules, each in one place: how a sample of a session's
process adds to the session's usage, and how a session's time, CPU and peak
memory are counted on the UTC days it spans. The store's per-day report and
its retention (which rolls ended sessions up into `usage_daily` before
deleting them) both count with these, so a session counts the same before
and after it is rolled up."""
import calendar
from dataclasses import dataclass, replace
import time

DAY = 86400     # POSIX time has no leap seconds: every UTC day starts at a multiple of it


def day_of(at: float) -> str:
    """The UTC day of an epoch time, 'YYYY-MM-DD'."""
    return time.strftime("%Y-%m-%d", time.gmtime(at))


def day_start(day: str) -> float:
    """Epoch seconds at 00:00 UTC of 'YYYY-MM-DD'."""
    return float(calendar.timegm(time.strptime(day, "%Y-%m-%d")))


@dataclass(frozen=True)
class SessionUsage:
    """A session's usage columns (store/tables.py)."""
    cpu_seconds: float | None = None
    memory_bytes: int | None = None
    memory_peak_bytes: int | None = None
    usage_process: str | None = None
    usage_process_cpu: float | None = None


def add_sample(kept: SessionUsage, process: str, cpu_seconds: float | None, memory_bytes: int | None,
               memory_peak_bytes: int | None) -> SessionUsage:
    """The session's usage after a sample of its process named `process`.

    A process's CPU counter starts at zero, and a session may have several
    processes one after another (suspend, resume): the CPU of the earlier
    ones is kept and the current one's latest figure replaces its previous
    one. A figure lower than the one kept for the same process is a late
    sample, not news: ignored. The peak is the largest seen (memory now
    counts towards it where no peak is known)."""
    usage = kept
    if cpu_seconds is not None:
        total = kept.cpu_seconds or 0.0
        if kept.usage_process == process:
            before = kept.usage_process_cpu or 0.0
            if cpu_seconds >= before:
                usage = replace(usage, cpu_seconds=total - before + cpu_seconds, usage_process_cpu=cpu_seconds)
        else:
            usage = replace(usage, cpu_seconds=total + cpu_seconds, usage_process=process,
                            usage_process_cpu=cpu_seconds)
    peaks = [p for p in (kept.memory_peak_bytes, memory_peak_bytes, memory_bytes) if p is not None]
    return replace(usage, memory_bytes=memory_bytes, memory_peak_bytes=max(peaks) if peaks else None)


@dataclass(frozen=True)
class DayUsage:
    """What one user's sessions used on one UTC day."""
    session_seconds: float = 0.0
    cpu_seconds: float = 0.0
    memory_peak_bytes: int | None = None

    def __add__(self, other: "DayUsage") -> "DayUsage":
        peaks = [p for p in (self.memory_peak_bytes, other.memory_peak_bytes) if p is not None]
        return DayUsage(self.session_seconds + other.session_seconds, self.cpu_seconds + other.cpu_seconds,
                        max(peaks) if peaks else None)


def split_days(start: float, end: float) -> list[tuple[str, float]]:
    """[(day, seconds)] of the time from `start` to `end`, split exactly at
    each UTC midnight. A session of no time (or a clock that went back)
    still has its day: what it used is counted there."""
    if end <= start:
        return [(day_of(start), 0.0)]
    parts = []
    at = start
    while at < end:
        midnight = (at // DAY + 1) * DAY
        stop = min(end, midnight)
        parts.append((day_of(at), stop - at))
        at = stop
    return parts


def session_days(created_at: float, ended_at: float | None, now: float, cpu_seconds: float | None,
                 memory_peak_bytes: int | None) -> dict[str, DayUsage]:
    """A session's usage by UTC day: its time from creation to its end (now,
    while it has not ended: live or suspended), its CPU in proportion to its
    time on each day, its peak on every day it spans."""
    parts = split_days(created_at, ended_at if ended_at is not None else now)
    total = sum(seconds for _, seconds in parts)
    cpu = cpu_seconds or 0.0
    days, given = {}, 0.0
    for i, (day, seconds) in enumerate(parts):
        # The last day takes what is left: rounding loses nothing of the whole.
        share = cpu - given if i == len(parts) - 1 else (cpu * seconds / total if total else 0.0)
        given += share
        days[day] = DayUsage(seconds, share, memory_peak_bytes)
    return days
