"""The launcher contract: everything the service knows about where ChimeraX runs.

A launcher's state for one process is a JSON-safe dict kept in the session's
row, so any gunicorn worker — not only the one that started it — can reach,
check or stop the process.
"""
import abc
import os


class Launcher(abc.ABC):
    """Another host or a cluster scheduler implements the same calls."""
    # Where its processes run, as a name sessions record: every instance whose
    # launcher has the same domain can reach them (ports, capacity and the
    # sweeper are counted per domain); no other instance ever touches them.
    domain = "unknown"
    # TCP ports the store reserves for channels (None: the launcher's channels need none).
    port_range = None

    def reaches(self, domain):
        return domain == self.domain

    def port_is_free(self, port):
        """Whether a port of `port_range` is free where processes run (checked at reservation)."""
        return True

    def process_id(self, state):
        """A short name of the process for logs and admins (a pid, a job id)."""
        return state.get("pid")

    def runtime_info(self):
        """What health reports of the ChimeraX it starts: {"found": bool, "kind": str or None}."""
        return {"found": self.available, "kind": None}

    def adopt_workspace(self, state, source, target):
        """Move a pooled process's directory to a session's workspace. Workspaces
        are on a file system shared with the processes, so a rename moves it for
        both: its cwd (or the sandbox's bind of it) follows."""
        os.rename(source, target)

    @property
    def available(self):
        """Whether processes can be started at all (a ChimeraX was found)."""
        return True

    def describe(self):
        return type(self).__name__

    def make_workspace(self, path):
        """Create a session's (or pooled process's) workspace directory."""
        os.makedirs(path, mode=0o700)

    @abc.abstractmethod
    def start(self, marker, workspace, port):
        """Launch ChimeraX for `marker` (a session id or pool entry); return its state (not yet ready)."""

    @abc.abstractmethod
    def wait_ready(self, state, timeout, progress=None):
        """Block until its channel answers; return the completed state.
        Raise StartupFailed if it dies or the timeout passes. A launcher whose
        processes may wait for resources (a queue) calls `progress(state)`
        when the state its owner should see changes (`pending_reason`)."""

    @abc.abstractmethod
    def poll(self, state):
        """None while running, else a short description of how it ended."""

    @abc.abstractmethod
    def stop(self, state, grace):
        """End it and everything it started (politely, then by force after `grace` s)."""

    @abc.abstractmethod
    def channel(self, state):
        """The chimerax_client.Channel that reaches its agent."""

    def chimerax_path(self, state, workspace):
        """The workspace as ChimeraX itself names it (paths in commands the service builds)."""
        return workspace

    def memory_bytes(self, state):
        return None

    def address_space_bytes(self, state):
        """The process's virtual size, what its address-space limit counts (None: unknown)."""
        return None

    def refresh(self):
        """Learn the state of all its processes at once (a scheduler's one query);
        called at the start of every sweep, so that `poll` of each session is free."""
        return None

    def startup_allowance(self):
        """Seconds a start may wait before its process even runs (a scheduler's queue)."""
        return 0

    def exit_reason(self, state):
        """None while it runs, else the end reason of a session whose process ended
        on its own ("crashed"; a scheduler may know better, e.g. "max_lifetime")."""
        return "crashed" if self.poll(state) else None

    def adoptable(self, state, marker):
        """After a restart: is this still the very process started for `marker`?"""
        return False

    def orphans(self, known_states, host_id=None):
        """States of processes this service started (those `host_id` started, if given)
        that none of `known_states` accounts for."""
        return []
