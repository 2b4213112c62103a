"""Each session's share of the host: a cgroup per ChimeraX process tree, made
before the process starts and removed after it ends (docs/limits.md).

Session cgroups are made under the cgroup the service itself runs in (for
each controller, as /proc/self/cgroup says) or under CGROUP_ROOT, one per
process, named `cxs-<service id>-<its token>` (no shared folder: nothing is
left behind when the last one goes). Nothing here moves a process (the
spawned one puts itself in, see spawn.join), and nothing writes to a cgroup
this module did not make, except that under an explicit v2 CGROUP_ROOT (a
delegated subtree) the controllers are enabled for its children, which is
what delegation hands over.

cgroup v1 is what this machine mounts (memory, pids, cpu and cpuacct, each a
hierarchy of its own); v2 holds one tree for all.
"""
from collections.abc import Mapping
from dataclasses import dataclass
import errno
import logging
import os
import time
from typing import Any

log = logging.getLogger("cxs.cgroups")

V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
V2_CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD_US = 100000


class CgroupsUnavailable(RuntimeError):
    """CGROUPS asks for a kind this host cannot give; the message says why."""


@dataclass(frozen=True)
class SessionLimits:
    memory_mb: int = 4096
    processes: int = 256
    cpus: float = 1.0


def _read(path: str) -> str | None:
    # Three system calls, not open()'s seven (fstat, ioctl, ...): a session's
    # GET reads four of these files, and each call gives up the GIL.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):     # /proc/self/mountinfo may be longer
            chunks.append(chunk)
        return b"".join(chunks).decode().strip()
    except OSError:
        return None
    finally:
        os.close(fd)


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _field(text: str | None, name: str) -> int | None:
    """A `name value` line's value from a flat keyed file (memory.events, cpu.stat)."""
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return _int(value)
    return None


def _mounts() -> dict[str, str]:
    """Where each v1 controller's hierarchy is mounted, and "" for the v2 tree
    (only mounts whose root is the hierarchy's own, so paths from
    /proc/self/cgroup can be appended)."""
    found: dict[str, str] = {}
    for line in (_read("/proc/self/mountinfo") or "").splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5 or fields[3] != "/":
            continue
        kind, options = line.split(" - ", 1)[1].split()[0], line.split(" - ", 1)[1].split()[-1]
        if kind == "cgroup2":
            found.setdefault("", fields[4])
        elif kind == "cgroup":
            for option in options.split(","):
                if option in V1_CONTROLLERS:
                    found.setdefault(option, fields[4])
    return found


def _own_paths() -> dict[str, str]:
    """The service's own cgroup per v1 controller, and "" for v2."""
    own = {}
    for line in (_read("/proc/self/cgroup") or "").splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            own[name] = path
    return own


