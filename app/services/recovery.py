"""What a (re)starting or stopping service does with the sessions it finds.

Runs once per server start in gunicorn's master (`on_starting`), before any
worker exists, so no request or sweep can race it.
"""
import logging

from ..store import ACTIVE, TERMINATING
from .pool import WarmPool

log = logging.getLogger("cxs.recovery")


def recover(service, adopt=True):
    """Adopt live sessions whose ChimeraX is verifiably still theirs; end the
    rest (`server_restart`); kill marked processes no session accounts for."""
    launcher = service.launcher
    adopted, ended = [], []
    pool = WarmPool(service.store, launcher, service.settings)
    known = pool.adopt_or_reap() if adopt else set()
    if not adopt:
        pool.drain()
    for record in service.store.live_sessions():
        if adopt and record.status == ACTIVE and launcher.adoptable(record.process, record.id):
            adopted.append(record.id)
            known.add(record.process["pid"])
        elif record.status == TERMINATING:
            service.finish_termination(record)
            ended.append(record.id)
        elif service.end(record, "server_restart"):
            ended.append(record.id)
    orphans = launcher.orphans(known)
    for state in orphans:
        log.warning("killing ChimeraX pid %s: marked as ours but unknown to the store", state["pid"])
        launcher.stop(state, service.settings["STOP_GRACE_PERIOD"])
    log.info("recovery: adopted %d session(s), ended %d, killed %d orphan(s)%s",
             len(adopted), len(ended), len(orphans), "" if adopt else " (ADOPT_ON_START=false)")
    return {"adopted": adopted, "ended": ended, "orphans": [s["pid"] for s in orphans]}


def shutdown(service):
    """End every live session (`server_shutdown`), for SHUTDOWN_TERMINATES_SESSIONS."""
    ended = [r.id for r in service.store.live_sessions() if service.end(r, "server_shutdown")]
    log.info("shutdown: ended %d session(s)", len(ended))
    return ended
