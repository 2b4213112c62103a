"""A session's record and its end: lookups with their access rules, the
workspace, and ending a live session (starting -> active -> terminating ->
terminated | failed).

Every status change is a compare-and-set in the store, so concurrent deletes,
sweeps and start-ups from several workers settle on exactly one outcome, and
whoever loses a transition cleans up what it alone created.
"""
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
import logging
import os
import shutil
import time
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
import uuid

from ...store import (
    ACTIVE,
    FAILED,
    STARTING,
    SUSPENDED,
    TERMINATED,
    TERMINATING,
    Principal,
    SessionRecord,
    Store,
    StoreUnavailable,
)
from ...store.models import END, ProcessHandle
from ..errors import (
    Deleted,
    Forbidden,
    NotActive,
    NotFound,
    StoreDown,
    Unreachable,
)
from ..monitoring import metrics
from ..policy import profiles as policy
from ..upkeep import owners
from ..upkeep.transitions import SETTLED
from ..usage import sampling
from .sharing import CONTROL, OWNER, VIEW, Sharing, allows
from .suspension import Suspension
from .workspace import Workspace

if TYPE_CHECKING:
    from ..processes.launchers.base import Launcher

log = logging.getLogger("cxs.sessions")

_P = ParamSpec("_P")
_T = TypeVar("_T")

FAILED_REASONS = {"crashed", "unhealthy", "startup_failed", "memory_limit", "command_timeout", "suspend_failed",
                  "unresponsive"}
# A process that failed on its own leaves its files for FAILED_RETENTION s (for download).
RETAINED_REASONS = {"crashed", "unhealthy", "memory_limit", "command_timeout", "suspend_failed", "unresponsive"}


