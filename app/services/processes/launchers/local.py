"""ChimeraX as a process on this host, inside the configured sandbox.

Each process gets a token naming its control files in CONTROL_DIR (a folder
only the service account can open, outside every workspace): its log
(stdout), the FIFO that serves as its stdin, and — sandboxed — the socket
of its channel. The launcher binds that socket itself and hands the
listening descriptor to the agent, so ChimeraX needs neither a network nor a
path to the socket file. Without a sandbox the agent listens on loopback
TCP. Either way every request carries a per-process secret, which reaches
ChimeraX through its environment, never its command line.

Processes are started in a session of their own and are not tied to the
worker that started them (no --die-with-parent): any worker can reach, check
or stop them, and a restarted service adopts them.
"""
from collections.abc import Iterable, Sequence
import os
import re
import secrets
import socket
import subprocess
import threading
import time
import uuid

import psutil

from ...errors import StartupFailed
from ...upkeep import owners
from ..chimerax_client import Channel, unix_address
from ..locate import Executable
from . import ports, processes
from .base import Launcher
from .sandbox import Bubblewrap, NoSandbox

READY_LINE = re.compile(rb"CXS agent ready: (unix|tcp (\S+) (\d+))")
CHILD_ENV_ALLOWLIST = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
                       "USER", "LOGNAME", "DISPLAY", "XDG_RUNTIME_DIR")
MARKER_VARIABLE = "CXS_SESSION_ID"
SERVICE_VARIABLE = "CXS_SERVICE_ID"
HOST_VARIABLE = "CXS_HOST_ID"
SECRET_VARIABLE = "CXS_AGENT_SECRET"
TOKEN_VARIABLE = "CXS_CONTROL_TOKEN"
OWNER_VARIABLE = "CXS_STARTED_BY"


def machine_domain() -> str:
    """Processes on this machine, reachable from every service instance running here."""
    return "local:" + socket.gethostname()


def _child_env(marker, service_id, host_id, secret, token):
    env = {name: os.environ[name] for name in CHILD_ENV_ALLOWLIST if name in os.environ}
    env["PYTHONUNBUFFERED"] = "1"      # the readiness line must reach the log at once
    # Markers a restarted service reads back (psutil) to recognise its children.
    env[MARKER_VARIABLE] = marker
    env[SERVICE_VARIABLE] = service_id
    env[HOST_VARIABLE] = host_id        # which instance started it (its own start-up reaps only those)
    env[SECRET_VARIABLE] = secret
    env[TOKEN_VARIABLE] = token     # so that an orphan's control files can be removed too
    # The worker starting it: an unrecorded process whose starter is gone is an orphan at once.
    env[OWNER_VARIABLE] = owners.current()
    return env


def _reap(proc):
    # Whichever worker ends the process, the one that spawned it must reap it
    # or it lingers as a zombie: a waiting daemon thread does that.
    threading.Thread(target=proc.wait, name="reap-%d" % proc.pid, daemon=True).start()


def _identify(proc):
    """pid and start time of a process just spawned. One that failed at once
    (a wrong executable, its workspace deleted meanwhile) may be gone, and
    reaped, already: its start-up failed, and that is what the caller hears."""
    try:
        return processes.identity(psutil.Process(proc.pid))
    except psutil.NoSuchProcess:
        try:
            status = proc.wait(5)       # the reaping thread has it, or is about to
        except subprocess.TimeoutExpired:
            status = "unknown"
        raise StartupFailed("ChimeraX exited during start-up (exit status %s)" % status) from None


class Limits:
    """Kernel resource limits of each ChimeraX (prlimit(1), inherited by all it starts)."""

    def __init__(self, memory_mb: int = 4096, file_mb: int = 200, open_files: int = 1024,
                 processes: int | None = None) -> None:
        self.memory_mb, self.file_mb = memory_mb, file_mb
        self.open_files, self.processes = open_files, processes

    def wrap(self, command: Iterable[str]) -> list[str]:
        args = ["prlimit"]
        if self.memory_mb:
            args.append("--as=%d" % (self.memory_mb * 2**20))
        if self.file_mb:
            args.append("--fsize=%d" % (self.file_mb * 2**20))
        if self.open_files:
            args.append("--nofile=%d" % self.open_files)
        if self.processes:
            args.append("--nproc=%d" % self.processes)
        return args + ["--"] + list(command) if len(args) > 1 else list(command)


