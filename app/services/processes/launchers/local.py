"""ChimeraX as a process on this host, inside the configured sandbox.

Each process gets a token naming its control files in CONTROL_DIR (a folder
only the service account can open, outside every workspace): its log
(stdout) and — sandboxed — the socket
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
import time
import uuid

import psutil

from ....store.models import ProcessHandle
from ...errors import StartupFailed
from ..chimerax_client import Channel, unix_address
from ..locate import Executable
from . import marked, ports, processes, spawn
from .base import Launcher
from .cgroups import Cgroups, CgroupsUnavailable
from .sandbox import Bubblewrap, NoSandbox

READY_LINE = re.compile(rb"CXS agent ready: (unix|tcp (\S+) (\d+))(?: chimerax (\S+))?")
FAILED_LINE = re.compile(rb"CXS agent failed: ([^\n]*)")
def machine_domain() -> str:
    """Processes on this machine, reachable from every service instance running here."""
    return "local:" + socket.gethostname()


class LocalLauncher(Launcher):
    def __init__(self, executable: Executable | None, sandbox: NoSandbox | Bubblewrap, control_dir: str,
                 offscreen: str = "lazy", service_id: str = "cxs", limits: spawn.Limits | None = None,
                 host: str = "127.0.0.1", host_id: str = "local", port_range: Sequence[int] | None = None,
                 cgroups: Cgroups | None = None) -> None:
        self.found = executable         # locate.Executable or None
        self.executable = executable.path if executable else None
        self.sandbox = sandbox
        self.control_dir = control_dir
        self.offscreen = offscreen
        self.service_id = service_id    # tells this service's processes from another's
        self.host_id = host_id
        self.domain = machine_domain()
        self.limits = limits or spawn.Limits()
        self.cgroups = cgroups          # a cgroup per process (None: per-process limits only)
        self.host = host
        # Unsandboxed, agents listen on loopback TCP: ports from the range, or
        # (None) whichever the agent picks and announces.
        self.port_range = None if sandbox.unix_channel else port_range

    @property
    def available(self) -> bool:
        return bool(self.executable) and self.version_refusal() is None

    def port_is_free(self, port: int) -> bool:
        return ports.port_is_free(port, self.host)

    def describe(self) -> str:
        chimerax = "%s (%s)" % (self.found.path, self.found.kind) if self.found else "no ChimeraX found"
        refusal = self.version_refusal()
        return "local: %s%s, sandbox: %s, limits: %s" % (chimerax, ": " + refusal if refusal else "",
                                                           self.sandbox.describe(), self._limits_in_force({})["enforced_by"])

    def command_line(self) -> list[str]:
        assert self.executable is not None, "no ChimeraX found"     # a start needs one (`available`)
        args = [self.executable, "--nogui"]
        if self.offscreen == "true":
            args.append("--offscreen")
        # Not --silent: it drops info and warning messages from replies.
        # ChimeraX runs the value as `runscript <value>`: quoted, a path may hold spaces.
        return args + ["--script", '"%s"' % self.sandbox.agent_script]

    def make_workspace(self, path: str) -> None:
        os.makedirs(path, mode=0o700)
        if self.sandbox.owner:
            os.chown(path, *self.sandbox.owner)

    def _control_paths(self, token):
        base = os.path.join(self.control_dir, token)
        # "stdin": the FIFO of processes started before stdin was a socket pair, removed with them.
        return {"log": base + ".log", "stdin": base + ".stdin", "socket": base + ".sock"}

    def _start(self, marker, workspace, port, secret=None):
        os.makedirs(self.control_dir, mode=0o700, exist_ok=True)
        token = uuid.uuid4().hex
        files = self._control_paths(token)
        secret = secret or secrets.token_urlsafe(32)
        env = spawn.child_env(marker, self.service_id, self.host_id, secret, token)
        if self.offscreen == "lazy":
            env["CXS_RENDERING"] = "lazy"       # the agent starts it at the first render (cxs_rendering.py)
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
        stdin = None
        try:
            join = self.cgroups.create(token) if self.cgroups else []
            stdin = spawn.Stdin()
            with open(files["log"], "ab") as log:
                proc = subprocess.Popen(
                    spawn.join(join, self.limits.wrap(self.sandbox.wrap(self.command_line(), workspace))),
                    stdin=stdin.reader, stdout=log, stderr=subprocess.STDOUT, cwd=workspace, env=env,
                    start_new_session=True, close_fds=True,
                    pass_fds=(stdin.kept,) + ((listener.fileno(),) if listener else ()))
            spawn.reap(proc)
            pid, create_time = spawn.identify(proc)
        except (OSError, psutil.Error, StartupFailed, CgroupsUnavailable) as err:
            self._remove_control_files(token)       # no state is returned: nobody else would
            if self.cgroups:
                self.cgroups.remove(token, wait=1)
            if isinstance(err, CgroupsUnavailable):
                raise StartupFailed(str(err)) from err
            raise
        finally:
            if stdin is not None:
                stdin.close()       # ChimeraX holds both ends now
            if listener:
                listener.close()     # ChimeraX holds the listening socket now
        return {"pid": pid, "create_time": create_time, "leader": pid, "leader_create_time": create_time,
                "token": token, "marker": marker, "secret": secret, "channel": channel,
                "sandbox": self.sandbox.name, "port": channel.get("port"),
                "cgroup": self.cgroups.version if self.cgroups else None}

    def _wait_ready(self, state, timeout, progress=None):
        deadline = time.monotonic() + timeout
        while True:
            match = self._ready_line(state)
            if match:
                return self._ready_state(state, match)
            ended = self._poll(state)
            if ended:
                raise StartupFailed("ChimeraX exited during start-up (%s)" % (self._failure(state) or ended))
            if time.monotonic() >= deadline:
                raise StartupFailed("ChimeraX was not ready within %g s" % timeout)
            # A short fixed poll: start-up is ~0.4 s, so a backoff would add
            # a large share of it to every cold create (BENCHMARKS.md, figure 1).
            time.sleep(0.005)

    def _ready_line(self, state):
        return READY_LINE.search(self._log_head(state))

    def _failure(self, state):
        """The agent's reason for refusing to serve, if it gave one."""
        found = FAILED_LINE.search(self._log_head(state))
        return found.group(1).decode(errors="replace") if found else None

    def _log_head(self, state):
        try:
            with open(self._control_paths(state["token"])["log"], "rb") as log:
                return log.read(256 * 1024)
        except OSError:
            return b""

    def _ready_state(self, state, match):
        state = dict(state)
        if match.group(2):
            state["channel"] = {"host": match.group(2).decode(), "port": int(match.group(3))}
            state["port"] = int(match.group(3))
        if match.group(4):
            state["chimerax_version"] = match.group(4).decode()
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
        roots = [leader, main]
        if leader is None and state.get("token") and not marked.taken_by_another(state):
            # The spawned process is gone (a sandbox's outer process can end before
            # its inside): what it started is no longer below it; its token finds it.
            roots += marked.carrying_token(self.service_id, state["token"], state.get("leader_create_time") or 0)
        processes.terminate_tree(roots, [main], grace, group=group)
        if state.get("token"):
            self._remove_control_files(state["token"])
            if self.cgroups:
                # Its processes are gone or going; the rest is the sweeper's (`tidy`).
                # Not only when the state says it had one: an orphan's (found by its
                # marker, recovery.reap_orphans) cannot say; removing none costs nothing.
                self.cgroups.remove(state["token"], wait=2)

    def _remove_control_files(self, token):
        for path in self._control_paths(token).values():
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def _channel(self, state):
        return channel_of(state)

    def _fetch_cache_path(self, state, path):
        return self.sandbox.cache_path(path) if state.get("sandbox") == self.sandbox.name else path

    def _chimerax_path(self, state, workspace):
        return self.sandbox.inside(workspace) if state.get("sandbox") == self.sandbox.name else workspace

    def _usage(self, state):
        if self.cgroups and state.get("cgroup") and state.get("token"):
            return self.cgroups.usage(state["token"])
        main = self._main(state)
        return processes.usage(processes.tree(main)) if main else None

    def _limits_in_force(self, state):
        held = self.cgroups and (state.get("cgroup") if state else True)
        limits = self.cgroups.limits if held and self.cgroups else None
        return {"memory_mb": limits.memory_mb if limits else None, "address_space_mb": self.limits.memory_mb,
                "cpus": limits.cpus if limits else None, "processes": limits.processes if limits else None,
                "enforced_by": "cgroup %s" % self.cgroups.version if held and self.cgroups else "prlimit"}

    def _exit_reason(self, state):
        if not self._poll(state):
            return None
        # The kernel's own count of kills for the cgroup's memory limit says why it ended.
        if self.cgroups and state.get("cgroup") and self.cgroups.oom_killed(state["token"]):
            return "memory_limit"
        return "crashed"

    def tidy(self, known: Iterable[ProcessHandle], min_age: float) -> list[str]:
        """Remove session cgroups of this service that no known process has and
        none is in (left by a worker killed mid-start, or a stop cut short),
        older than `min_age` s (a younger one may be a start under way)."""
        if not self.cgroups:
            return []
        tokens = {h.details.get("token") for h in known if h}
        removed = []
        for name in self.cgroups.names() - tokens:
            if self.cgroups.age(name) > min_age and not self.cgroups.holds_processes(name) \
                    and self.cgroups.remove(name):
                removed.append(name)
        return removed

    def _memory_bytes(self, state):
        main = self._main(state)
        return processes.rss_bytes(processes.tree(main)) if main else None

    def _address_space_bytes(self, state):
        main = self._main(state)
        try:
            return main.memory_info().vms if main else None
        except psutil.Error:
            return None

    def _draws(self, state):
        main = self._main(state)
        try:
            # OSMesa is loaded by the first draw (official builds bundle their own libOSMesa).
            with open("/proc/%d/maps" % main.pid) as maps:
                return "libOSMesa" in maps.read()
        except (AttributeError, OSError):
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
        return env.get(spawn.MARKER_VARIABLE) == expected and env.get(spawn.SERVICE_VARIABLE) == self.service_id

    def _orphans(self, known_states, host_id=None):
        return marked.orphans(self.service_id, known_states, host_id)


def channel_of(state: dict) -> Channel:
    """The Channel recorded in a local process's state."""
    where = state.get("channel") or {}
    return Channel(secret=state.get("secret", ""), path=where.get("path"),
                   host=where.get("host"), port=where.get("port"), fingerprint=where.get("fingerprint"))


def _name(proc):
    try:
        return proc.name()
    except psutil.Error:
        return ""

