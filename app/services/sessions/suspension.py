"""Suspend and resume: a session without a process, restored on demand.

Suspending saves the whole scene as a ChimeraX session file. ChimeraX can
write only into the session's workspace, which its user controls, and a
ChimeraX session file can carry code, so the file is taken from there only
once the process that wrote it has been stopped (nothing can change it any
more), read without following links and only if it is a regular file, then
kept in SUSPEND_DIR (the service account's alone) beside the HMAC-SHA256 of
its bytes in the session's row, keyed with the service's secret. Resuming
reads it, checks the HMAC before anything else, and only then writes those
very bytes into the new process's workspace for ChimeraX to open. A user can
never make the service open a session file the service did not write.

Status changes are compare-and-set like every other: ACTIVE -> TERMINATING
(commands refused) -> SUSPENDED; SUSPENDED -> STARTING -> ACTIVE. Each row
in transition names its owner (services/owners.py): however long a save
takes, nobody else touches it while that worker lives. A worker that dies
while suspending leaves a TERMINATING row that the sweeper takes over at
once (`take_over`): suspended if this suspend's file was kept (it is written
before the process is stopped), else back to active while the process still
runs, failed (workspace retained) otherwise.
"""
import hashlib
import hmac
import logging
import os
import shutil
import stat
import threading
import time
from typing import TYPE_CHECKING, NoReturn
import uuid

from ...store import ACTIVE, STARTING, SUSPENDED, TERMINATED, TERMINATING, LimitReached, SessionRecord, StoreUnavailable
from ...store.models import SUSPEND
from ..errors import (
    Capacity,
    NotActive,
    Resuming,
    ServiceError,
    SessionFileRejected,
    StoreDown,
    SuspendFailed,
    UserLimit,
)
from ..monitoring import metrics
from ..processes import chimerax_client
from ..upkeep import owners
from ..upkeep.transitions import SETTLED
from ..usage import sampling

if TYPE_CHECKING:
    from .base import SessionBase

log = logging.getLogger("cxs.suspension")
audit = logging.getLogger("cxs.audit")


