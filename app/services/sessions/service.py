"""Session lifecycle: starting -> active -> terminating -> terminated | failed.

Every status change is a compare-and-set in the store, so concurrent deletes,
sweeps and start-ups from several workers settle on exactly one outcome, and
whoever loses a transition cleans up what it alone created.
"""
from contextlib import contextmanager
import logging
import os
import shutil
import threading
import time
import uuid

from ...store import (
    ACTIVE,
    FAILED,
    STARTING,
    SUSPENDED,
    TERMINATED,
    TERMINATING,
    LimitReached,
    SessionRecord,
    StoreUnavailable,
)
from ...store.models import CREATE, CREATE_MORE, END
from ..errors import (
    Capacity,
    ChimeraXDied,
    ChimeraXUnavailable,
    CommandDenied,
    Deleted,
    Forbidden,
    NotActive,
    NotFound,
    RenderingUnavailable,
    SceneTooLarge,
    ServiceError,
    SnapshotFailed,
    StartupFailed,
    StoreDown,
    Unreachable,
    UnreadableStructure,
    UserLimit,
)
from ..monitoring import metrics
from ..policy import profiles as policy
from ..processes import chimerax_client
from ..upkeep import owners
from ..upkeep.transitions import SETTLED
from . import render
from .workspace import QuotaExceeded, Workspace, check_name

log = logging.getLogger("cxs.sessions")
audit = logging.getLogger("cxs.audit")

FAILED_REASONS = {"crashed", "unhealthy", "startup_failed", "memory_limit", "command_timeout", "suspend_failed"}
# A process that failed on its own leaves its files for FAILED_RETENTION s (for download).
RETAINED_REASONS = {"crashed", "unhealthy", "memory_limit", "command_timeout", "suspend_failed"}


