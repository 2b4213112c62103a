"""The warm pool: idle, ready ChimeraX processes waiting to become sessions.

Entries live in the store, so every worker can claim one (inside the create
transaction: never two sessions for one process). Only the sweeper's leader
fills, health-checks and recycles the pool, from its own background job:
never on a request's path. Each entry runs in its own directory, which a
claim renames into the new session's workspace.
"""
from collections.abc import Mapping
import logging
import os
import shutil
import time
from typing import TYPE_CHECKING, Any
import uuid

from ...store.models import PoolEntry, PoolStatus, ProcessHandle
from ..errors import log_fault
from ..upkeep import owners
from ..upkeep.owners import owner_alive
from ..upkeep.transitions import startup_grace
from . import chimerax_client

if TYPE_CHECKING:
    from ...store import Store
    from .launchers.base import Launcher

log = logging.getLogger("cxs.pool")
POOL_PREFIX = ".pool-"


def marker(entry_id: str) -> str:
    return "pool:" + entry_id


class WarmPool:
    def __init__(self, store: "Store", launcher: "Launcher", settings: Mapping[str, Any]) -> None:
        self.store = store
        self.launcher = launcher
        self.settings = settings

    @property
    def size(self) -> int:
        return self.settings["POOL_SIZE"]

    def fill(self) -> int:
        """Start processes until the pool is full or capacity is used up; returns how many."""
        started = 0
        while started < self.size:
            entry_id = uuid.uuid4().hex
            directory = os.path.join(self.settings["WORKSPACE_ROOT"], POOL_PREFIX + entry_id)
            reserved = self.store.add_pool_entry(
                entry_id, directory, self.settings["MAX_SESSIONS"], self.size,
                self.settings["HOST_ID"], self.launcher.domain, ports=self.launcher.port_range,
                port_is_free=self.launcher.port_is_free, owner=owners.current())
            if reserved is None:
                break
            self._spawn(entry_id, directory, reserved.port)
            started += 1
        return started

    def _spawn(self, entry_id, directory, port):
        state = {}
        try:
            self.launcher.make_workspace(directory)
            state = self.launcher.start(marker(entry_id), directory, port)
            self.store.set_pool_entry(entry_id, PoolStatus.STARTING, state, port)
            state = self.launcher.wait_ready(state, self.settings["STARTUP_TIMEOUT"])
            if self.store.set_pool_entry(entry_id, PoolStatus.READY, state, state.port):
                log.info("pool: %s ready", self.launcher.process_id(state))
                return
            log.info("pool: entry %s was dropped while starting", entry_id)
        except Exception:
            log_fault(log, "pool: could not start a process")
        self._discard(entry_id, state, directory)

    def _discard(self, entry_id, state, directory):
        self.store.remove_pool_entry(entry_id)
        if state:
            self.launcher.stop(state, self.settings["STOP_GRACE_PERIOD"])
        shutil.rmtree(directory, ignore_errors=True)

    def remove(self, entry: PoolEntry) -> bool:
        """Drop an entry unless a create claimed it first; then end its process."""
        if self.store.remove_pool_entry(entry.id):
            self._discard(entry.id, entry.process, entry.directory)
            return True
        return False

    def maintain(self, now: float | None = None, ping: bool = False) -> int:
        """Drop dead, stale, too old (POOL_MAX_AGE) and, with `ping`, unresponsive entries."""
        now = now or time.time()
        dropped = 0
        for entry in self.store.pool_entries(domain=self.launcher.domain):
            state = entry.process
            if entry.status == PoolStatus.STARTING:
                # Its starter's until that worker is gone: then it is never made ready.
                stale = now - entry.created_at > startup_grace(self.settings, self.launcher)
                drop = owner_alive(entry.owner) is False or (stale and (not state or self.launcher.poll(state)))
            elif self.launcher.poll(state):
                drop = True
            elif now - entry.created_at > self.settings["POOL_MAX_AGE"]:
                drop = True
            elif ping:
                assert state is not None        # poll() reports a missing process as ended
                drop = not chimerax_client.ping(self.launcher.channel(state), self.settings["HEALTH_CHECK_TIMEOUT"])
            else:
                drop = False
            if drop and self.remove(entry):
                dropped += 1
        return dropped

    def _own_entries(self) -> list[PoolEntry]:
        # Start-up and shutdown of one instance touch only what it started.
        return self.store.pool_entries(domain=self.launcher.domain, host_id=self.settings["HOST_ID"])

    def drain(self) -> int:
        return sum(1 for entry in self._own_entries() if self.remove(entry))

    def adopt_or_reap(self) -> list[ProcessHandle]:
        """After a restart: keep entries whose process is verifiably theirs; their states."""
        kept = []
        for entry in self._own_entries():
            if entry.status == PoolStatus.READY and self.launcher.adoptable(entry.process, marker(entry.id)):
                assert entry.process is not None        # adoptable() is False without a process
                kept.append(entry.process)
            else:
                self.remove(entry)
        return kept
