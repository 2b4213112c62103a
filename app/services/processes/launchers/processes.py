"""Local process identity and process trees (psutil).

Identity is (pid, create_time), never the pid alone: pids get reused. A
sandboxed ChimeraX is a tree (bwrap outside, bwrap as the sandbox's pid 1,
ChimeraX, whatever ChimeraX started); everything in it descends from the
process the launcher spawned, because orphans inside a pid namespace are
re-parented to its pid 1, never to the host's init.
"""
from collections.abc import Iterable, Sequence
import os
import signal
import time

import psutil


def process(pid: int | None, create_time: float | None = None) -> psutil.Process | None:
    """The live psutil.Process if `pid` is still that very process, else None."""
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        if create_time and abs(proc.create_time() - create_time) > 0.05:
            return None     # the pid now belongs to someone else
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def identity(proc: psutil.Process) -> tuple[int, float | None]:
    try:
        return proc.pid, proc.create_time()
    except psutil.Error:
        return proc.pid, None


def tree(*roots: psutil.Process | None) -> list[psutil.Process]:
    """The live roots and all their descendants, without duplicates."""
    found: dict[int, psutil.Process] = {}
    for root in roots:
        if root is None:
            continue
        found.setdefault(root.pid, root)
        try:
            for child in root.children(recursive=True):
                found.setdefault(child.pid, child)
        except psutil.Error:
            continue
    return [p for p in found.values() if _alive(p)]


def _alive(proc):
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def signal_all(procs: Iterable[psutil.Process], signum: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(signum)
        except psutil.Error:
            pass


def signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def wait_gone(procs: Sequence[psutil.Process], timeout: float) -> bool:
    """Wait until none of `procs` is alive (zombies count as gone); True if so."""
    deadline = time.monotonic() + timeout
    while True:
        if not any(_alive(p) for p in procs):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def terminate_tree(roots: Sequence[psutil.Process | None], polite: Iterable[psutil.Process | None], grace: float,
                   group: int | None = None) -> None:
    """SIGTERM `polite` (and the process group), wait `grace` s, then SIGKILL the whole tree."""
    procs = tree(*roots)
    if not procs:
        return
    signal_all([p for p in polite if p is not None], signal.SIGTERM)
    if group:
        signal_group(group, signal.SIGTERM)
    if wait_gone(procs, grace):
        return
    procs = tree(*roots) + procs
    signal_all(procs, signal.SIGKILL)
    if group:
        signal_group(group, signal.SIGKILL)
    wait_gone(procs, 5)


def rss_bytes(procs: Iterable[psutil.Process]) -> int:
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


def usage(procs: Iterable[psutil.Process]) -> dict:
    """What a process tree uses, as its cgroup would say it (cgroups.Cgroups.usage):
    for hosts without one. Peak: the sum of each process's own high-water mark."""
    cpu, memory, peak, tasks = 0.0, 0, 0, 0
    for proc in procs:
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                cpu += times.user + times.system
                memory += proc.memory_info().rss
                tasks += proc.num_threads()
            peak += _high_water_mark(proc.pid)
        except psutil.Error:
            continue
    return {"cpu_seconds": cpu, "memory_bytes": memory, "memory_peak_bytes": peak or None, "processes": tasks}


def _high_water_mark(pid: int) -> int:
    try:
        with open("/proc/%d/status" % pid) as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0