class SessionBase:
    def __init__(self, store: Store, launcher: "Launcher", settings: Mapping[str, Any],
                 store_factory: Callable[[], Store] | None = None,
                 profiles: Mapping[str, policy.Profile] | None = None) -> None:
        self.store = store
        self.launcher = launcher
        self.settings = settings        # a mapping: the app's config
        self.store_factory = store_factory
        self.profiles = profiles or policy.default_profiles()

    def profile_for(self, principal: Principal) -> policy.Profile:
        name = self.settings["ROLE_PROFILES"].get(principal.role, "viewer")
        return self.profiles.get(name, self.profiles["viewer"])

    def get_for(self, principal: Principal, session_id: str, need: str = OWNER,
                view: bool = False) -> SessionRecord:
        """The session if `principal` may do what `need`s (sharing.py: OWNER, the
        default, for what only its owner or an admin may do; VIEW; CONTROL):
        404 unknown, 403 otherwise. `view`: only to show it (the store may
        answer from rows it was told of changes to, Store.get_session)."""
        record = self._store_call(self.store.get_session, session_id, view)
        if record is None:
            raise NotFound("no session %s" % session_id)
        if principal.link_session is not None:     # a share link: its session, to view, and nothing else
            if principal.link_session != session_id or need != VIEW:
                raise Forbidden("a share link only shows its own session")
            return record
        if record.user == principal.user or principal.is_admin:
            return record
        granted = self._store_call(self.store.share_access, session_id, principal.user, time.time()) \
            if need != OWNER else None
        if granted is None:
            raise Forbidden("session %s belongs to another user" % session_id)
        if not allows(granted, need):
            raise Forbidden("session %s is shared with you to %s only" % (session_id, granted))
        return record

    def readable(self, principal: Principal, session_id: str, need: str = VIEW,
                 view: bool = False) -> SessionRecord:
        """The session to read; one ended by DELETE no longer exists (404
        session_deleted), one that ended otherwise still says when and why."""
        record = self.get_for(principal, session_id, need, view)
        if record.deleted_at is not None:
            raise Deleted("session %s was deleted" % session_id)
        return record

    def list_for(self, principal: Principal, limit: int, user: str | None = None,
                 statuses: Sequence[str] | None = None,
                 starting_after: uuid.UUID | str | None = None) -> tuple[list[SessionRecord], bool]:
        """A page of sessions, newest first, from after the session
        `starting_after` (the last of the previous page): (records, whether
        more follow)."""
        if principal.link_session is not None:
            raise Forbidden("a share link shows one session; it lists none")
        shared: dict[str, str] = {}
        if not principal.is_admin:
            if user not in (None, principal.user):
                raise Forbidden("only admins may list other users' sessions")
            user = principal.user
            # Sessions shared with the caller are listed beside its own.
            shared = self._store_call(self.store.shared_with, principal.user, time.time())
        before = None
        if starting_after is not None:
            mark = self._store_call(self.store.get_session, str(starting_after))
            if mark is None or not (principal.is_admin or mark.user == principal.user or mark.id in shared):
                raise NotFound("no session %s to list after" % starting_after)
            before = (mark.created_at, mark.id)
        records = self._store_call(self.store.list_sessions, user=user, statuses=statuses, limit=limit + 1,
                                   before=before, or_ids=list(shared))
        return records[:limit], len(records) > limit

    def shared_with(self, principal: Principal) -> dict[str, str]:
        """{session id: view or control} of the sessions shared with the caller now."""
        if principal.link_session is not None:
            return {principal.link_session: VIEW}
        return self._store_call(self.store.shared_with, principal.user, time.time())

    @property
    def sharing(self) -> Sharing:
        return Sharing(self)

    @property
    def suspension(self) -> Suspension:
        return Suspension(self)

    def suspend(self, principal: Principal, session_id: str) -> SessionRecord:
        return self.suspension.suspend(self.get_for(principal, session_id))

    def resume(self, principal: Principal, session_id: str) -> SessionRecord:
        return self.suspension.resume(self.get_for(principal, session_id))

    def _resume_on_use(self, record):
        if record.status == SUSPENDED and self.settings["AUTO_RESUME"]:
            self.suspension.auto_resume(record)         # raises Resuming (409, Retry-After)

    def heartbeat(self, principal: Principal, session_id: str) -> SessionRecord:
        record = self.get_for(principal, session_id, CONTROL)
        self._resume_on_use(record)
        if record.status not in (STARTING, ACTIVE):
            raise NotActive("session %s is %s" % (session_id, record.status))
        now = time.time()
        self._store_call(self.store.touch, session_id, now, 0)
        record.last_activity = now
        return record

    def workspace(self, record: SessionRecord) -> Workspace:
        return Workspace(record.workspace, self.settings["WORKSPACE_QUOTA_MB"] * 2**20)

    def workspace_for(self, principal: Principal, session_id: str, need: str = OWNER) -> Workspace:
        record = self.get_for(principal, session_id, need)
        kept = record.status in (FAILED, SUSPENDED) and not record.workspace_removed
        if not (record.is_live or kept) or not os.path.isdir(record.workspace):
            raise NotActive("session %s is %s; its files are gone" % (session_id, record.status))
        return self.workspace(record)

    def remove_expired_workspaces(self, now: float) -> int:
        """Files of failed sessions go FAILED_RETENTION s after the failure."""
        removed = 0
        for record in self.store.expired_failed_workspaces(now - self.settings["FAILED_RETENTION"],
                                                           domain=self.launcher.domain):
            shutil.rmtree(record.workspace, ignore_errors=True)
            self.store.mark_workspace_removed(record.id)
            removed += 1
        return removed

    @contextmanager
    def scratch_file(self, record: SessionRecord, state: ProcessHandle | None, kind: str,
                     suffix: str) -> Iterator[tuple[str, str]]:
        """(path here, path as ChimeraX names it) of a one-off file in the session's
        workspace, under a name its user cannot guess; removed afterwards."""
        name = ".%s-%s%s" % (kind, uuid.uuid4().hex, suffix)
        scratch = os.path.join(record.workspace, name)
        try:
            yield scratch, os.path.join(self.launcher.chimerax_path(state, record.workspace), name)
        finally:
            if os.path.lexists(scratch):
                os.unlink(scratch)

    def terminate(self, principal: Principal, session_id: str) -> None:
        record = self.get_for(principal, session_id)
        if record.status == SUSPENDED:
            self.suspension.delete(record)
        elif record.is_live:
            self._require_reach(record)
            self.end(record, "deleted")
        self._store_call(self.store.mark_deleted, session_id, time.time())

    def _require_reach(self, record):
        # Never guess about a process another host runs: the caller may retry
        # through an instance that reaches it.
        if not self.launcher.reaches(record.domain):
            raise Unreachable("session %s runs on %s (started by %s), which this instance (%s) "
                              "cannot reach" % (record.id, record.domain, record.host_id,
                                                self.settings["HOST_ID"]), retry_after=5)

    def end(self, record: SessionRecord, reason: str) -> bool:
        """End a live session for `reason`; returns False if someone else already is
        (or its process is out of this instance's reach: then nobody here may)."""
        if not self.launcher.reaches(record.domain):
            log.warning("session %s not ended (%s): its process runs on %s", record.id, reason,
                        record.domain)
            return False
        # ended_at marks when ending began, the owner who does it and why: if
        # that worker dies, the sweeper finishes the job at once.
        if not self.store.transition(record.id, [STARTING, ACTIVE], TERMINATING, ended_at=time.time(),
                                     end_reason=reason, owner=owners.current(), operation=END):
            return False
        self._finish(record, reason)
        return True

    def _finish(self, record, reason):
        final = FAILED if reason in FAILED_REASONS else TERMINATED
        keep = reason in RETAINED_REASONS and self.settings["FAILED_RETENTION"] > 0
        try:
            if record.process:
                sampling.sample_before_stop(self.store, self.launcher, record)     # after the stop it is gone
                self.launcher.stop(record.process, self.settings["STOP_GRACE_PERIOD"])
            if not keep:
                shutil.rmtree(record.workspace, ignore_errors=True)
        finally:
            ended = self.store.transition(record.id, [TERMINATING], final, ended_at=time.time(),
                                          end_reason=reason, workspace_removed=0 if keep else 1, **SETTLED)
        if ended:
            metrics.SESSIONS_ENDED.labels(reason).inc()
            log.info("session %s ended: %s (%s)", record.id, final, reason)
        return ended

    def finish_termination(self, record: SessionRecord, reason: str | None = None) -> bool:
        """Complete an end whose owner died midway (status stuck at terminating)."""
        if not self.launcher.reaches(record.domain):
            return False
        return self._finish(record, reason or record.end_reason or "deleted")

    def process_id(self, record: SessionRecord) -> object:
        return self.launcher.process_id(record.process) if record.process else None

    def memory_bytes(self, record: SessionRecord) -> int | None:
        return self.launcher.memory_bytes(record.process) if record.process else None

    def usage(self, record: SessionRecord) -> dict[str, Any]:
        """What the session uses (live while its process runs), as its view shows it."""
        return sampling.usage_view(self.launcher, record, self.settings["USAGE_VIEW_SECONDS"])

    def limits(self, record: SessionRecord) -> dict[str, Any] | None:
        return sampling.limits_view(self.launcher, record)

    def _reread(self, session_id: str) -> SessionRecord:
        """The session's row as it is now (rows are never deleted: DELETE marks them)."""
        record = self.store.get_session(session_id)
        assert record is not None, "session %s has no row" % session_id
        return record

    @staticmethod
    def _store_call(func: Callable[_P, _T], *args: _P.args, **kw: _P.kwargs) -> _T:
        try:
            return func(*args, **kw)
        except StoreUnavailable as err:
            raise StoreDown("the session store is unavailable", retry_after=5) from err
