"""Starting, checking and stopping ChimeraX processes.

`Launcher` is the contract the session service relies on; `LocalLauncher`
runs ChimeraX as a child process on this host. Its state is a JSON-safe dict
(pid, create_time, port, ...) kept in the session's row, so any gunicorn
worker — not only the one that spawned it — can check or stop the process.
Identity is (pid, create_time), never the pid alone: pids get reused.
"""
import abc
import os
import re
import signal
import subprocess
import threading
import time

import psutil

from .errors import StartupFailed

READY_LINE = re.compile(rb"REST server started on host (\S+) port (\d+)")
CHILD_ENV_ALLOWLIST = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
                       "USER", "LOGNAME", "DISPLAY", "XDG_RUNTIME_DIR")
MARKER_VARIABLE = "CXS_SESSION_ID"
SERVICE_VARIABLE = "CXS_SERVICE_ID"
LOG_NAME = "chimerax.log"


class Launcher(abc.ABC):
    """Where and how a session's ChimeraX runs. Another host or a cluster
    scheduler implements the same five calls."""

    @abc.abstractmethod
    def start(self, session_id, workspace, port):
        """Launch; return the state dict (not yet ready)."""

    @abc.abstractmethod
    def wait_ready(self, state, timeout):
        """Block until the REST server answers; return the state with its port.
        Raise StartupFailed if it dies or the timeout passes."""

    @abc.abstractmethod
    def poll(self, state):
        """None while running, else a short description of how it ended."""

    @abc.abstractmethod
    def stop(self, state, grace):
        """End it (politely, then by force after `grace` s); return when gone."""

    @abc.abstractmethod
    def address(self, state):
        """(host, port) of its REST server."""

    def memory_bytes(self, state):
        return None

    def adoptable(self, state, session_id):
        """After a restart: is this still the very process started for `session_id`?"""
        return False

    def orphans(self, known_pids):
        """States of processes this service started that no session accounts for."""
        return []


def _child_env(session_id, service_id):
    env = {name: os.environ[name] for name in CHILD_ENV_ALLOWLIST if name in os.environ}
    env["PYTHONUNBUFFERED"] = "1"      # the readiness line must reach the log at once
    # Markers a restarted service reads back (psutil) to recognise its children.
    env[MARKER_VARIABLE] = session_id
    env[SERVICE_VARIABLE] = service_id
    return env


def _reap(proc):
    # Whichever worker ends the process, the one that spawned it must reap it
    # or it lingers as a zombie: a waiting daemon thread does that.
    threading.Thread(target=proc.wait, name="reap-%d" % proc.pid, daemon=True).start()


class LocalLauncher(Launcher):
    def __init__(self, executable, offscreen=True, host="127.0.0.1", service_id="cxs"):
        self.executable = executable
        self.offscreen = offscreen
        self.host = host
        self.service_id = service_id    # tells this service's processes from another's

    def command_line(self, port):
        args = [self.executable, "--nogui"]
        if self.offscreen:
            args.append("--offscreen")
        # Not --silent: it drops info and warning messages from REST replies.
        args += ["--cmd", "remotecontrol rest start port %d json true" % (port or 0)]
        return args

    def start(self, session_id, workspace, port):
        log_path = os.path.join(workspace, LOG_NAME)
        stdin_path = os.path.join(workspace, ".stdin")
        # The official text UI exits on EOF of stdin. A FIFO the child opens
        # for both reading and writing never reaches EOF, whichever worker
        # (or none) is still alive: stdin stays open for the process's life.
        if not os.path.exists(stdin_path):
            os.mkfifo(stdin_path, 0o600)
        stdin_fd = os.open(stdin_path, os.O_RDWR)
        try:
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    self.command_line(port), stdin=stdin_fd, stdout=log, stderr=subprocess.STDOUT,
                    cwd=workspace, env=_child_env(session_id, self.service_id), start_new_session=True,
                    close_fds=True)
        finally:
            os.close(stdin_fd)
        _reap(proc)
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            create_time = None
        return {"pid": proc.pid, "create_time": create_time, "port": port or None,
                "host": self.host, "log": log_path, "marker": session_id}

    def wait_ready(self, state, timeout):
        deadline = time.monotonic() + timeout
        while True:
            port = self._announced_port(state["log"])
            if port:
                return dict(state, port=port)
            ended = self.poll(state)
            if ended:
                raise StartupFailed("ChimeraX exited during start-up (%s)" % ended)
            if time.monotonic() >= deadline:
                raise StartupFailed("ChimeraX was not ready within %g s" % timeout)
            # A short fixed poll: start-up is ~0.4 s, so a backoff would add
            # a large share of it to every cold create (BENCHMARKS.md, figure 1).
            time.sleep(0.005)

    @staticmethod
    def _announced_port(log_path):
        try:
            with open(log_path, "rb") as log:
                match = READY_LINE.search(log.read(256 * 1024))
        except OSError:
            return None
        return int(match.group(2)) if match else None

    def _process(self, state):
        """The psutil.Process if it is still this very process, else None."""
        pid = state.get("pid")
        if not pid:
            return None
        try:
            proc = psutil.Process(pid)
            if state.get("create_time") and abs(proc.create_time() - state["create_time"]) > 0.05:
                return None     # the pid now belongs to someone else
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    def poll(self, state):
        if self._process(state) is not None:
            return None
        return "process %s is gone" % state.get("pid")

    def stop(self, state, grace):
        proc = self._process(state)
        if proc is None:
            return
        pgid = proc.pid     # start_new_session made it its group's leader
        self._signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not self._group_alive(pgid, proc):
                return
            time.sleep(0.05)
        self._signal_group(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while self._group_alive(pgid, proc) and time.monotonic() < deadline:
            time.sleep(0.05)

    @staticmethod
    def _signal_group(pgid, signum):
        try:
            os.killpg(pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def _group_alive(self, pgid, leader):
        try:
            if leader.is_running() and leader.status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            pass
        for proc in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                    return True
            except (OSError, psutil.Error):
                continue
        return False

    def address(self, state):
        return state.get("host", self.host), state["port"]

    def adoptable(self, state, session_id):
        proc = self._process(state)
        if proc is None:
            return False
        try:
            env = proc.environ()
        except psutil.Error:
            return False
        # A pool process keeps the marker it was started with after a claim.
        expected = state.get("marker", session_id)
        return env.get(MARKER_VARIABLE) == expected and env.get(SERVICE_VARIABLE) == self.service_id

    def orphans(self, known_pids):
        found = []
        for proc in psutil.process_iter(["pid", "create_time"]):
            if proc.pid in known_pids:
                continue
            try:
                if proc.environ().get(SERVICE_VARIABLE) != self.service_id:
                    continue
                if proc.status() == psutil.STATUS_ZOMBIE or os.getpgid(proc.pid) != proc.pid:
                    continue        # only group leaders: stopping one ends its group
            except (psutil.Error, OSError):
                continue
            found.append({"pid": proc.pid, "create_time": proc.info["create_time"]})
        return found

    def memory_bytes(self, state):
        proc = self._process(state)
        try:
            return proc.memory_info().rss if proc else None
        except psutil.Error:
            return None

