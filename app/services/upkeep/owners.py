"""Who is carrying out a session's transition (starting, ending, suspending,
resuming): the worker process, as (machine, pid, start time).

A row in transition names its owner, so the sweeper resolves it as soon as
that process is gone — adopting what became ready, ending the rest — and
never takes over one whose owner still lives, however slow (a suspend
saving a large scene, a scheduler cancelling a job). Whether an owner lives
can be told only on its own machine; elsewhere the caller falls back to a
time limit.
"""
from dataclasses import dataclass
import os
from typing import Optional

import psutil


def _machine() -> str:
    # A boot's own id: pids are only comparable within one boot of one machine.
    try:
        with open("/proc/sys/kernel/random/boot_id") as source:
            return source.read().strip()
    except OSError:
        import socket
        return socket.gethostname()


MACHINE = _machine()


@dataclass(frozen=True)
class Owner:
    machine: str
    pid: int
    started: float

    def __str__(self) -> str:
        return "%s/%d/%.3f" % (self.machine, self.pid, self.started)

    @classmethod
    def parse(cls, text: str | None) -> Optional["Owner"]:
        try:
            machine, pid, started = (text or "").rsplit("/", 2)
            return cls(machine, int(pid), float(started))
        except ValueError:
            return None

    def alive(self) -> bool | None:
        """True or False on its own machine; None elsewhere (cannot be told)."""
        if self.machine != MACHINE:
            return None
        try:
            proc = psutil.Process(self.pid)
            # pids are reused: the same pid started at another time is another process.
            return abs(proc.create_time() - self.started) < 0.05 and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


_current: dict[int, str] = {}


def current() -> str:
    """This process as an owner (computed once per process: a fork is another owner)."""
    pid = os.getpid()
    if pid not in _current:
        _current.clear()
        _current[pid] = str(Owner(MACHINE, pid, psutil.Process(pid).create_time()))
    return _current[pid]


def owner_alive(text: str | None) -> bool | None:
    """Whether the owner recorded as `text` lives; None: unknown (no owner
    recorded, or one on another machine)."""
    owner = Owner.parse(text)
    return owner.alive() if owner else None
