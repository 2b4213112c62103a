"""Sessions in transition (starting, terminating) whose owner is gone or stuck.

Each such row names the worker carrying it out (upkeep/owners.py) and what
it does (store.models.OPERATIONS). Once that worker is gone its work is
resolved at once: a cold start whose ChimeraX became ready is adopted, any
other start ends (a resume goes back to suspended), a suspend keeps the
scene where it still is, an end is finished. While the owner lives nothing
is taken over, however slow it is, unless it exceeds `transition_grace`:
then it is stuck. An owner on another machine cannot be checked: its rows
follow that time limit alone.
"""
from collections.abc import Mapping
import logging
import time
from typing import TYPE_CHECKING, Any

from ...store import ACTIVE, STARTING, TERMINATING, SessionRecord
from ...store.models import CREATE, RESUME, SUSPEND
from ..errors import StartupFailed
from ..processes import chimerax_client
from .owners import owner_alive

if TYPE_CHECKING:
    from ..processes.launchers.base import Launcher
    from ..sessions.base import SessionBase

log = logging.getLogger("cxs.transitions")

# Fields that say a transition is over: nobody owns the row any more.
SETTLED = {"owner": None, "operation": None}


def startup_grace(settings: Mapping[str, Any], launcher: "Launcher") -> float:
    """How long a process may take from spawn to active, its starter's own
    deadlines included (a scheduler's queue, ready, then the initial file
    opened), plus slack: past it a `starting` row or an unrecorded process
    has lost its starter."""
    return launcher.startup_allowance() + settings["STARTUP_TIMEOUT"] + settings["COMMAND_TIMEOUT"] + 5


READY_CHECK_SECONDS = 1.0


def transition_grace(settings: Mapping[str, Any], launcher: "Launcher") -> float:
    """How long a live owner may take over any transition before it counts as
    stuck: a start's own deadlines, or a suspend's save plus the stop."""
    return startup_grace(settings, launcher) + settings["STOP_GRACE_PERIOD"]


def began(record: SessionRecord) -> float:
    """When the current transition began."""
    if record.status == TERMINATING:
        return record.ended_at or record.last_activity
    return record.last_activity if record.operation == RESUME or record.suspend_digest else record.created_at


def resolve(service: "SessionBase", record: SessionRecord, now: float | None = None, owner_gone: bool = False,
            failed_start: str = "startup_failed") -> str | None:
    """Take over `record` if its owner is gone (or stuck); what was done, or
    None when it was left to its owner. `owner_gone`: the caller knows every
    possible owner is gone (a service starting before its workers)."""
    now = now or time.time()
    alive = False if owner_gone else owner_alive(record.owner)
    late = now - began(record) > transition_grace(service.settings, service.launcher)
    if alive is not False and not late:
        return None         # at work (or on another machine, within the time limit)
    if alive:
        log.warning("session %s: %s by %s still unfinished after %.0f s: taken over as stuck",
                    record.id, record.operation or record.status, record.owner, now - began(record))
    if record.status == STARTING:
        if record.operation == RESUME or record.suspend_digest:
            service.suspension.abandon_resume(record)
            return "resume_abandoned"
        if record.operation in (CREATE, None) and _adopt_ready(service, record, now):
            return "adopted"
        return failed_start if service.end(record, failed_start) else None
    if record.status == TERMINATING:
        if record.operation == SUSPEND:
            return service.suspension.take_over(record)
        return "ended" if service.finish_termination(record) else None
    return None


def _adopt_ready(service, record, now):
    """A cold start that got as far as a ready ChimeraX: it becomes the session."""
    launcher, state = service.launcher, record.process
    if not state or launcher.poll(state):
        return False
    try:
        ready = launcher.wait_ready(state, READY_CHECK_SECONDS)
    except StartupFailed:
        return False
    if not chimerax_client.ping(launcher.channel(ready), service.settings["HEALTH_CHECK_TIMEOUT"]):
        return False
    if service.store.transition(record.id, [STARTING], ACTIVE, process=ready, port=ready.port,
                                last_activity=now, **SETTLED):
        log.warning("session %s: its starter is gone; adopted its ready ChimeraX %s", record.id,
                    launcher.process_id(ready))
        return True
    return False
