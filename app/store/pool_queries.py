"""Warm pool queries, and the capacity and port counting that pool slots and new
sessions share (LimitReached)."""
from collections.abc import Callable, Sequence
import time

import sqlalchemy as sa

from .base import StoreBase, filtered, live
from .models import PoolEntry, PoolStatus, ProcessHandle
from .tables import pool, sessions


class LimitReached(Exception):
    def __init__(self, scope: str, limit: int) -> None:
        super().__init__("%s limit of %d live sessions reached" % (scope, limit))
        self.scope = scope      # "user", "global" or "port"
        self.limit = limit


class PoolQueries(StoreBase):
    def _used(self, domain):
        """Live sessions and pool processes (they count until claimed) in a domain."""
        return (self._count(sessions, live(), sessions.c.domain == domain)
                + self._count(pool, pool.c.domain == domain))

    def _take_ready_pool_entry(self, domain: str | None) -> PoolEntry | None:
        row = self._execute(pool.select().where(pool.c.status == "ready", pool.c.domain == domain)
                            .order_by(pool.c.created_at).limit(1)).mappings().first()
        if row is None:
            return None
        self._execute(pool.delete().where(pool.c.id == row["id"]))
        return PoolEntry.from_row(row)

    def _free_port(self, domain, ports, port_is_free):
        taken = set(self._execute(
            sa.select(sessions.c.port).where(live(), sessions.c.domain == domain,
                                             sessions.c.port.is_not(None))
            .union(sa.select(pool.c.port).where(pool.c.domain == domain, pool.c.port.is_not(None))))
            .scalars())
        for port in ports:
            if port not in taken and (port_is_free is None or port_is_free(port)):
                return port
        raise LimitReached("port", len(ports))

    # The warm pool

    def add_pool_entry(self, entry_id: str, directory: str, max_total: int, want: int, host_id: str, domain: str,
                       ports: Sequence[int] | None = None, port_is_free: Callable[[int], bool] | None = None,
                       owner: str | None = None) -> PoolEntry | None:
        """Reserve a pool slot in `domain` if its pool is short and capacity allows:
        the new entry (status starting, with its port: None when ChimeraX picks), else None."""
        with self._decision(domain):
            if (self._count(pool, pool.c.domain == domain) >= want
                    or self._used(domain) >= max_total):
                return None
            port = self._free_port(domain, ports, port_is_free) if ports is not None else None
            entry = PoolEntry(id=entry_id, status=PoolStatus.STARTING, created_at=time.time(), directory=directory,
                              host_id=host_id, domain=domain, port=port, owner=owner)
            self._execute(pool.insert().values(id=entry.id, status=entry.status.value, created_at=entry.created_at,
                                               directory=directory, port=port, host_id=host_id,
                                               domain=domain, owner=owner))
            return entry

    def set_pool_entry(self, entry_id: str, status: PoolStatus, process: ProcessHandle | None,
                       port: int | None) -> bool:
        result = self._execute(pool.update().where(pool.c.id == entry_id)
                               .values(status=status.value, process=process, port=port))
        return result.rowcount == 1

    def remove_pool_entry(self, entry_id: str) -> bool:
        return self._execute(pool.delete().where(pool.c.id == entry_id)).rowcount == 1

    def pool_entries(self, domain: str | None = None, host_id: str | None = None) -> list[PoolEntry]:
        query = filtered(pool.select().order_by(pool.c.created_at), pool, domain=domain, host_id=host_id)
        return [PoolEntry.from_row(row) for row in self._execute(query).mappings()]

    def count_pool_by_status(self) -> dict[str, int]:
        query = sa.select(pool.c.status, sa.func.count()).group_by(pool.c.status)
        return {status: n for status, n in self._execute(query)}