class Cgroups:
    """Where this service makes session cgroups, and how (v1 or v2)."""

    def __init__(self, version: str, bases: dict[str, str], limits: SessionLimits, service_id: str) -> None:
        self.version = version          # "v1" or "v2"
        self.bases = bases              # controller -> where session cgroups are made ("" for v2's one tree)
        self.limits = limits
        self.prefix = "cxs-%s-" % service_id

    def describe(self) -> str:
        return "cgroup %s (under %s)" % (self.version, self.bases.get("memory") or self.bases.get("", ""))

    def paths(self, name: str) -> dict[str, str]:
        return {controller: os.path.join(base, self.prefix + name) for controller, base in self.bases.items()}

    def create(self, name: str) -> list[str]:
        """Make `name`'s cgroups with the limits; the files a process writes "0"
        (itself) to, to join them all (spawn.join)."""
        made = []
        try:
            for path in self.paths(name).values():
                if path not in made:        # co-mounted controllers (cpu,cpuacct) share one
                    os.mkdir(path, 0o755)
                    made.append(path)
            self._limit(self.paths(name))
        except OSError as err:
            self.remove(name)
            raise CgroupsUnavailable("session cgroup %s could not be made: %s" % (name, err)) from err
        # v1: `tasks`, the writer's own (only) thread. A write to cgroup.procs
        # makes the kernel wait for an RCU grace period (~10 ms here, bench
        # figure 9b) whenever no move came lately; a thread moving itself
        # does not take that lock. v2 has no such file for a whole process.
        joining = "tasks" if self.version == "v1" else "cgroup.procs"
        return [os.path.join(path, joining) for path in made]

    def _limit(self, paths: dict[str, str]) -> None:
        limits = self.limits
        memory = limits.memory_mb * 2**20 if limits.memory_mb else None
        if self.version == "v2":
            path = paths[""]
            if memory:
                _write(os.path.join(path, "memory.max"), str(memory))
                if os.path.exists(os.path.join(path, "memory.swap.max")):
                    _write(os.path.join(path, "memory.swap.max"), "0")
            if limits.processes:
                _write(os.path.join(path, "pids.max"), str(limits.processes))
            if limits.cpus:
                _write(os.path.join(path, "cpu.max"), "%d %d" % (_quota(limits.cpus), CPU_PERIOD_US))
                _write(os.path.join(path, "cpu.weight"), str(max(1, min(10000, round(100 * limits.cpus)))))
            return
        if memory:
            _write(os.path.join(paths["memory"], "memory.limit_in_bytes"), str(memory))
            swap = os.path.join(paths["memory"], "memory.memsw.limit_in_bytes")
            if os.path.exists(swap):        # memory + swap: the same bound, so no swapping past it
                _write(swap, str(memory))
        if limits.processes:
            _write(os.path.join(paths["pids"], "pids.max"), str(limits.processes))
        if limits.cpus:
            _write(os.path.join(paths["cpu"], "cpu.cfs_period_us"), str(CPU_PERIOD_US))
            _write(os.path.join(paths["cpu"], "cpu.cfs_quota_us"), str(_quota(limits.cpus)))
            _write(os.path.join(paths["cpu"], "cpu.shares"), str(max(2, round(1024 * limits.cpus))))

    def usage(self, name: str) -> dict | None:
        """{"cpu_seconds", "memory_bytes", "memory_peak_bytes", "processes"}; None if it is gone."""
        # Read on every GET of a session: the files themselves say whether it is there (no stat first).
        paths = self.paths(name)
        if self.version == "v2":
            path = paths[""]
            memory = _int(_read(os.path.join(path, "memory.current")))
            if memory is None:
                return None
            cpu = _field(_read(os.path.join(path, "cpu.stat")), "usage_usec")
            return {"cpu_seconds": None if cpu is None else cpu / 1e6, "memory_bytes": memory,
                    "memory_peak_bytes": _int(_read(os.path.join(path, "memory.peak"))),
                    "processes": _int(_read(os.path.join(path, "pids.current")))}
        memory = _int(_read(os.path.join(paths["memory"], "memory.usage_in_bytes")))
        if memory is None:
            return None
        cpu = _int(_read(os.path.join(paths["cpuacct"], "cpuacct.usage"))) if "cpuacct" in paths else None
        return {"cpu_seconds": None if cpu is None else cpu / 1e9, "memory_bytes": memory,
                "memory_peak_bytes": _int(_read(os.path.join(paths["memory"], "memory.max_usage_in_bytes"))),
                "processes": _int(_read(os.path.join(paths["pids"], "pids.current")))}

    def oom_killed(self, name: str) -> bool:
        """Whether the kernel killed a process of it for its memory limit (its own
        count, not a guess from how the process ended)."""
        paths = self.paths(name)
        if self.version == "v2":
            return (_field(_read(os.path.join(paths[""], "memory.events")), "oom_kill") or 0) > 0
        return (_field(_read(os.path.join(paths["memory"], "memory.oom_control")), "oom_kill") or 0) > 0

    def holds_processes(self, name: str) -> bool:
        return any(_read(os.path.join(path, "cgroup.procs")) for path in self.paths(name).values())

    def remove(self, name: str, wait: float = 0) -> bool:
        """Remove its cgroups once their processes have left (up to `wait` s): True when none is left."""
        deadline = time.monotonic() + wait
        while True:
            left = []
            for path in self.paths(name).values():
                try:
                    os.rmdir(path)
                except FileNotFoundError:
                    pass
                except OSError as err:
                    if err.errno != errno.EBUSY:
                        raise
                    left.append(path)
            if not left or time.monotonic() >= deadline:
                return not left
            time.sleep(0.02)

    def names(self) -> set[str]:
        """Names of this service's session cgroups there are (in any controller)."""
        found: set[str] = set()
        for base in self.bases.values():
            try:
                found.update(entry.name[len(self.prefix):] for entry in os.scandir(base)
                             if entry.is_dir() and entry.name.startswith(self.prefix))
            except OSError:
                continue
        return found

    def age(self, name: str) -> float:
        """Seconds since it was made (its folder's time), 0 if unknown."""
        try:
            return time.time() - min(os.stat(path).st_mtime for path in self.paths(name).values())
        except (OSError, ValueError):
            return 0


