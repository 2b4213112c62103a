"""Commands in a session: the profile's policy (decided by the agent on
ChimeraX's own parse), the history and audit line, the workspace quota."""
from functools import cached_property
import logging
import time
from typing import Any
import uuid

from ...store import (
    ACTIVE,
    Principal,
    StoreUnavailable,
)
from ..errors import (
    ChimeraXDied,
    CommandDenied,
    NotActive,
    ServiceError,
    SessionBusy,
)
from ..fetch.broker import Broker
from ..monitoring import metrics
from ..policy import profiles as policy
from ..processes import chimerax_client
from ..processes.chimerax_client import CommandResult
from .base import SessionBase
from .sharing import CONTROL
from .workspace import QuotaExceeded

log = logging.getLogger("cxs.sessions")
RENDER_WAIT = 5.0       # s a command waits for a render of the service's own to end
audit = logging.getLogger("cxs.audit")


class SessionCommands(SessionBase):
    def run_command(self, principal: Principal, session_id: str, command: str) -> CommandResult:
        """Run a command and wait for its reply (COMMAND_TIMEOUT)."""
        return self.execute(principal, session_id, command, str(uuid.uuid4()))

    def execute(self, principal: Principal, session_id: str, command: str, command_id: str,
                recorded: bool = False, timeout: float | None = None) -> CommandResult:
        """Run a command as `command_id`; its history entry is written here,
        unless it was `recorded` already (a command in the background, whose
        runner writes how it ended)."""
        record = self.get_for(principal, session_id, CONTROL)
        self._resume_on_use(record)
        if record.status != ACTIVE:
            raise NotActive("session %s is %s, not active" % (session_id, record.status))
        self._require_reach(record)
        profile = self.profile_for(principal)
        refused = policy.forbidden_characters(command)
        started = time.time()
        try:
            if refused:
                raise CommandDenied("command denied: %s" % refused, "-")
            # The agent decides, on ChimeraX's own parse, for restricted profiles.
            result = self._send(record, command, profile if profile.restricted else None, command_id, timeout)
        except CommandDenied as err:
            self._audit(principal, session_id, profile, "deny", (), " denied=%s reason=%r" % (err.verb, err.message))
            metrics.COMMANDS_DENIED.labels(err.verb or "-").inc()
            if not recorded:
                self._remember(session_id, started, command, "deny", None, None, command_id, "failed", principal)
            raise
        except ServiceError:
            if not recorded:
                self._remember(session_id, started, command, "allow", False, None, command_id, "failed", principal)
            raise
        self._audit(principal, session_id, profile, "allow", result.commands)
        if not recorded:
            status = "interrupted" if result.error and result.error.get("type") == "Interrupted" else (
                "done" if result.ok else "failed")
            self._remember(session_id, started, command, "allow", result.ok, result.duration_ms, command_id, status,
                           principal)
        return result

    def _remember(self, session_id, at, command, verdict, ok, duration_ms, command_id, status, principal):
        # The history is a record, not a condition of running: a store fault
        # loses this entry (said in the log), never the command's reply.
        try:
            self.store.add_history(session_id, at, command, verdict, ok, duration_ms,
                                   self.settings["HISTORY_MAX"], command_id=command_id, status=status,
                                   user=principal.user, via=principal.via)
        except StoreUnavailable:
            log.warning("session %s: command not recorded in its history (store unavailable)", session_id)

    def history(self, principal: Principal, session_id: str, offset: int = 0,
                limit: int | None = None) -> tuple[list[dict[str, Any]], int]:
        """(entries oldest first, total) of a session's commands."""
        self.readable(principal, session_id)
        return self._store_call(self.store.history, session_id, offset, limit, self.settings["HISTORY_MAX"])

    def history_script(self, principal: Principal, session_id: str) -> str:
        """The allowed, successful commands as a ChimeraX command script (.cxc)."""
        record = self.readable(principal, session_id)
        entries, _ = self._store_call(self.store.history, session_id, 0, None, self.settings["HISTORY_MAX"])
        kept = [e["command"] for e in entries if e["verdict"] == "allow" and e["ok"]]
        header = ["# ChimeraX commands of session %s%s: %d of %d, oldest first." % (
                      record.id, " (%s)" % record.label if record.label else "", len(kept), len(entries)),
                  "# Files are named as in the session's folder: open this script where those files are."]
        return "\n".join(header + kept) + "\n"

    @staticmethod
    def _audit(principal, session_id, profile, verdict, commands, extra=""):
        # The audit line names commands, never arguments: those may hold data.
        audit.info("user=%s session=%s profile=%s verdict=%s commands=%s%s", principal.who, session_id,
                   profile.name, verdict, ",".join(commands) or "-", extra)

    @cached_property
    def fetch_broker(self) -> Broker:
        """Answers what ChimeraX fetches while a command runs (services/fetch)."""
        return Broker(self.store, self.settings, self.launcher)

    def _send(self, record, command, profile=None, command_id=None, timeout=None):
        started = time.time()
        try:
            result = self._run_waiting_out_renders(record, command, profile, command_id, timeout)
            metrics.COMMAND_SECONDS.observe(result.duration_ms / 1000)
        except ChimeraXDied as err:
            reason = self._why_it_ended(record)
            if reason:
                self.end(record, reason)
            if reason == "memory_limit":
                raise ChimeraXDied("ChimeraX was ended by the session's memory limit (SESSION_MEMORY_MB=%d): "
                                   "the session has ended" % self.settings["SESSION_MEMORY_MB"]) from err
            raise
        finally:
            self._touch_coalesced(record)
        self._enforce_quota(record, started)
        return result

    def _why_it_ended(self, record, wait=2.0):
        """The end reason of a process whose channel closed, once it has ended:
        a process the kernel is killing closes its socket before it is gone
        (polled briefly; None if it still runs)."""
        deadline = time.monotonic() + wait
        while True:
            reason = self.launcher.exit_reason(record.process)
            if reason or time.monotonic() >= deadline:
                return reason
            time.sleep(0.02)

    def _run_waiting_out_renders(self, record, command, profile, command_id, timeout):
        """Run it; while the session is busy with the service's own work (a
        snapshot a viewer of a shared session asked for), wait for that
        briefly rather than refuse: a user's command is refused at once only
        for another user command (one at a time)."""
        deadline = time.monotonic() + RENDER_WAIT
        while True:
            try:
                return chimerax_client.run_command(
                    self.launcher.channel(record.process), command, timeout or self.settings["COMMAND_TIMEOUT"],
                    profile=profile, command_id=command_id,
                    fetcher=lambda request: self.fetch_broker.answer(record, record.user, request,
                                                                     trusted=profile is None))
            except SessionBusy as busy:
                if not getattr(busy, "service_own", False) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)

    def _enforce_quota(self, record, since):
        """What ChimeraX wrote counts towards WORKSPACE_QUOTA_MB: files a command
        wrote that take the workspace over it are removed, and the caller told."""
        removed = self.workspace(record).remove_over_quota(since)
        if removed:
            log.warning("session %s: over quota, removed %s", record.id, ", ".join(removed))
            raise QuotaExceeded("workspace quota of %d MB exceeded: removed %s, written by this command"
                                % (self.settings["WORKSPACE_QUOTA_MB"], ", ".join(removed)))

    def _touch_coalesced(self, record):
        # A burst of commands writes last_activity at most once per interval;
        # the row just read tells whether a write is due, so most need no statement.
        now, interval = time.time(), self.settings["ACTIVITY_WRITE_INTERVAL"]
        if now - record.last_activity < interval:
            return
        try:
            self.store.touch(record.id, now, interval)
        except StoreUnavailable:
            log.warning("session %s: activity not recorded (store unavailable)", record.id)