class LocalLauncher(Launcher):
    def __init__(self, executable: Executable | None, sandbox: NoSandbox | Bubblewrap, control_dir: str,
                 offscreen: bool = True, service_id: str = "cxs", limits: Limits | None = None,
                 host: str = "127.0.0.1", host_id: str = "local", port_range: Sequence[int] | None = None) -> None:
        self.found = executable         # locate.Executable or None
        self.executable = executable.path if executable else None
        self.sandbox = sandbox
        self.control_dir = control_dir
        self.offscreen = offscreen
        self.service_id = service_id    # tells this service's processes from another's
        self.host_id = host_id
        self.domain = machine_domain()
        self.limits = limits or Limits()
        self.host = host
        # Unsandboxed, agents listen on loopback TCP: ports from the range, or
        # (None) whichever the agent picks and announces.
        self.port_range = None if sandbox.unix_channel else port_range

    @property
    def available(self) -> bool:
        return bool(self.executable)

    def port_is_free(self, port: int) -> bool:
        return ports.port_is_free(port, self.host)

    def runtime_info(self) -> dict:
        return {"found": self.found is not None, "kind": self.found.kind if self.found else None}

    def describe(self) -> str:
        chimerax = "%s (%s)" % (self.found.path, self.found.kind) if self.found else "no ChimeraX found"
        return "local: %s, sandbox: %s" % (chimerax, self.sandbox.describe())

    def command_line(self) -> list[str]:
        assert self.executable is not None, "no ChimeraX found"     # a start needs one (`available`)
        args = [self.executable, "--nogui"]
        if self.offscreen:
            args.append("--offscreen")
        # Not --silent: it drops info and warning messages from replies.
        return args + ["--script", self.sandbox.agent_script]

    def make_workspace(self, path: str) -> None:
        os.makedirs(path, mode=0o700)
        if self.sandbox.owner:
            os.chown(path, *self.sandbox.owner)

    def _control_paths(self, token):
        base = os.path.join(self.control_dir, token)
        return {"log": base + ".log", "stdin": base + ".stdin", "socket": base + ".sock"}

    def _start(self, marker, workspace, port, secret=None):
        os.makedirs(self.control_dir, mode=0o700, exist_ok=True)
        token = uuid.uuid4().hex
        files = self._control_paths(token)
        secret = secret or secrets.token_urlsafe(32)
        env = _child_env(marker, self.service_id, self.host_id, secret, token)
        listener = None
        if self.sandbox.unix_channel:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            with unix_address(files["socket"]) as address:
                listener.bind(address)
            os.chmod(files["socket"], 0o600)
            listener.listen(16)
            env["CXS_AGENT_FD"] = str(listener.fileno())
            channel = {"path": files["socket"]}
        else:
            env["CXS_AGENT_HOST"], env["CXS_AGENT_PORT"] = self.host, str(port or 0)
            channel = {"host": self.host, "port": port or None}
        # The official text UI exits on EOF of stdin. A FIFO the child opens
        # for both reading and writing never reaches EOF, whichever worker
        # (or none) is still alive: stdin stays open for the process's life.
        try:
            os.mkfifo(files["stdin"], 0o600)
            stdin_fd = os.open(files["stdin"], os.O_RDWR)
            try:
                with open(files["log"], "ab") as log:
                    proc = subprocess.Popen(
                        self.limits.wrap(self.sandbox.wrap(self.command_line(), workspace)),
                        stdin=stdin_fd, stdout=log, stderr=subprocess.STDOUT, cwd=workspace, env=env,
                        start_new_session=True, close_fds=True,
                        pass_fds=(listener.fileno(),) if listener else ())
            finally:
                os.close(stdin_fd)
                if listener:
                    listener.close()     # ChimeraX holds the listening socket now
            _reap(proc)
            pid, create_time = _identify(proc)
        except (OSError, psutil.Error, StartupFailed):
            self._remove_control_files(token)       # no state is returned: nobody else would
            raise
        return {"pid": pid, "create_time": create_time, "leader": pid, "leader_create_time": create_time,
                "token": token, "marker": marker, "secret": secret, "channel": channel,
                "sandbox": self.sandbox.name, "port": channel.get("port")}

    def _wait_ready(self, state, timeout, progress=None):
        deadline = time.monotonic() + timeout
        while True:
            match = self._ready_line(state)
            if match:
                return self._ready_state(state, match)
            ended = self._poll(state)
            if ended:
                raise StartupFailed("ChimeraX exited during start-up (%s)" % ended)
            if time.monotonic() >= deadline:
                raise StartupFailed("ChimeraX was not ready within %g s" % timeout)
            # A short fixed poll: start-up is ~0.4 s, so a backoff would add
            # a large share of it to every cold create (BENCHMARKS.md, figure 1).
            time.sleep(0.005)

    def _ready_line(self, state):
        try:
            with open(self._control_paths(state["token"])["log"], "rb") as log:
                return READY_LINE.search(log.read(256 * 1024))
        except OSError:
            return None

    def _ready_state(self, state, match):
        state = dict(state)
        if match.group(2):
            state["channel"] = {"host": match.group(2).decode(), "port": int(match.group(3))}
            state["port"] = int(match.group(3))
        main = self._main_process(state)
        if main is None:
            raise StartupFailed("ChimeraX ended right after start-up")
        state["pid"], state["create_time"] = processes.identity(main)
        return state

    def _main_process(self, state):
        """ChimeraX itself: the spawned process, or inside a sandbox the first
        process below the sandbox's own (bwrap's pid 1, setpriv exec'ing ChimeraX)."""
        leader = processes.process(state["leader"], state["leader_create_time"])
        if leader is None or state["sandbox"] == "none":
            return leader
        candidates = [p for p in processes.tree(leader) if p.pid != leader.pid and _name(p) != "bwrap"]
        return min(candidates, key=lambda p: p.create_time(), default=None)

    def _main(self, state):
        return processes.process(state.get("pid"), state.get("create_time"))

    def _leader(self, state):
        return processes.process(state.get("leader", state.get("pid")),
                                 state.get("leader_create_time", state.get("create_time")))

    def _poll(self, state):
        if self._main(state) is not None:
            return None
        return "process %s is gone" % state.get("pid")

    def _stop(self, state, grace):
        main, leader = self._main(state), self._leader(state)
        # SIGTERM to ChimeraX (and, unsandboxed, its process group); after
        # `grace`, SIGKILL to everything below the spawned process: killing
        # the sandbox's pid 1 ends every process in its pid namespace, even
        # one that left ChimeraX's session or process group.
        group = leader.pid if leader is not None and state.get("sandbox", "none") == "none" else None
        processes.terminate_tree([leader, main], [main], grace, group=group)
        if state.get("token"):
            self._remove_control_files(state["token"])

    def _remove_control_files(self, token):
        for path in self._control_paths(token).values():
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def _channel(self, state):
        return channel_of(state)

    def _chimerax_path(self, state, workspace):
        return self.sandbox.inside(workspace) if state.get("sandbox") == self.sandbox.name else workspace

    def _memory_bytes(self, state):
        main = self._main(state)
        return processes.rss_bytes(processes.tree(main)) if main else None

    def _address_space_bytes(self, state):
        main = self._main(state)
        try:
            return main.memory_info().vms if main else None
        except psutil.Error:
            return None

    def _adoptable(self, state, marker):
        main = self._main(state)
        if main is None or not state.get("channel"):
            return False        # gone, or started by a release without the agent channel
        try:
            env = main.environ()
        except psutil.Error:
            return False
        # A pool process keeps the marker it was started with after a claim.
        expected = state.get("marker", marker)
        return env.get(MARKER_VARIABLE) == expected and env.get(SERVICE_VARIABLE) == self.service_id

    def _orphans(self, known_states, host_id=None):
        known = set()
        for state in known_states:
            known.update(p for p in (state.get("pid"), state.get("leader")) if p)
        marked, tokens, started_by = {}, {}, {}
        for proc in psutil.process_iter(["pid", "ppid", "create_time"]):
            try:
                env = proc.environ()
                if (env.get(SERVICE_VARIABLE) == self.service_id and proc.status() != psutil.STATUS_ZOMBIE
                        and (host_id is None or env.get(HOST_VARIABLE) == host_id)):
                    marked[proc.pid], tokens[proc.pid] = proc, env.get(TOKEN_VARIABLE)
                    started_by[proc.pid] = env.get(OWNER_VARIABLE)
            except (psutil.Error, OSError):
                continue
        found = []
        for pid, proc in marked.items():
            # Only the outermost marked process of each tree: stopping it ends the rest.
            if proc.info["ppid"] in marked or pid in known or _descends_from(proc, known):
                continue
            found.append({"pid": pid, "create_time": proc.info["create_time"], "leader": pid,
                          "leader_create_time": proc.info["create_time"], "sandbox": "unknown",
                          "token": _safe_token(tokens[pid]), "owner": started_by[pid]})
        return found


def channel_of(state: dict) -> Channel:
    """The Channel recorded in a local process's state."""
    where = state.get("channel") or {}
    return Channel(secret=state.get("secret", ""), path=where.get("path"),
                   host=where.get("host"), port=where.get("port"), fingerprint=where.get("fingerprint"))


def _safe_token(token):
    # Read from a process's environment: only a plain hex token may name files to remove.
    return token if token and re.fullmatch(r"[0-9a-f]{32}", token) else None


def _descends_from(proc, pids):
    try:
        return any(parent.pid in pids for parent in proc.parents())
    except psutil.Error:
        return False


def _name(proc):
    try:
        return proc.name()
    except psutil.Error:
        return ""

