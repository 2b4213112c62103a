"""How a ChimeraX process is spawned here: its environment (an allowlist plus
the markers a restarted service reads back), its kernel limits, a stdin that
never ends and that nobody can write to, and its reaping and identity."""
from collections.abc import Iterable, Sequence
import os
import socket
import subprocess
import threading

import psutil

from ...errors import StartupFailed
from ...upkeep import owners
from . import processes

CHILD_ENV_ALLOWLIST = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
                       "USER", "LOGNAME", "DISPLAY", "XDG_RUNTIME_DIR")
MARKER_VARIABLE = "CXS_SESSION_ID"
SERVICE_VARIABLE = "CXS_SERVICE_ID"
HOST_VARIABLE = "CXS_HOST_ID"
SECRET_VARIABLE = "CXS_AGENT_SECRET"
TOKEN_VARIABLE = "CXS_CONTROL_TOKEN"
OWNER_VARIABLE = "CXS_STARTED_BY"


def child_env(marker: str, service_id: str, host_id: str, secret: str, token: str) -> dict[str, str]:
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


def reap(proc: subprocess.Popen) -> None:
    # Whichever worker ends the process, the one that spawned it must reap it
    # or it lingers as a zombie: a waiting daemon thread does that.
    threading.Thread(target=proc.wait, name="reap-%d" % proc.pid, daemon=True).start()


def identify(proc: subprocess.Popen) -> tuple[int, float | None]:
    """pid and start time of a process just spawned. One that failed at once
    (a wrong executable, its workspace deleted meanwhile) may be gone, and
    reaped, already: its start-up failed, and that is what the caller hears."""
    try:
        return processes.identity(psutil.Process(proc.pid))
    except psutil.NoSuchProcess:
        status: int | str
        try:
            status = proc.wait(5)       # the reaping thread has it, or is about to
        except subprocess.TimeoutExpired:
            status = "unknown"
        raise StartupFailed("ChimeraX exited during start-up (exit status %s)" % status) from None


# The spawned process puts itself into its cgroups (a single-threaded shell
# writing "0", itself, to each file Cgroups.create named) and then becomes
# the command: nothing is ever moved by another process, and the command
# starts inside them. Python's preexec_fn would do the same, but is unsafe in
# threaded workers.
_JOIN = 'while [ "$1" != -- ]; do echo 0 > "$1" || exit 125; shift; done; shift; exec "$@"'
JOIN_FAILED = 125


def join(join_files: Sequence[str], command: Sequence[str]) -> list[str]:
    """`command`, started inside the cgroups whose joining files are given."""
    if not join_files:
        return list(command)
    return ["/bin/sh", "-c", _JOIN, "cxs-cgroup-join"] + list(join_files) + ["--"] + list(command)


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


class Stdin:
    """ChimeraX's stdin: one end of a Unix socket pair, the other end inherited
    by ChimeraX itself and never written. Its text UI runs every stdin line as
    a command outside the policy (docs/runtime.md): this stdin never reaches
    EOF (which would end ChimeraX), whichever worker started the process, and
    cannot be opened by path — `/dev/stdin`, `/proc/<pid>/fd/0` fail for
    everyone — so nobody outside can write a line to it."""

    def __init__(self) -> None:
        self.reader, self.holder = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # Nothing is ever sent from this end: ChimeraX keeps it only so the other never ends.
        self.holder.shutdown(socket.SHUT_RD)

    @property
    def kept(self) -> int:
        """The descriptor ChimeraX must inherit besides its stdin."""
        return self.holder.fileno()

    def close(self) -> None:
        self.reader.close()
        self.holder.close()