class Suspension:
    def __init__(self, service: "SessionBase") -> None:
        self.service = service
        self.store = service.store
        self.launcher = service.launcher
        self.settings = service.settings

    @property
    def directory(self) -> str:
        return self.settings["SUSPEND_DIR"] or os.path.join(self.settings["WORKSPACE_ROOT"], ".suspended")

    def _file(self, session_id):
        return os.path.join(self.directory, session_id + ".cxs")

    def _digest(self, data):
        key = self.store.service_secret()
        if not key:
            raise SuspendFailed("the store has no service secret (run: flask --app wsgi db upgrade)")
        return hmac.new(key.encode(), data, hashlib.sha256).hexdigest()

    # Suspend

    def suspend(self, record: SessionRecord) -> SessionRecord:
        """Save the scene, stop the process, keep the file; the session becomes `suspended`."""
        self.service._require_reach(record)
        if record.status != ACTIVE:
            raise NotActive("session %s is %s, not active" % (record.id, record.status))
        assert record.process is not None       # an active session has its process
        if self.store.count_suspended(record.user) >= self.settings["MAX_SUSPENDED_PER_USER"]:
            raise UserLimit("%s already has %d suspended sessions (the limit): delete one first"
                            % (record.user, self.settings["MAX_SUSPENDED_PER_USER"]))
        if not self.store.transition(record.id, [ACTIVE], TERMINATING, ended_at=time.time(),
                                     owner=owners.current(), operation=SUSPEND):
            raise NotActive("session %s is no longer active" % record.id)
        _remove(self._file(record.id))      # a resume's leftover must never pass for this suspend's file
        with self.service.scratch_file(record, record.process, "suspend", ".cxs") as (scratch, inside):
            try:
                saved = chimerax_client.run_command(self.launcher.channel(record.process), 'save "%s"' % inside,
                                                    self.settings["COMMAND_TIMEOUT"])
                if not saved.ok:
                    assert saved.error is not None      # a failed result says why
                    raise SuspendFailed("ChimeraX could not save the session: %s" % saved.error["message"])
                # Read and kept while the process still runs: a failure leaves the
                # session as it was, and a worker that dies in the stop below loses
                # nothing (take_over finds this suspend's file).
                data = _read_regular(scratch, self.settings["WORKSPACE_QUOTA_MB"] * 2**20)
                try:
                    os.makedirs(self.directory, mode=0o700, exist_ok=True)
                    _write_private(self._file(record.id), data)
                except OSError as err:
                    raise SuspendFailed("the saved session could not be kept: %s" % err) from err
            except ServiceError:
                self.store.transition(record.id, [TERMINATING], ACTIVE, ended_at=None, **SETTLED)
                raise
            sampling.sample_before_stop(self.store, self.launcher, record)     # after the stop it is gone
            self.launcher.stop(record.process, self.settings["STOP_GRACE_PERIOD"])
        self._kept(record, data)
        return self.service._reread(record.id)

    def _kept(self, record, data):
        if self.store.transition(record.id, [TERMINATING], SUSPENDED, process=None, port=None, ended_at=None,
                                 suspended_at=time.time(), suspend_digest=self._digest(data), **SETTLED):
            metrics.SESSIONS_ENDED.labels("suspended").inc()
            log.info("session %s suspended (%d bytes)", record.id, len(data))
            return True
        return False

    def take_over(self, record: SessionRecord) -> str | None:
        """A suspend whose owner died: keep the scene wherever it still is. This
        suspend's file was kept (written whole, before the stop): suspended,
        its process stopped if it still runs. Else, the process still runs:
        active again, as it was. Otherwise the scene is lost: failed, the
        workspace retained."""
        state = record.process
        running = bool(state) and not self.launcher.poll(state)
        # While its process runs, only a file written since the suspend began is its own.
        if not running:
            data = self._kept_file(record, since=None)
        else:
            data = self._kept_file(record, since=record.ended_at) if record.ended_at else None
        if data is None and running:
            if self.store.transition(record.id, [TERMINATING], ACTIVE, ended_at=None, end_reason=None,
                                     **SETTLED):
                _remove_scratch(record.workspace, "suspend")
                log.warning("session %s: its suspend did not finish; active again", record.id)
                return "active"
            return None
        if data is not None:
            if running:
                assert state is not None
                sampling.sample_before_stop(self.store, self.launcher, record)
                self.launcher.stop(state, self.settings["STOP_GRACE_PERIOD"])
            if self._kept(record, data):
                return "suspended"
        if self.service.finish_termination(record, "suspend_failed"):
            return "suspend_failed"
        return None

    def _kept_file(self, record: SessionRecord, since: float | None) -> bytes | None:
        """The session's kept file; with `since`, only one written after it (this
        suspend's, not an earlier resume's leftover)."""
        path = self._file(record.id)
        try:
            if since is not None and os.stat(path).st_mtime < since:
                return None
            return _read_regular(path, None)
        except (OSError, SuspendFailed):
            return None

    # Resume

    def resume(self, record: SessionRecord) -> SessionRecord:
        """Start a process for a suspended session and restore its scene in the
        background; returns the session, now `starting` (already live: as it is)."""
        if record.status in (STARTING, ACTIVE):
            return record
        if record.status != SUSPENDED:
            raise NotActive("session %s is %s, not suspended" % (record.id, record.status))
        data = self._verified_file(record)
        try:
            resumed, claimed = self.store.resume_session(
                record.id, record.user, self.launcher.domain, self.settings["HOST_ID"],
                self.settings["MAX_SESSIONS"], self.settings["MAX_SESSIONS_PER_USER"],
                ports=self.launcher.port_range, port_is_free=self.launcher.port_is_free,
                claim_pool=self.settings["POOL_SIZE"] > 0, owner=owners.current())
        except LimitReached as err:
            if err.scope == "user":
                raise UserLimit("you already have %d live sessions (the limit)" % err.limit, retry_after=30) from err
            raise Capacity("the service is at capacity; try again later", retry_after=30) from err
        except StoreUnavailable as err:
            raise StoreDown("the session store is unavailable", retry_after=5) from err
        if not resumed:
            return self.service._reread(record.id)      # someone else resumed (or deleted) it
        resuming = self.service._reread(record.id)
        threading.Thread(target=self._restore_in_background, args=(resuming, data, claimed),
                         name="resume-%s" % record.id[:8], daemon=True).start()
        return resuming

    def _verified_file(self, record):
        try:
            data = _read_regular(self._file(record.id), None)
        except (OSError, SuspendFailed) as err:
            log.error("session %s: its session file cannot be read (%s): refused", record.id, err)
            raise SessionFileRejected("the session's saved state is missing; it cannot be resumed") from None
        if not record.suspend_digest or not hmac.compare_digest(self._digest(data), record.suspend_digest):
            log.error("session %s: its session file does not match the HMAC recorded when it was "
                      "suspended: refused, never opened", record.id)
            audit.warning("session=%s verdict=deny commands=resume reason=session-file-hmac-mismatch", record.id)
            raise SessionFileRejected("the session's saved state was changed outside the service; "
                                      "it will not be opened")
        return data

    def _restore_in_background(self, record, data, claimed=None):
        store = self.service.store_factory()
        state = {}
        try:
            if claimed:
                state = self._pooled_process(record, claimed)
            else:
                state = self.launcher.start(record.id, record.workspace, record.port)
                if not store.transition(record.id, [STARTING], STARTING, process=state):
                    # Ended (deleted) meanwhile: whoever ended it could not see this
                    # process yet, so it goes now, not after a whole start-up.
                    raise NotActive("session %s was ended while resuming" % record.id)
                state = self.launcher.wait_ready(state, self.settings["STARTUP_TIMEOUT"])
            with self.service.scratch_file(record, state, "resume", ".cxs") as (scratch, inside):
                _write_private(scratch, data, owner=_owner(record.workspace))
                opened = chimerax_client.run_command(self.launcher.channel(state), 'open "%s"' % inside,
                                                     self.settings["COMMAND_TIMEOUT"])
            if not opened.ok:
                raise SuspendFailed("ChimeraX could not restore the session: %s" % opened.error["message"])
            if not store.transition(record.id, [STARTING], ACTIVE, process=state, port=state.port,
                                    last_activity=time.time(), suspended_at=None, suspend_digest=None,
                                    **SETTLED):
                raise NotActive("session %s was ended while resuming" % record.id)
            _remove(self._file(record.id))
            log.info("session %s resumed: %s", record.id, self.launcher.process_id(state))
        except Exception as err:
            log.warning("session %s could not be resumed (%s); it stays suspended", record.id, err)
            if state:
                self.launcher.stop(state, self.settings["STOP_GRACE_PERIOD"])
            store.transition(record.id, [STARTING], SUSPENDED, process=None, port=None, **SETTLED)
        finally:
            store.close()

    def _pooled_process(self, record, claimed):
        """A ready pool process made to work in the session's kept workspace: the
        files move into the pool's directory, which then takes the workspace's
        name (a rename on one file system: the sandbox's bind and ChimeraX's
        working directory follow it)."""
        state, directory = claimed.process, claimed.directory
        for name in os.listdir(record.workspace):
            os.rename(os.path.join(record.workspace, name), os.path.join(directory, name))
        os.rmdir(record.workspace)
        self.launcher.adopt_workspace(state, directory, record.workspace)
        moved = chimerax_client.run_command(
            self.launcher.channel(state), 'cd "%s"' % self.launcher.chimerax_path(state, record.workspace),
            self.settings["COMMAND_TIMEOUT"])
        if not moved.ok:
            raise SuspendFailed("the pooled ChimeraX could not cd: %s" % moved.error["message"])
        return state

    def abandon_resume(self, record: SessionRecord) -> None:
        """A resume that never finished (its worker died): back to suspended."""
        if record.process:
            self.launcher.stop(record.process, self.settings["STOP_GRACE_PERIOD"])
        if self.store.transition(record.id, [STARTING], SUSPENDED, process=None, port=None, **SETTLED):
            log.warning("session %s: its resume did not finish; suspended again", record.id)

    # Deleting

    def delete(self, record: SessionRecord, reason: str = "deleted") -> bool:
        """End a suspended session: its file and workspace go."""
        if not self.store.transition(record.id, [SUSPENDED], TERMINATED, ended_at=time.time(),
                                     end_reason=reason, workspace_removed=1, suspend_digest=None):
            return False
        _remove(self._file(record.id))
        shutil.rmtree(record.workspace, ignore_errors=True)
        metrics.SESSIONS_ENDED.labels(reason).inc()
        log.info("suspended session %s ended (%s)", record.id, reason)
        return True

    def remove_expired(self, now: float) -> int:
        """Suspended sessions older than SUSPENDED_RETENTION are deleted."""
        cutoff = now - self.settings["SUSPENDED_RETENTION"]
        return sum(1 for record in self.store.suspended_sessions(cutoff, domain=self.launcher.domain)
                   if self.delete(record, "suspended_expired"))

    def auto_resume(self, record: SessionRecord) -> NoReturn:
        """A command or heartbeat to a suspended session (AUTO_RESUME): start the resume, ask to retry."""
        self.resume(record)
        raise Resuming("session %s was suspended and is being resumed; retry shortly" % record.id,
                       retry_after=2)