class SessionService:
    def __init__(self, store, launcher, settings, store_factory=None, profiles=None):
        self.store = store
        self.launcher = launcher
        self.settings = settings        # a mapping: the app's config
        self.store_factory = store_factory
        self.profiles = profiles or policy.default_profiles()

    def profile_for(self, principal):
        name = self.settings["ROLE_PROFILES"].get(principal.role, "viewer")
        return self.profiles.get(name, self.profiles["viewer"])

    # Lookups

    def get_for(self, principal, session_id):
        """The session if `principal` may see it: 404 unknown, 403 someone else's."""
        record = self._store_call(self.store.get_session, session_id)
        if record is None:
            raise NotFound("no session %s" % session_id)
        if record.user != principal.user and not principal.is_admin:
            raise Forbidden("session %s belongs to another user" % session_id)
        return record

    def readable(self, principal, session_id):
        """The session to read; one ended by DELETE no longer exists (404
        session_deleted), one that ended otherwise still says when and why."""
        record = self.get_for(principal, session_id)
        if record.deleted_at is not None:
            raise Deleted("session %s was deleted" % session_id)
        return record

    def list_for(self, principal, limit, user=None, statuses=None, starting_after=None):
        """A page of sessions, newest first, from after the session
        `starting_after` (the last of the previous page): (records, whether
        more follow)."""
        if not principal.is_admin:
            if user not in (None, principal.user):
                raise Forbidden("only admins may list other users' sessions")
            user = principal.user
        before = None
        if starting_after is not None:
            mark = self._store_call(self.store.get_session, str(starting_after))
            if mark is None or not (principal.is_admin or mark.user == principal.user):
                raise NotFound("no session %s to list after" % starting_after)
            before = (mark.created_at, mark.id)
        records = self._store_call(self.store.list_sessions, user=user, statuses=statuses, limit=limit + 1,
                                   before=before)
        return records[:limit], len(records) > limit

    # Creation

    def create(self, principal, label=None, idle_timeout=None, wait=True, initial_file=None):
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
        log.info("session %s created for %s (label=%r)", session_id, principal.user, label)
        opening = None
        try:
            if claimed:
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
            return self.store.get_session(session_id)
        metrics.SESSIONS_CREATED.labels("cold").inc()
        if wait and not self.launcher.startup_allowance():
            self._start(record, self.store, opening)
            return self.store.get_session(session_id)
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
        return self._store_call(self.store.get_session, session_id)

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

    # Activity

    @property
    def suspension(self):
        from .suspension import Suspension
        return Suspension(self)

    def suspend(self, principal, session_id):
        return self.suspension.suspend(self.get_for(principal, session_id))

    def resume(self, principal, session_id):
        return self.suspension.resume(self.get_for(principal, session_id))

    def _resume_on_use(self, record):
        if record.status == SUSPENDED and self.settings["AUTO_RESUME"]:
            self.suspension.auto_resume(record)         # raises Resuming (409, Retry-After)

    def heartbeat(self, principal, session_id):
        record = self.get_for(principal, session_id)
        self._resume_on_use(record)
        if record.status not in (STARTING, ACTIVE):
            raise NotActive("session %s is %s" % (session_id, record.status))
        now = time.time()
        self._store_call(self.store.touch, session_id, now, 0)
        record.last_activity = now
        return record

    def run_command(self, principal, session_id, command):
        record = self.get_for(principal, session_id)
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
            result = self._send(record, command, profile if profile.restricted else None)
        except CommandDenied as err:
            self._audit(principal, session_id, profile, "deny", (), " denied=%s reason=%r" % (err.verb, err.message))
            metrics.COMMANDS_DENIED.labels(err.verb or "-").inc()
            self._remember(session_id, started, command, "deny", None, None)
            raise
        except ServiceError:
            self._remember(session_id, started, command, "allow", False, None)
            raise
        self._audit(principal, session_id, profile, "allow", result.commands)
        self._remember(session_id, started, command, "allow", result.ok, result.duration_ms)
        return result

    def _remember(self, session_id, at, command, verdict, ok, duration_ms):
        # The history is a record, not a condition of running: a store fault
        # loses this entry (said in the log), never the command's reply.
        try:
            self.store.add_history(session_id, at, command, verdict, ok, duration_ms,
                                   self.settings["HISTORY_MAX"])
        except StoreUnavailable:
            log.warning("session %s: command not recorded in its history (store unavailable)", session_id)

    def history(self, principal, session_id, offset=0, limit=None):
        """(entries oldest first, total) of a session's commands."""
        self.readable(principal, session_id)
        return self._store_call(self.store.history, session_id, offset, limit)

    def history_script(self, principal, session_id):
        """The allowed, successful commands as a ChimeraX command script (.cxc)."""
        record = self.readable(principal, session_id)
        entries, _ = self._store_call(self.store.history, session_id)
        kept = [e["command"] for e in entries if e["verdict"] == "allow" and e["ok"]]
        header = ["# ChimeraX commands of session %s%s: %d of %d, oldest first." % (
                      record.id, " (%s)" % record.label if record.label else "", len(kept), len(entries)),
                  "# Files are named as in the session's folder: open this script where those files are."]
        return "\n".join(header + kept) + "\n"

    @staticmethod
    def _audit(principal, session_id, profile, verdict, commands, extra=""):
        # The audit line names commands, never arguments: those may hold data.
        audit.info("user=%s session=%s profile=%s verdict=%s commands=%s%s", principal.user, session_id,
                   profile.name, verdict, ",".join(commands) or "-", extra)

    def _send(self, record, command, profile=None):
        started = time.time()
        try:
            result = chimerax_client.run_command(self.launcher.channel(record.process), command,
                                                 self.settings["COMMAND_TIMEOUT"], profile=profile)
            metrics.COMMAND_SECONDS.observe(result.duration_ms / 1000)
        except ChimeraXDied:
            if self.launcher.poll(record.process):
                self.end(record, "crashed")
            raise
        finally:
            self._touch_coalesced(record)
        self._enforce_quota(record, started)
        return result

    def _enforce_quota(self, record, since):
        """What ChimeraX wrote counts towards WORKSPACE_QUOTA_MB: files a command
        wrote that take the workspace over it are removed, and the caller told."""
        removed = self.workspace(record).remove_over_quota(since)
        if removed:
            log.warning("session %s: over quota, removed %s", record.id, ", ".join(removed))
            raise QuotaExceeded("workspace quota of %d MB exceeded: removed %s, written by this command"
                                % (self.settings["WORKSPACE_QUOTA_MB"], ", ".join(removed)))

    # Workspace files and snapshots

    def workspace(self, record):
        return Workspace(record.workspace, self.settings["WORKSPACE_QUOTA_MB"] * 2**20)

    def workspace_for(self, principal, session_id):
        record = self.get_for(principal, session_id)
        kept = record.status in (FAILED, SUSPENDED) and not record.workspace_removed
        if not (record.is_live or kept) or not os.path.isdir(record.workspace):
            raise NotActive("session %s is %s; its files are gone" % (session_id, record.status))
        return self.workspace(record)

    def remove_expired_workspaces(self, now):
        """Files of failed sessions go FAILED_RETENTION s after the failure."""
        removed = 0
        for record in self.store.expired_failed_workspaces(now - self.settings["FAILED_RETENTION"],
                                                           domain=self.launcher.domain):
            shutil.rmtree(record.workspace, ignore_errors=True)
            self.store.mark_workspace_removed(record.id)
            removed += 1
        return removed

    def snapshot(self, principal, session_id, width, height, supersample):
        """A PNG of the current view; its size is within the API's bounds (schemas/bounds.py)."""
        def rendered(result, path):
            if not result.ok:
                if render.rendering_unavailable(result.error):
                    raise RenderingUnavailable("offscreen rendering is not available for this "
                                               "ChimeraX (install OSMesa: libosmesa6)", retry_after=None)
                self._out_of_memory(result, "drawing %d x %d" % (width, height))
                raise SnapshotFailed("ChimeraX could not render: %s" % result.error["message"])
        return self._export(principal, session_id, "snapshot", ".png", " width %d height %d supersample %d"
                            % (width, height, supersample), rendered,
                            needs=render.BYTES_PER_PIXEL * width * height)

    def scene(self, principal, session_id, options):
        """The current scene as binary glTF, written by ChimeraX's own glTF writer,
        once a frame has brought it up to date and drawn it (render.py)."""
        limit = self.settings["SCENE_MAX_BYTES"]

        def failed(result):
            self._out_of_memory(result, "building the scene")
            raise SnapshotFailed("ChimeraX could not export the scene: %s" % result.error["message"])

        def prepare(send, frame):
            drawn = send("%s ; %s" % (render.drawn_frame(frame), render.TRIANGLES))
            if not drawn.ok and render.rendering_unavailable(drawn.error):
                drawn = send("%s ; %s" % (render.FRAME, render.TRIANGLES))     # no OpenGL: nothing drawn
            if not drawn.ok:
                failed(drawn)
            triangles = render.shown_triangles(drawn)
            if (not options.get("instancing") and triangles is not None
                    and triangles * render.GLTF_BYTES_PER_TRIANGLE > limit):
                raise SceneTooLarge("the scene shows %d triangles, at least %d bytes as glTF, over SCENE_MAX_BYTES "
                                    "(%d): hide or close models, or lower their detail"
                                    % (triangles, triangles * render.GLTF_BYTES_PER_TRIANGLE, limit))

        def exported(result, path):
            if not result.ok:
                failed(result)
            size = os.path.getsize(path)
            if size > limit:
                raise SceneTooLarge("the scene is %d bytes, over SCENE_MAX_BYTES (%d): hide or close models, "
                                    "or lower their detail" % (size, limit))
        if options.get("preserve_transparency") is False:
            # ChimeraX's writer (1.7) cuts the alpha off vertex colors, then takes a
            # drawing's one colour as RGBA and fails; kept per vertex, it has none to take.
            options = dict(options, prune_vertex_colors=False)
        keywords = "".join(" %s %s" % (_camel(key), str(value).lower() if isinstance(value, bool) else value)
                           for key, value in sorted(options.items()) if value is not None)
        return self._export(principal, session_id, "scene", ".glb", keywords, exported, prepare)

    def _out_of_memory(self, result, doing):
        if render.out_of_memory(result.error):
            raise SceneTooLarge("ChimeraX ran out of memory %s (a session may use %d MB, SESSION_MEMORY_MB): "
                                "ask for less, or hide or close models" % (doing, self.settings["SESSION_MEMORY_MB"]))

    def _fits_in_memory(self, record, needs, doing):
        """Refuse what would take the process over its address-space limit
        (SESSION_MEMORY_MB): the kernel would fail the allocation inside the
        renderer, which ends ChimeraX instead of raising an error it can report."""
        limit = self.settings["SESSION_MEMORY_MB"] * 2**20
        used = self.launcher.address_space_bytes(record.process) if record.process else None
        if limit and used is not None and used + needs > limit:
            raise SceneTooLarge("%s needs about %d MB more; the session uses %d of its %d MB (SESSION_MEMORY_MB): "
                                "ask for fewer pixels, or hide or close models"
                                % (doing, needs // 2**20 + 1, used // 2**20, limit // 2**20))

    def _export(self, principal, session_id, kind, suffix, keywords, check, prepare=None, needs=0):
        """The bytes of a file ChimeraX saves of the scene (`save FILE` + `keywords`),
        after a frame's updates (render.py): in the same command line, or, with
        `prepare(send, png_path)`, by it first, which may also refuse; `check(result,
        path)` raises when what was saved is not to be served."""
        record = self.get_for(principal, session_id)
        if record.status != ACTIVE:
            raise NotActive("session %s is %s, not active" % (session_id, record.status))
        self._require_reach(record)
        if needs:
            self._fits_in_memory(record, needs, "drawing this %s" % kind)
        audit.info("user=%s session=%s verdict=allow commands=%s", principal.user, session_id, kind)
        with self.scratch_file(record, record.process, kind, suffix) as (scratch, inside):
            save = 'save "%s"%s' % (inside, keywords)
            if prepare is None:
                result = self._send(record, "%s ; %s" % (render.FRAME, save))
            else:
                with self.scratch_file(record, record.process, kind + "-frame", ".png") as (_, frame):
                    prepare(lambda command: self._send(record, command), frame)
                result = self._send(record, save)
            check(result, scratch)
            with open(scratch, "rb") as saved:
                return saved.read()

    @contextmanager
    def scratch_file(self, record, state, kind, suffix):
        """(path here, path as ChimeraX names it) of a one-off file in the session's
        workspace, under a name its user cannot guess; removed afterwards."""
        name = ".%s-%s%s" % (kind, uuid.uuid4().hex, suffix)
        scratch = os.path.join(record.workspace, name)
        try:
            yield scratch, os.path.join(self.launcher.chimerax_path(state, record.workspace), name)
        finally:
            if os.path.lexists(scratch):
                os.unlink(scratch)

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

    # Ending

    def terminate(self, principal, session_id):
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

    def end(self, record, reason):
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

    def finish_termination(self, record, reason=None):
        """Complete an end whose owner died midway (status stuck at terminating)."""
        if not self.launcher.reaches(record.domain):
            return False
        return self._finish(record, reason or record.end_reason or "deleted")

    def process_id(self, record):
        return self.launcher.process_id(record.process) if record.process else None

    def memory_bytes(self, record):
        return self.launcher.memory_bytes(record.process) if record.process else None

    @staticmethod
    def _store_call(func, *args, **kw):
        try:
            return func(*args, **kw)
        except StoreUnavailable as err:
            raise StoreDown("the session store is unavailable", retry_after=5) from err


def _camel(name):
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


class _Cancelled(Exception):
    pass


class _Finished(threading.Event):
    """A background start's end, and its error for a caller still waiting."""
    error = None

