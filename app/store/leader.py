"""Electing the one process that sweeps a launcher domain, and the one that
sends webhooks (events are the whole service's, not a domain's).

SQLite (one host): an exclusive flock on `<database>.sweeper.lock`.
PostgreSQL (any number of hosts): a session-level advisory lock held by a
connection kept open for that purpose. Either way the holder keeps the role
for its life and loses it when it dies: the kernel drops the flock, the
server ends the dead process's connection and with it the lock, and the
next tick of another process takes over.
"""
import fcntl
import logging
import os
import threading

import sqlalchemy as sa
from sqlalchemy import exc

from .database import LEADER_LOCK, WEBHOOK_LOCK, engine_for, is_sqlite, lock_key, sqlite_path

log = logging.getLogger("cxs.store")


def leader_lock(url: str, domain: str) -> "FileLock | AdvisoryLock":
    if is_sqlite(url):
        path = sqlite_path(url)
        assert path is not None     # `sqlite://` (a database in no file) has no file to lock beside
        return FileLock(path + ".sweeper.lock")
    return AdvisoryLock(url, domain)


def webhook_lock(url: str) -> "FileLock | AdvisoryLock":
    """The lock of the one sender of the outbox's events across every host:
    a lock of its own, so that it is neither a domain's sweeper (there may be
    several) nor waits for one."""
    if is_sqlite(url):
        path = sqlite_path(url)
        assert path is not None     # as leader_lock
        return FileLock(path + ".webhooks.lock")
    return AdvisoryLock(url, "webhooks", WEBHOOK_LOCK)


class _ProcessWide:
    """The role is a process's: its scheduler threads (the sweep, the pool's
    check) ask in turn, so two asking at once never both try for it and one
    is told no by the other's hold."""

    def __init__(self) -> None:
        self._turn = threading.Lock()

    def try_acquire(self) -> bool:
        with self._turn:
            return self._try_acquire()

    def release(self) -> None:
        with self._turn:
            self._release()

    def _try_acquire(self) -> bool:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError


class FileLock(_ProcessWide):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class AdvisoryLock(_ProcessWide):
    def __init__(self, url: str, domain: str, lock_class: int = LEADER_LOCK) -> None:
        super().__init__()
        self.url = url
        self.key = lock_key(domain)
        self.lock_class = lock_class
        self._connection: sa.Connection | None = None

    @property
    def held(self) -> bool:
        return self._connection is not None

    def _try_acquire(self) -> bool:
        """True while this process holds the role; checks the holding connection is alive."""
        try:
            if self._connection is not None:
                self._connection.execute(sa.text("SELECT 1"))
                return True
            connection = engine_for(self.url).connect()
            got = connection.execute(sa.text("SELECT pg_try_advisory_lock(:c, :k)"),
                                     {"c": self.lock_class, "k": self.key}).scalar()
            if not got:
                connection.close()
                return False
            # Kept out of the pool for good: returning it would hand the lock to a request.
            connection.detach()
            self._connection = connection
            return True
        except exc.DBAPIError as err:
            # Lost the server, and with it the lock (it may already be another's).
            log.warning("sweeper lock: database unreachable (%s)", err.__class__.__name__)
            self._release()
            return False

    def _release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except exc.DBAPIError:
                pass
            self._connection = None