def _read_regular(path, limit):
    """The bytes of `path` if it is a regular file (never through a link), at most `limit`."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as err:      # absent (ChimeraX said saved, wrote nothing) or a link
        raise SuspendFailed("the saved session cannot be read: %s" % err.strerror) from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise SuspendFailed("the saved session is not a regular file")
        if limit is not None and info.st_size > limit:
            raise SuspendFailed("the saved session is larger than the workspace quota")
        with os.fdopen(descriptor, "rb", closefd=False) as stream:
            return stream.read()
    finally:
        os.close(descriptor)


def _write_private(path, data, owner=None):
    temporary = "%s.%s.tmp" % (path, uuid.uuid4().hex)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
        if owner:
            os.chown(temporary, *owner)     # the sandbox's uid must read it
        os.replace(temporary, path)
    except BaseException:
        _remove(temporary)
        raise


def _remove_scratch(workspace, kind):
    """One-off files of `kind` (sessions.scratch_file) an interrupted operation left."""
    try:
        names = os.listdir(workspace)
    except OSError:
        return
    for name in names:
        if name.startswith(".%s-" % kind):
            _remove(os.path.join(workspace, name))


def _owner(directory):
    info = os.stat(directory)
    return (info.st_uid, info.st_gid) if os.geteuid() == 0 and info.st_uid != 0 else None


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
