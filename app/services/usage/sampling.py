"""A session's usage from its launcher: sampled into the store (the sweeper's
ticks, and once before its process stops, so its final CPU figure is kept),
and shown in the session's view with the limits in force."""
import logging
from typing import TYPE_CHECKING, Any

from ...store import SessionRecord, Store
from ...store.accounting import SessionUsage, add_sample
from ..errors import log_fault
from ..recent import MISSING, Recent

if TYPE_CHECKING:
    from ..processes.launchers.base import Launcher

log = logging.getLogger("cxs.usage")

# What this worker last read of each session's process: {(session, process): figures}.
_readings: Recent[dict | None] = Recent()

LIMIT_KEYS = ("memory_mb", "address_space_mb", "cpus", "processes", "enforced_by")


def _running_here(launcher, record):
    # Another machine's process is its own launcher's to read: a pid here names another process.
    return record.is_live and record.process is not None and launcher.reaches(record.domain)


def process_key(launcher: "Launcher", record: SessionRecord) -> str:
    """Which process of the session a sample comes from: a resumed session's
    new process counts its CPU from zero again (accounting.add_sample)."""
    handle = record.process
    return "%s@%r" % (launcher.process_id(handle), handle.started_at if handle else None)


def sample(store: Store, launcher: "Launcher", record: SessionRecord) -> dict[str, Any] | None:
    """Record what the session's process uses now; the launcher's figures, or
    None where it cannot tell (no process, gone, on a node it cannot see, on
    a machine this instance does not reach)."""
    if record.process is None or not launcher.reaches(record.domain):
        return None
    usage = launcher.usage(record.process)
    if not usage:
        return None
    store.record_usage(record.id, process_key(launcher, record), usage.get("cpu_seconds"),
                       usage.get("memory_bytes"), usage.get("memory_peak_bytes"))
    return usage


def sample_before_stop(store: Store, launcher: "Launcher", record: SessionRecord) -> None:
    """The last sample of a process about to be stopped. Accounting must never
    keep a session from ending: a failure is logged, not raised."""
    try:
        sample(store, launcher, record)
    except Exception:
        log_fault(log, "session %s: its last usage sample failed", record.id)


def usage_view(launcher: "Launcher", record: SessionRecord, max_age: float = 0.0) -> dict[str, Any]:
    """{"cpu_seconds", "memory_bytes", "memory_peak_bytes", "processes"}: while
    its process runs, the launcher's figures now (CPU and peak counted with
    the session's earlier processes, as a sample would record them); else, or
    where this instance's launcher cannot tell, what was last recorded
    (memory and processes unknown)."""
    recorded = SessionUsage(record.cpu_seconds, record.memory_bytes, record.memory_peak_bytes,
                            record.usage_process, record.usage_process_cpu)
    live = _live_reading(launcher, record, max_age) if _running_here(launcher, record) else None
    if not live:
        return {"cpu_seconds": record.cpu_seconds, "memory_bytes": None,
                "memory_peak_bytes": record.memory_peak_bytes, "processes": None}
    now = add_sample(recorded, process_key(launcher, record), live.get("cpu_seconds"), live.get("memory_bytes"),
                     live.get("memory_peak_bytes"))
    return {"cpu_seconds": now.cpu_seconds, "memory_bytes": live.get("memory_bytes"),
            "memory_peak_bytes": now.memory_peak_bytes, "processes": live.get("processes")}


def _live_reading(launcher, record, max_age):
    """The launcher's figures for the session's process, read at most once per
    `max_age` s in this worker (a reading of figures that change all the time)."""
    key = (record.id, process_key(launcher, record))
    held = _readings.get(key, max_age)
    if held is not MISSING:
        return held
    reading = _readings.reading()
    try:
        live = launcher.usage(record.process)
    except Exception:
        log_fault(log, "session %s: its usage could not be read", record.id)
        return None
    return _readings.put(key, live, reading)


def limits_view(launcher: "Launcher", record: SessionRecord) -> dict[str, Any] | None:
    """The limits that hold for its process, while it has one (None: no process,
    one this instance cannot reach, or the launcher cannot tell)."""
    if not _running_here(launcher, record):
        return None
    limits = launcher.limits_in_force(record.process)
    return {key: limits.get(key) for key in LIMIT_KEYS} if limits else None
