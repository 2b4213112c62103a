"""Commands that run while their caller goes on, and their interruption.

A command started with `wait: false` runs on a thread of the worker that
took it, with a store handle of its own, through the same path as a waited
one (the policy, the fetch broker, the history); its history row is its
resource (`/commands/<id>`): `running` with its worker as owner, then
`done`, `failed` or `interrupted` with the reply. If that worker dies
first, the row says `failed` once someone reads it (the owner is gone; the
command may have run).

An interrupt stops the running command as Ctrl-C would, inside ChimeraX
(agent: POST /interrupt); a command that is not stopped within
INTERRUPT_GRACE ends its process (`unresponsive`).
"""
import copy
import logging
import threading
import time
from typing import Any
import uuid

from ...store import ACTIVE, Principal, SessionRecord
from ..errors import ChimeraXDied, CommandDenied, NotActive, NotFound, NothingToInterrupt, ServiceError, SessionBusy
from ..processes import chimerax_client
from ..processes.chimerax_client import CommandResult
from ..upkeep import owners
from .commands import RENDER_WAIT, SessionCommands
from .sharing import CONTROL

log = logging.getLogger("cxs.sessions")

RUNNING, DONE, FAILED, INTERRUPTED = "running", "done", "failed", "interrupted"
# At most this long a start waits for the agent to have its command: past a render
# of the service's own, which the command waits out first (commands.RENDER_WAIT).
HANDOVER_SECONDS = RENDER_WAIT + 5.0
HANDOVER_POLL = 0.002       # the first pause between looks; doubled up to 50 ms

# This worker's commands running in the background: a stopping worker lets
# them finish (gunicorn.conf.py worker_exit), so their replies are kept.
_background: set[threading.Thread] = set()
_background_lock = threading.Lock()


def finish_background(timeout: float) -> int:
    """Wait up to `timeout` s for this process's background commands; how many did not end."""
    deadline = time.monotonic() + timeout
    with _background_lock:
        running = list(_background)
    for thread in running:
        thread.join(max(0.0, deadline - time.monotonic()))
    return sum(thread.is_alive() for thread in running)


def outcome_of(result: CommandResult) -> str:
    if result.error and result.error.get("type") == "Interrupted":
        return INTERRUPTED
    return DONE if result.ok else FAILED


def reply_of(result: CommandResult) -> dict[str, Any]:
    """The synchronous reply's shape, kept for the command's resource."""
    return {"ok": result.ok, "command": result.command, "log": result.log, "json_values": result.json_values,
            "error": result.error, "duration_ms": result.duration_ms}


