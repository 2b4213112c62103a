"""The sweeper: ends dead, stuck, idle, too old and unresponsive sessions,
samples the usage of the others, and deletes sessions past their retention.

Every gunicorn worker of every instance schedules the job, but a sweep runs
only in the one process holding the leader lock of its launcher's domain
(`store.leader_lock`: a flock beside a SQLite file, an advisory lock on
PostgreSQL). The lock goes with its holder's death, so another process takes
over at its next tick; there is never more than one sweeper per domain, and
never none for long. A sweeper touches only sessions its launcher reaches.
"""
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from ...store import ACTIVE, STARTING, TERMINATING
from ...store.leader import AdvisoryLock, FileLock
from ...store.models import END_REASONS
from ..errors import ServiceError, SessionBusy, log_fault
from ..processes import chimerax_client
from ..usage import retention, sampling
from . import transitions
from .recovery import reap_orphans
from .transitions import startup_grace

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

    from ..processes.pool import WarmPool
    from ..sessions.base import SessionBase
    from ..webhooks.delivery import Sender

log = logging.getLogger("cxs.sweeper")


class Sweeper:
    def __init__(self, service: "SessionBase", settings: Mapping[str, Any]) -> None:
        self.service = service
        self.store = service.store
        self.launcher = service.launcher
        self.settings = settings

    def sweep(self, now: float | None = None) -> dict[str, int]:
        """One pass over a snapshot of the live sessions; returns {reason: count}."""
        now = now or time.time()
        ended: dict[str, int] = {}
        self.launcher.refresh()
        try:
            self.service.remove_expired_workspaces(now)
            self.service.suspension.remove_expired(now)
        except Exception:
            log_fault(log, "sweeper: removing expired workspaces or suspended sessions failed")
        for record in self.store.live_sessions(domain=self.launcher.domain):
            try:
                reason = self._check(record, now)
                if reason:
                    ended[reason] = ended.get(reason, 0) + 1
            except Exception:
                # One bad session never stops the sweep.
                log_fault(log, "sweeper: session %s could not be checked", record.id)
        try:
            self.reap_orphans(now)
        except Exception:
            log_fault(log, "sweeper: reaping orphans failed")
        try:
            retention.retire(self.store, self.settings["SESSION_RETENTION_DAYS"], now)
        except Exception:
            log_fault(log, "sweeper: retention failed")
        return ended

    def reap_orphans(self, now: float) -> list[object]:
        """Stop processes of this service that neither a session nor the pool
        accounts for: a worker killed between spawning one and recording it
        leaves them. Only those whose starter is gone, or older than the
        start-up grace: a younger one may be a live worker's, not yet recorded."""
        # The pool first: a claim moves a process from the pool's rows to a
        # session's (never back), so one claimed between the two reads is in the
        # second; read the other way round, it would be in neither, and stopped.
        known = [e.process for e in self.store.pool_entries() if e.process]
        known += [r.process for r in self.store.live_sessions() if r.process]
        return reap_orphans(self.service, known, now, startup_grace(self.settings, self.launcher))

    def _check(self, record, now):
        settings = self.settings
        if record.status in (STARTING, TERMINATING):
            # Its owner's, until that worker is gone or stuck (transitions.py).
            done = transitions.resolve(self.service, record, now)
            return done if done in END_REASONS else None
        if record.status != ACTIVE:
            return None
        # A process that ended is reaped (as crashed, unless its launcher knows
        # better) before any idle or age rule.
        ended = self.launcher.exit_reason(record.process)
        if ended:
            return self._end(record, ended)
        try:
            sampling.sample(self.store, self.launcher, record)
        except Exception:
            # Accounting never keeps a session from being checked.
            log_fault(log, "sweeper: usage of session %s could not be sampled", record.id)
        limit = settings["MAX_RSS_MB"]
        if limit > 0:
            rss = self.launcher.memory_bytes(record.process)
            if rss is not None and rss > limit * 2**20:
                log.warning("session %s uses %d MiB (limit %d MiB)", record.id, rss // 2**20, limit)
                return self._end(record, "memory_limit")
        report = chimerax_client.health(self.launcher.channel(record.process), settings["HEALTH_CHECK_TIMEOUT"])
        # A command running is use, however long ago the last one ended (activity
        # is written when a command ends): idleness waits for it.
        if now >= record.last_activity + record.idle_timeout and not (report and report.get("busy")):
            return self._idle(record)
        if now >= record.created_at + record.max_lifetime:
            return self._end(record, "max_lifetime")
        # Busy is not hung: the agent answers from its own thread while a command runs.
        if report and report.get("busy") and report.get("seconds", 0) > settings["COMMAND_MAX_RUNTIME"]:
            # Interrupted as a user would (the session keeps its models); only a
            # command that ignores that ends the process (`unresponsive`).
            log.warning("session %s: command %r still running after %.0f s (COMMAND_MAX_RUNTIME): interrupting it",
                        record.id, report.get("command"), report["seconds"])
            try:
                outcome = self.service.interrupt_record(record, report.get("id"))
            except ServiceError:
                return None         # it ended meanwhile
            return "unresponsive" if outcome["session"] == "ended" else None
        healthy = report is not None
        failures = self.store.record_health(record.id, healthy)
        if not healthy:
            log.warning("session %s failed health check %d/%d", record.id, failures,
                        settings["HEALTH_CHECK_FAILURES"])
            if failures >= settings["HEALTH_CHECK_FAILURES"]:
                return self._end(record, "unhealthy")
        return None

    def _idle(self, record):
        if self.settings["IDLE_ACTION"] == "suspend":
            try:
                self.service.suspension.suspend(record)
                return "suspended"
            except SessionBusy:
                return None         # a command began since the health check: in use, not idle
            except ServiceError as err:
                log.warning("session %s could not be suspended (%s): ending it", record.id, err.message)
        return self._end(record, "idle_timeout")

    def _end(self, record, reason):
        return reason if self.service.end(record, reason) else None


class SweeperSchedule:
    """The APScheduler jobs of one worker; they run only while it holds the lock
    (the webhook sender's, while it holds that one: services/webhooks)."""

    def __init__(self, make_sweeper: Callable[[], tuple[Sweeper, Callable[[], None]]], settings: Mapping[str, Any],
                 lock: FileLock | AdvisoryLock,
                 make_pool: Callable[[], tuple["WarmPool", Callable[[], None]]] | None = None,
                 webhooks: "tuple[Sender, FileLock | AdvisoryLock, float] | None" = None) -> None:
        self.make_sweeper = make_sweeper     # () -> (Sweeper, close callable)
        self.make_pool = make_pool           # () -> (WarmPool, close callable)
        self.webhooks = webhooks             # (sender, its lock, seconds between its ticks)
        self.settings = settings
        self.lock = lock
        self.scheduler: BackgroundScheduler | None = None
        self.announced = False

    def start(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler
        interval = self.settings["SWEEP_INTERVAL"]
        if interval <= 0:
            log.warning("sweeper disabled: SWEEP_INTERVAL=%s", interval)
            return
        self.scheduler = BackgroundScheduler(daemon=True)
        self.scheduler.add_job(self.tick, "interval", seconds=interval, max_instances=1,
                               coalesce=True, id="sweep")
        if self.make_pool is not None and self.settings["POOL_SIZE"] > 0:
            self.scheduler.add_job(self.pool_tick, "interval", seconds=self.settings["POOL_CHECK_INTERVAL"],
                                   max_instances=1, coalesce=True, id="pool",
                                   next_run_time=datetime.now())
        if self.webhooks is not None:
            self._next_webhook_tick(0)
        self.scheduler.start()

    def _next_webhook_tick(self, delay: float) -> None:
        # One job at a time, each added when the last ends: a tick longer than
        # the interval (a slow receiver) never has a second one queued behind it.
        if self.scheduler is not None:
            self.scheduler.add_job(self.webhook_tick, "date", run_date=datetime.now() + timedelta(seconds=delay),
                                   id="webhooks", replace_existing=True, misfire_grace_time=None)

    def webhook_tick(self) -> None:
        """Send the outbox's due events, in the one process (of every host) holding the webhook lock."""
        assert self.webhooks is not None        # scheduled only with a sender
        sender, lock, interval = self.webhooks
        try:
            if lock.try_acquire():
                sender.tick()
        except Exception:
            log_fault(log, "webhook delivery failed")        # the next tick tries again
        finally:
            self._next_webhook_tick(interval)

    def pool_tick(self) -> None:
        """Keep the warm pool full: drop dead/old entries, start replacements."""
        if not self.lock.try_acquire():
            self.announced = False
            return
        assert self.make_pool is not None       # the job is scheduled only with a pool
        pool, close = self.make_pool()
        try:
            pool.maintain()
            pool.fill()
        except Exception:
            log_fault(log, "pool maintenance failed")     # the next tick tries again
        finally:
            close()

    def shutdown(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        self.lock.release()
        if self.webhooks is not None:
            self.webhooks[1].release()

    def tick(self) -> None:
        if not self.lock.try_acquire():
            self.announced = False
            return
        # Said once per leadership (the pool's job may have taken the lock first).
        if not self.announced:
            self.announced = True
            s = self.settings
            log.info("sweeper: %s pid %d runs the sweeps every %gs (idle timeout default %ss, "
                     "max lifetime %ss, health check timeout %gs x %d failures)",
                     s["HOST_ID"], os.getpid(), s["SWEEP_INTERVAL"], s["SESSION_IDLE_TIMEOUT"],
                     s["SESSION_MAX_LIFETIME"], s["HEALTH_CHECK_TIMEOUT"], s["HEALTH_CHECK_FAILURES"])
        sweeper, close = self.make_sweeper()
        try:
            ended = sweeper.sweep()
            if self.make_pool is not None:
                pool, close_pool = self.make_pool()
                try:
                    # Idle pooled processes are health-checked too (after the
                    # sweep: its one scheduler query serves the pool as well).
                    pool.maintain(ping=True)
                finally:
                    close_pool()
            sweeper.store.record_sweep(self.settings["HOST_ID"], os.getpid())
            if ended:
                log.info("sweeper ended sessions: %s", ended)
        except Exception:
            log_fault(log, "sweep failed")
        finally:
            close()