def address_space_mb(config: Mapping[str, Any], memory_held: bool) -> int:
    """SESSION_ADDRESS_SPACE_MB, or its default: where something else holds
    SESSION_MEMORY_MB (a session cgroup), twice it, a backstop for one huge
    allocation; where nothing does, SESSION_MEMORY_MB itself."""
    memory = config["SESSION_MEMORY_MB"]
    return config["SESSION_ADDRESS_SPACE_MB"] or (2 * memory if memory_held else memory)


def _quota(cpus: float) -> int:
    return max(1000, round(cpus * CPU_PERIOD_US))


def choose(mode: str, root: str, service_id: str, limits: SessionLimits) -> Cgroups | None:
    """The cgroups CGROUPS asks for (`auto`: v2, else v1, else None with a warning);
    raise CgroupsUnavailable when an explicit kind cannot work."""
    if mode == "off":
        return None
    reasons = []
    for version in (("v2", "v1") if mode == "auto" else (mode,)):
        try:
            bases = _v2(root) if version == "v2" else _v1(root)
            return Cgroups(version, bases, limits, service_id)
        except CgroupsUnavailable as err:
            reasons.append("%s: %s" % (version, err))
    if mode != "auto":
        raise CgroupsUnavailable("CGROUPS=%s cannot work here (%s)" % (mode, "; ".join(reasons)))
    log.warning("no per-session cgroups (%s): sessions are limited per process only (docs/limits.md)",
                "; ".join(reasons))
    return None


def _v1(root: str) -> dict[str, str]:
    mounts, own = _mounts(), _own_paths()
    bases = {}
    for controller in V1_CONTROLLERS:
        if controller not in mounts:
            if controller == "cpuacct":
                continue        # CPU time unknown, the limits still hold
            raise CgroupsUnavailable("no v1 %s hierarchy is mounted" % controller)
        bases[controller] = _writable(mounts[controller] + (root or own.get(controller, "/")))
    return bases


def _v2(root: str) -> dict[str, str]:
    mounts, own = _mounts(), _own_paths()
    if "" not in mounts:
        raise CgroupsUnavailable("no v2 tree is mounted")
    delegated = bool(root)      # the operator named it: its children's controllers are ours to enable
    root = mounts[""] + (root or own.get("", "/"))
    available = (_read(os.path.join(root, "cgroup.controllers")) or "").split()
    missing = [c for c in V2_CONTROLLERS if c not in available]
    if missing:
        raise CgroupsUnavailable("%s lacks the %s controller(s) (delegate them: docs/limits.md)"
                                 % (root, ", ".join(missing)))
    enabled = (_read(os.path.join(root, "cgroup.subtree_control")) or "").split()
    try:
        if any(c not in enabled for c in V2_CONTROLLERS):
            if not delegated:
                raise CgroupsUnavailable("%s does not enable %s for its children (set CGROUP_ROOT to a "
                                         "delegated cgroup)" % (root, ", ".join(V2_CONTROLLERS)))
            _write(os.path.join(root, "cgroup.subtree_control"), " ".join("+" + c for c in V2_CONTROLLERS))
    except OSError as err:
        raise CgroupsUnavailable("%s is not delegated to this service (%s)" % (root, err)) from err
    return {"": _writable(root)}


def _writable(path: str) -> str:
    if not os.path.isdir(path):
        raise CgroupsUnavailable("%s does not exist" % path)
    if not os.access(path, os.W_OK):
        raise CgroupsUnavailable("%s is not writable by this service" % path)
    return path

