"""What a (re)starting or stopping service does with the sessions it finds.

Runs in gunicorn's master: at start (`on_starting`) before any worker
exists, at stop (`on_exit`) after the last one ended, so no request or sweep
of this instance can race it. Other instances may share the store: one
instance's start and stop touch only the sessions, pool entries and
processes it started (HOST_ID); the sweeper's leader looks after the rest.
"""
from collections.abc import Iterable
import logging
from typing import TYPE_CHECKING, Any

from ...store import ACTIVE, STARTING, SUSPENDED, TERMINATING
from ...store.models import ProcessHandle
from ..processes.pool import WarmPool
from . import transitions
from .owners import owner_alive

if TYPE_CHECKING:
    from ..sessions.base import SessionBase

log = logging.getLogger("cxs.recovery")
TIDY_MIN_AGE = 30.0      # s


def recover(service: "SessionBase", adopt: bool = True) -> dict[str, list[Any]]:
    """Adopt live sessions whose ChimeraX is verifiably still theirs; end the
    rest (`server_restart`); kill marked processes no session accounts for."""
    launcher = service.launcher
    adopted, ended = [], []
    pool = WarmPool(service.store, launcher, service.settings)
    known = pool.adopt_or_reap() if adopt else []
    if not adopt:
        pool.drain()
    for record in _own_sessions(service):
        if adopt and record.status == ACTIVE and launcher.adoptable(record.process, record.id):
            adopted.append(record.id)
            known.append(record.process)
        elif record.status == TERMINATING or (record.status == STARTING and (adopt or record.suspend_digest)):
            # Every owner of this instance was a worker of the service that stopped.
            transitions.resolve(service, record, owner_gone=True, failed_start="server_restart")
            now = service.store.get_session(record.id)
            assert now is not None          # session rows are never deleted
            if now.status == ACTIVE:        # a ready start adopted, an unfinished suspend undone
                assert now.process is not None      # an active session has its process
                adopted.append(record.id)
                known.append(now.process)
            elif not now.is_live and now.status != SUSPENDED:
                ended.append(record.id)
        elif service.end(record, "server_restart"):
            ended.append(record.id)
    orphans = reap_orphans(service, known, host_id=service.settings["HOST_ID"])
    log.info("recovery: adopted %d session(s), ended %d, killed %d orphan(s)%s",
             len(adopted), len(ended), len(orphans), "" if adopt else " (ADOPT_ON_START=false)")
    return {"adopted": adopted, "ended": ended, "orphans": orphans}


def _own_sessions(service):
    return service.store.live_sessions(domain=service.launcher.domain, host_id=service.settings["HOST_ID"])


def reap_orphans(service: "SessionBase", known: Iterable[ProcessHandle], now: float | None = None,
                 min_age: float = 0, host_id: str | None = None) -> list[object]:
    """Stop processes carrying this service's marker (and `host_id`'s, if given)
    that none of the `known` states accounts for, and (with `now`) older than
    `min_age` s: a younger one may be a live worker's, not yet recorded."""
    known = list(known)
    orphans = [state for state in service.launcher.orphans(known, host_id=host_id)
               if now is None or owner_alive(state.started_by) is False
               or now - (state.started_at or now) > min_age]
    for state in orphans:
        log.warning("stopping ChimeraX %s: marked as ours but unknown to the store",
                    service.launcher.process_id(state))
        service.launcher.stop(state, service.settings["STOP_GRACE_PERIOD"])
    # An empty cgroup younger than that may be a start under way (of any instance here).
    for name in service.launcher.tidy(known, max(min_age, TIDY_MIN_AGE)):
        log.info("removed the cgroup of a process that is gone (%s)", name)
    return [service.launcher.process_id(state) for state in orphans]


def shutdown(service: "SessionBase", end_sessions: bool = False) -> list[str]:
    """Drain the warm pool; end every session (`server_shutdown`) if asked; and
    stop processes a worker started but had not recorded when it was stopped."""
    WarmPool(service.store, service.launcher, service.settings).drain()
    ended = []
    if end_sessions:
        ended = [r.id for r in _own_sessions(service) if service.end(r, "server_shutdown")]
    known = [r.process for r in service.store.live_sessions() if r.process]
    orphans = reap_orphans(service, known, host_id=service.settings["HOST_ID"])
    log.info("shutdown: ended %d session(s), stopped %d unrecorded process(es)", len(ended), len(orphans))
    return ended
