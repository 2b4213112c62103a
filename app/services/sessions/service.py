"""SessionService: creating a session and starting its ChimeraX (a warm pool
process or a cold start, in the background when a scheduler may queue it).
What a session does once started lives in its bases: base.py (lookups, the
end), commands.py, exports.py."""
import logging
import os
import shutil
import threading
import time
from typing import BinaryIO
import uuid

from ...store import (
    ACTIVE,
    FAILED,
    STARTING,
    LimitReached,
    Principal,
    SessionRecord,
    StoreUnavailable,
)
from ...store.models import CREATE, CREATE_MORE
from ..errors import (
    Capacity,
    ChimeraXUnavailable,
    ServiceError,
    StartupFailed,
    StoreDown,
    UnreadableStructure,
    UserLimit,
)
from ..monitoring import metrics
from ..processes import chimerax_client
from ..upkeep import owners
from ..upkeep.transitions import SETTLED
from .exports import SessionExports
from .workspace import check_name

log = logging.getLogger("cxs.sessions")


class SessionService(SessionExports):
    def create(self, principal: Principal, label: str | None = None, idle_timeout: int | None = None, wait: bool = True,
               initial_file: tuple[str, BinaryIO] | None = None) -> SessionRecord:
        """`initial_file`: (name, stream) stored in the workspace and opened
        before the session turns active; a file ChimeraX cannot open fails the create."""
        if initial_file is not None:
            check_name(initial_file[0])         # before anything is reserved
        if not self.launcher.available:
            raise ChimeraXUnavailable("ChimeraX cannot be started: %s" % self.launcher.describe(),
                                      retry_after=60)
        now = time.time()
        session_id = str(uuid.uuid4())
        record = SessionRecord(
            id=session_id, user=principal.user, label=label, status=STARTING,
            created_at=now, last_activity=now,
            idle_timeout=idle_timeout or self.settings["SESSION_IDLE_TIMEOUT"],
            max_lifetime=self.settings["SESSION_MAX_LIFETIME"],
            workspace=os.path.join(self.settings["WORKSPACE_ROOT"], session_id),
            host_id=self.settings["HOST_ID"], domain=self.launcher.domain,
            owner=owners.current(), operation=CREATE if initial_file is None else CREATE_MORE)
        try:
            claimed = self.store.insert_session(
                record, self.settings["MAX_SESSIONS"], self.settings["MAX_SESSIONS_PER_USER"],
                ports=self.launcher.port_range, port_is_free=self.launcher.port_is_free,
                claim_pool=self.settings["POOL_SIZE"] > 0)
        except LimitReached as err:
            if err.scope == "user":
                raise UserLimit("you already have %d live sessions (the limit)" % err.limit,
                                retry_after=30) from err
            raise Capacity("the service is at capacity; try again later", retry_after=30) from err
        except StoreUnavailable as err:
            raise StoreDown("the session store is unavailable", retry_after=5) from err
        log.info("session %s created for %s (label=%r)", session_id, principal.who, label)
        opening = None
        try:
            if claimed:
                assert claimed.process is not None      # a claimed entry is a ready process
                self.launcher.adopt_workspace(claimed.process, claimed.directory, record.workspace)
            else:
                self.launcher.make_workspace(record.workspace)
            if initial_file is not None:
                opening = self.workspace(record).save(initial_file[0], initial_file[1],
                                                      self.settings["MAX_UPLOAD_BYTES"]).name
        except Exception:
            if claimed:
                self.launcher.stop(claimed.process, self.settings["STOP_GRACE_PERIOD"])
                shutil.rmtree(claimed.directory, ignore_errors=True)
            shutil.rmtree(record.workspace, ignore_errors=True)
            self._mark_startup_failed(self.store, record.id)
            raise
        if claimed and self._activate_pooled(record, claimed, opening):
            metrics.SESSIONS_CREATED.labels("pool").inc()
            return self._reread(session_id)
        metrics.SESSIONS_CREATED.labels("cold").inc()
        if wait and not self.launcher.startup_allowance():
            self._start(record, self.store, opening)
            return self._reread(session_id)
        finished = _Finished()
        threading.Thread(target=self._start_in_background, args=(record, opening, finished),
                         name="start-%s" % session_id[:8], daemon=True).start()
        if not wait:
            return record
        # A scheduler may keep the job queued far longer than a request should
        # wait: as long as a start may take, then `starting` (202, with the
        # scheduler's pending_reason) while the start goes on.
        if finished.wait(self.settings["STARTUP_TIMEOUT"]) and finished.error is not None:
            raise finished.error
        return self._store_call(self._reread, session_id)

    def _activate_pooled(self, record, claimed, opening):
        """Turn a claimed pool process into this session; False: start cold instead."""
        state = claimed.process
        try:
            moved = chimerax_client.run_command(
                self.launcher.channel(state), 'cd "%s"' % self.launcher.chimerax_path(state, record.workspace),
                self.settings["COMMAND_TIMEOUT"])
            if not moved.ok:
                raise StartupFailed("pooled ChimeraX could not cd: %s" % moved.error["message"])
            if opening:
                self._open_initial(state, opening)
        except UnreadableStructure:
            self._discard(record, state)
            self._mark_startup_failed(self.store, record.id)
            raise
        except ServiceError as err:
            log.warning("session %s: pooled process unusable (%s); starting cold", record.id, err)
            self.launcher.stop(state, self.settings["STOP_GRACE_PERIOD"])
            self.store.transition(record.id, [STARTING], STARTING, process=None, operation=CREATE_MORE)
            return False
        if not self.store.transition(record.id, [STARTING], ACTIVE, process=state,
                                     port=state.port, last_activity=time.time(), **SETTLED):
            self._discard(record, state)
            return True
        log.info("session %s active from the warm pool: %s", record.id, self.launcher.process_id(state))
        return True

    def _start_in_background(self, record, opening, finished):
        store = self.store_factory()
        try:
            self._start(record, store, opening)
        except ServiceError as err:
            finished.error = err        # already logged and recorded as failed
        except Exception:
            log.exception("session %s: background start-up crashed", record.id)
        finally:
            store.close()
            finished.set()

    def _start(self, record, store, opening=None):
        state = {}
        try:
            spawned = time.perf_counter()
            state = self.launcher.start(record.id, record.workspace, record.port)
            if not store.transition(record.id, [STARTING], STARTING, process=state):
                raise _Cancelled()
            state = self.launcher.wait_ready(state, self.settings["STARTUP_TIMEOUT"],
                                             progress=lambda waiting: store.transition(
                                                 record.id, [STARTING], STARTING, process=waiting))
            metrics.SPAWN_SECONDS.observe(time.perf_counter() - spawned)
            if opening:
                self._open_initial(state, opening)
            if not store.transition(record.id, [STARTING], ACTIVE, process=state, port=state.port,
                                    last_activity=time.time(), **SETTLED):
                raise _Cancelled()
            log.info("session %s active: %s", record.id, self.launcher.process_id(state))
        except _Cancelled:
            # Deleted while starting: whoever deleted it could not see this process yet.
            log.info("session %s was ended during start-up; stopping its process", record.id)
            self._discard(record, state)
        except Exception as err:
            log.warning("session %s failed to start: %s", record.id, err)
            self._discard(record, state)
            # Only from STARTING: a concurrent delete owns a TERMINATING session.
            self._mark_startup_failed(store, record.id)
            if isinstance(err, ServiceError):
                raise
            raise StartupFailed("ChimeraX could not be started") from err

    def _open_initial(self, state, name):
        # The name passed the workspace's own checks; quoting keeps it one word.
        result = chimerax_client.run_command(self.launcher.channel(state), 'open "%s"' % name,
                                             self.settings["COMMAND_TIMEOUT"])
        if not result.ok:
            raise UnreadableStructure("ChimeraX could not open %s: %s" % (name, result.error["message"]))

    @staticmethod
    def _mark_startup_failed(store, session_id):
        if store.transition(session_id, [STARTING], FAILED, ended_at=time.time(),
                            end_reason="startup_failed", **SETTLED):
            metrics.SESSIONS_ENDED.labels("startup_failed").inc()

    def _discard(self, record, state):
        if state:
            self.launcher.stop(state, self.settings["STOP_GRACE_PERIOD"])
        shutil.rmtree(record.workspace, ignore_errors=True)


class _Cancelled(Exception):
    pass


class _Finished(threading.Event):
    """A background start's end, and its error for a caller still waiting."""
    error: ServiceError | None = None