class SessionRunning(SessionCommands):
    def start_command(self, principal: Principal, session_id: str, command: str) -> dict[str, Any]:
        """Start a command and return at once: its resource ({"id", "status": "running", ...})."""
        record = self._runnable(principal, session_id)
        report = chimerax_client.health(self.launcher.channel(record.process), 2.0)
        if report and report.get("busy"):
            raise SessionBusy("the session is busy with %r for %.1f s; one command at a time"
                              % (report.get("command", "?"), report.get("seconds", 0)), retry_after=1)
        command_id = str(uuid.uuid4())
        at = time.time()
        self._store_call(self.store.add_history, record.id, at, command, "allow", None, None,
                         self.settings["HISTORY_MAX"], command_id=command_id, status=RUNNING,
                         user=principal.user, via=principal.via, owner=owners.current())
        worker = copy.copy(self)
        worker.__dict__.pop("fetch_broker", None)       # bound to this thread's store
        refused: list[ServiceError] = []
        thread = threading.Thread(target=worker._run_in_background,
                                  args=(principal, session_id, command, command_id, refused),
                                  name="command-%s" % command_id[:8], daemon=True)
        with _background_lock:
            _background.add(thread)
        thread.start()
        self._await_handover(self.launcher.channel(record.process), command_id, thread)
        if refused and isinstance(refused[0], SessionBusy):
            raise refused[0]            # another command reached the agent first
        if refused and not isinstance(refused[0], ServiceError):
            self._record_crash(command, command_id)     # if its thread could not (no store)
            raise RuntimeError("background command %s failed before ChimeraX had it" % command_id) from refused[0]
        return {"id": command_id, "session": record.id, "command": command, "status": RUNNING, "at": at}

    def _await_handover(self, channel: chimerax_client.Channel, command_id: str, thread: threading.Thread) -> None:
        """Until the agent runs the command, or its run has ended: what the caller
        does next (a second command, an interrupt) finds it running, never not
        yet begun."""
        deadline, pause = time.monotonic() + HANDOVER_SECONDS, HANDOVER_POLL
        while thread.is_alive() and (left := deadline - time.monotonic()) > 0:
            report = chimerax_client.health(channel, min(2.0, left))
            if report and report.get("id") == command_id:
                return
            thread.join(pause)
            pause = min(pause * 2, 0.05)     # each look is a round trip through ChimeraX's main thread

    def _run_in_background(self, principal, session_id, command, command_id, refused):
        opened = False
        try:
            self.store, opened = self.store_factory(), True
            verdict = "allow"
            try:
                # As long as it may run, and its interrupt's grace: the sweeper
                # interrupts it past COMMAND_MAX_RUNTIME.
                result = self.execute(principal, session_id, command, command_id, recorded=True,
                                      timeout=self.settings["COMMAND_MAX_RUNTIME"] + self.settings["INTERRUPT_GRACE"] + 30)
                status, ok, reply = outcome_of(result), result.ok, reply_of(result)
            except ServiceError as err:
                refused.append(err)
                verdict = "deny" if isinstance(err, CommandDenied) else verdict
                status, ok, reply = FAILED, None if verdict == "deny" else False, {
                    "ok": False, "command": command, "log": {}, "json_values": [],
                    "error": {"type": err.code, "message": err.message}, "duration_ms": None}
            self.store.finish_command(command_id, status, ok, reply.get("duration_ms"), reply, verdict=verdict)
        except Exception as err:
            log.exception("session %s: background command %s crashed", session_id, command_id)
            refused.append(err)
            if opened:
                self._record_crash(command, command_id)
        finally:
            if opened:
                self.store.close()
            with _background_lock:
                _background.discard(threading.current_thread())

    def _record_crash(self, command: str, command_id: str) -> None:
        """Our own fault ended the run: its resource says so, not `running` for the worker's life."""
        try:
            self.store.finish_command(command_id, FAILED, False, None, {
                "ok": False, "command": command, "log": {}, "json_values": [],
                "error": {"type": "internal_error", "message": "the service failed running it (logged)"},
                "duration_ms": None})
        except Exception:
            log.exception("background command %s: its failure could not be recorded", command_id)

    def command(self, principal: Principal, session_id: str, command_id: str) -> dict[str, Any]:
        """A command's resource: its state and, once ended, its reply."""
        self.readable(principal, session_id)
        entry = self._store_call(self.store.command_entry, session_id, command_id)
        if entry is None:
            raise NotFound("session %s has no command %s" % (session_id, command_id))
        if entry["status"] == RUNNING and entry["owner"] and owners.owner_alive(entry["owner"]) is False:
            lost = {"type": "lost", "message": "the worker running it ended before it did; the command may have run"}
            if self._store_call(self.store.finish_command, command_id, FAILED, False, None,
                                {"ok": False, "command": entry["command"], "log": {}, "json_values": [],
                                 "error": lost, "duration_ms": None}):
                entry = self._store_call(self.store.command_entry, session_id, command_id) or entry
        return resource(entry)

    def interrupt(self, principal: Principal, session_id: str, command_id: str | None = None) -> dict[str, Any]:
        """Interrupt the running command (that one, if given); wait INTERRUPT_GRACE
        for it to stop, else end the process (`unresponsive`)."""
        record = self.get_for(principal, session_id, CONTROL)
        if record.status != ACTIVE:
            raise NotActive("session %s is %s, not active" % (session_id, record.status))
        self._require_reach(record)
        return self.interrupt_record(record, command_id)

    def interrupt_record(self, record: SessionRecord, command_id: str | None = None) -> dict[str, Any]:
        assert record.process is not None, "an active session has its process"
        channel = self.launcher.channel(record.process)
        report = chimerax_client.health(channel, 2.0) or {}
        running = report.get("id") if report.get("busy") else None
        if not report.get("busy") or (command_id and running != command_id):
            raise NothingToInterrupt("no command%s is running in session %s"
                                     % (" %s" % command_id if command_id else "", record.id))
        try:
            sent = chimerax_client.interrupt(channel, running or command_id)
        except ChimeraXDied:
            sent = False
        if sent and self._stopped(channel, running, self.settings["INTERRUPT_GRACE"]):
            log.info("session %s: command %s interrupted", record.id, running)
            return {"interrupted": running, "command": report.get("command"), "session": "active"}
        log.warning("session %s: command %s did not stop within %g s of its interrupt: ending the process",
                    record.id, running, self.settings["INTERRUPT_GRACE"])
        self.end(record, "unresponsive")
        return {"interrupted": running, "command": report.get("command"), "session": "ended"}

    @staticmethod
    def _stopped(channel, command_id, grace):
        deadline = time.monotonic() + grace
        while True:
            report = chimerax_client.health(channel, max(0.5, min(2.0, deadline - time.monotonic())))
            if report is not None and (not report.get("busy") or report.get("id") != command_id):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)        # polled: the agent answers from its own thread at once

    def _runnable(self, principal, session_id):
        record = self.get_for(principal, session_id, CONTROL)
        self._resume_on_use(record)
        if record.status != ACTIVE:
            raise NotActive("session %s is %s, not active" % (session_id, record.status))
        self._require_reach(record)
        return record


def resource(entry: dict[str, Any]) -> dict[str, Any]:
    """A history row as the command's resource."""
    status = entry["status"] or (FAILED if entry["verdict"] == "deny" or entry["ok"] is False else DONE)
    shown = {"id": entry["command_id"], "command": entry["command"], "status": status, "at": entry["at"],
             "verdict": entry["verdict"], "ok": entry["ok"], "duration_ms": entry["duration_ms"],
             "user": entry["user"], "via": entry.get("via")}
    if entry.get("result"):
        shown.update({key: entry["result"].get(key) for key in ("log", "json_values", "error")})
    return shown

