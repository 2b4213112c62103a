"""The launcher contract: everything the service knows about where ChimeraX runs.

Outside the launchers a process is a `ProcessHandle` (store.models): typed
attributes for what others may know (its port, a scheduler's pending
reason, when and by whom it was started) and the launcher's own JSON,
which is kept in the session's row so that any gunicorn worker — not only
the one that started it — can reach, check or stop the process, and which
only the launcher reads. The public methods below take and give handles;
each launcher implements the `_`-prefixed ones on its own state dict.
"""
import abc
from collections.abc import Callable, Iterable, Sequence
import logging
import os

from ....store.models import ProcessHandle
from ...errors import StartupFailed
from .. import versions
from ..chimerax_client import Channel
from ..locate import Executable

log = logging.getLogger("cxs.launcher")

Progress = Callable[[ProcessHandle], object]


def _state(handle: ProcessHandle | None) -> dict:
    return handle.details if handle is not None else {}


class Launcher(abc.ABC):
    """Another host or a cluster scheduler implements the same calls."""
    # Where its processes run, as a name sessions record: every instance whose
    # launcher has the same domain can reach them (ports, capacity and the
    # sweeper are counted per domain); no other instance ever touches them.
    domain = "unknown"
    # TCP ports the store reserves for channels (None: the launcher's channels need none).
    port_range: Sequence[int] | None = None
    # The releases a process may run (SUPPORTED_CHIMERAX, CHIMERAX_ALLOW_UNTESTED, set by
    # build_launcher; None: not checked, for a launcher built by hand).
    supported_chimerax: str | None = None
    allow_untested = False
    found: Executable | None = None     # the ChimeraX it starts, where one was found

    # The contract, on handles

    def start(self, marker: str, workspace: str, port: int | None) -> ProcessHandle:
        """Launch ChimeraX for `marker` (a session id or pool entry), not yet ready."""
        return ProcessHandle(self._start(marker, workspace, port))

    def wait_ready(self, handle: ProcessHandle, timeout: float, progress: Progress | None = None) -> ProcessHandle:
        """Block until its channel answers; the completed handle. Raise
        StartupFailed if it dies or the timeout passes. A launcher whose
        processes may wait for resources (a queue) calls `progress(handle)`
        when what its owner should see changes (`pending_reason`)."""
        report = (lambda state: progress(ProcessHandle(dict(state)))) if progress else None
        ready = ProcessHandle(self._wait_ready(dict(_state(handle)), timeout, report))
        self._check_version(ready)
        return ready

    def _check_version(self, ready: ProcessHandle) -> None:
        """Refuse (StartupFailed) a ChimeraX outside SUPPORTED_CHIMERAX, unless
        untested ones are allowed: then warn. The caller stops the process."""
        version = ready.chimerax_version
        if self.supported_chimerax is None or versions.supported(version, self.supported_chimerax):
            return
        if not self.allow_untested:
            raise StartupFailed("ChimeraX %s is not a supported release (SUPPORTED_CHIMERAX=%s; "
                                "CHIMERAX_ALLOW_UNTESTED=true starts it anyway)"
                                % (version or "of an unknown release", self.supported_chimerax))
        log.warning("ChimeraX %s is outside SUPPORTED_CHIMERAX=%s: started because CHIMERAX_ALLOW_UNTESTED "
                    "is set", version or "of unknown version", self.supported_chimerax)

    def poll(self, handle: ProcessHandle | None) -> str | None:
        """None while running, else a short description of how it ended."""
        return self._poll(_state(handle))

    def stop(self, handle: ProcessHandle | None, grace: float) -> None:
        """End it and everything it started (politely, then by force after `grace` s)."""
        if handle is not None:
            self._stop(handle.details, grace)

    def channel(self, handle: ProcessHandle) -> Channel:
        """The chimerax_client.Channel that reaches its agent."""
        return self._channel(_state(handle))

    def fetch_cache_path(self, handle: ProcessHandle | None, path: str) -> str:
        """A file of the fetch cache as that ChimeraX names it."""
        return self._fetch_cache_path(_state(handle), path)

    def _fetch_cache_path(self, state: dict, path: str) -> str:
        return path

    def chimerax_path(self, handle: ProcessHandle | None, workspace: str) -> str:
        """The workspace as ChimeraX itself names it (paths in commands the service builds)."""
        return self._chimerax_path(_state(handle), workspace)

    def process_id(self, handle: ProcessHandle | None) -> object:
        """A short name of the process for logs and admins (a pid, a job id)."""
        return self._process_id(_state(handle)) if handle is not None else None

    def memory_bytes(self, handle: ProcessHandle | None) -> int | None:
        return self._memory_bytes(_state(handle)) if handle is not None else None

    def address_space_bytes(self, handle: ProcessHandle | None) -> int | None:
        """The process's virtual size, what its address-space limit counts (None: unknown)."""
        return self._address_space_bytes(_state(handle)) if handle is not None else None

    def draws(self, handle: ProcessHandle | None) -> bool | None:
        """Whether the process has started offscreen rendering (None: unknown).
        A session started with CHIMERAX_OFFSCREEN=lazy starts it at its first draw."""
        return self._draws(_state(handle)) if handle is not None else None

    def usage(self, handle: ProcessHandle | None) -> dict | None:
        """What the process tree uses now: {"cpu_seconds", "memory_bytes",
        "memory_peak_bytes", "processes"} (a value None where unknown); None if
        the launcher cannot tell (gone, or on a node it cannot see)."""
        return self._usage(_state(handle)) if handle is not None else None

    def limits_in_force(self, handle: ProcessHandle | None) -> dict:
        """The limits that hold for this process: {"memory_mb", "address_space_mb",
        "cpus", "processes", "enforced_by"} (what holds them: "cgroup v1",
        "cgroup v2", "slurm", "prlimit")."""
        return self._limits_in_force(_state(handle))

    def exit_reason(self, handle: ProcessHandle | None) -> str | None:
        """None while it runs, else the end reason of a session whose process ended
        on its own ("crashed"; a scheduler may know better, e.g. "max_lifetime")."""
        return self._exit_reason(_state(handle))

    def adoptable(self, handle: ProcessHandle | None, marker: str) -> bool:
        """After a restart: is this still the very process started for `marker`?"""
        return handle is not None and self._adoptable(handle.details, marker)

    def orphans(self, known: Iterable[ProcessHandle], host_id: str | None = None) -> list[ProcessHandle]:
        """Processes this service started (those `host_id` started, if given)
        that none of the `known` handles accounts for."""
        return [ProcessHandle(state) for state in self._orphans([h.details for h in known if h], host_id)]

    def tidy(self, known: Iterable[ProcessHandle], min_age: float) -> list[str]:
        """Remove what the launcher made for processes that are gone (their
        cgroups) and none of the `known` handles has, older than `min_age` s."""
        return []

    def adopt_workspace(self, handle: ProcessHandle, source: str, target: str) -> None:
        """Move a pooled process's directory to a session's workspace. Workspaces
        are on a file system shared with the processes, so a rename moves it for
        both: its cwd (or the sandbox's bind of it) follows."""
        self._adopt_workspace(_state(handle), source, target)

    # Defaults of what a launcher need not implement

    def reaches(self, domain: str | None) -> bool:
        return domain == self.domain

    def port_is_free(self, port: int) -> bool:
        """Whether a port of `port_range` is free where processes run (checked at reservation)."""
        return True

    def runtime_info(self, detail: bool = False) -> dict:
        """What health reports of the ChimeraX it starts: {"found": bool, "kind": str or None};
        `detail` (admins): also its path, version and whether that is supported."""
        info: dict = {"found": self.found is not None, "kind": self.found.kind if self.found else None}
        if detail:
            version = self.installed_version
            info.update(path=self.found.path if self.found else None, version=version,
                        supported_releases=self.supported_chimerax,
                        supported=None if version is None or self.supported_chimerax is None
                        else versions.supported(version, self.supported_chimerax),
                        limits=self._limits_in_force({}))      # what a session started now gets
        return info

    @property
    def installed_version(self) -> str | None:
        """The release its ChimeraX installation declares, read once (None: unknown)."""
        if "_installed_version" not in self.__dict__:
            self._installed_version = versions.installed_version(self.found.path if self.found else None)
        return self._installed_version

    def version_refusal(self) -> str | None:
        """Why its ChimeraX may not start (a known release outside SUPPORTED_CHIMERAX), or None."""
        version = self.installed_version
        if (version is None or self.supported_chimerax is None or self.allow_untested
                or versions.supported(version, self.supported_chimerax)):
            return None
        return ("ChimeraX %s is not a supported release (SUPPORTED_CHIMERAX=%s; CHIMERAX_ALLOW_UNTESTED=true "
                "starts it anyway)" % (version, self.supported_chimerax))

    @property
    def available(self) -> bool:
        """Whether processes can be started at all (a ChimeraX was found)."""
        return True

    def describe(self) -> str:
        return type(self).__name__

    def make_workspace(self, path: str) -> None:
        """Create a session's (or pooled process's) workspace directory."""
        os.makedirs(path, mode=0o700)

    def refresh(self) -> None:
        """Learn the state of all its processes at once (a scheduler's one query);
        called at the start of every sweep, so that `poll` of each session is free."""
        return None

    def startup_allowance(self) -> float:
        """Seconds a start may wait before its process even runs (a scheduler's queue)."""
        return 0

    # What each launcher implements, on its own state

    @abc.abstractmethod
    def _start(self, marker, workspace, port):
        """The new process's state."""

    @abc.abstractmethod
    def _wait_ready(self, state, timeout, progress=None):
        """The completed state (`progress(state)` while it waits in a queue)."""

    @abc.abstractmethod
    def _poll(self, state):
        """None while running, else how it ended."""

    @abc.abstractmethod
    def _stop(self, state, grace):
        """End it and everything it started."""

    @abc.abstractmethod
    def _channel(self, state):
        """Its agent's Channel."""

    def _chimerax_path(self, state, workspace):
        return workspace

    def _process_id(self, state):
        return state.get("pid")

    def _memory_bytes(self, state):
        return None

    def _address_space_bytes(self, state):
        return None

    def _usage(self, state):
        return None

    def _draws(self, state):
        return None

    def _limits_in_force(self, state):
        return {}

    def _exit_reason(self, state):
        return "crashed" if self._poll(state) else None

    def _adoptable(self, state, marker):
        return False

    def _orphans(self, known_states, host_id=None):
        return []

    def _adopt_workspace(self, state, source, target):
        os.rename(source, target)
