"""The fetch cache's index, shared by every worker and host: entries (URL ->
content hash, size, last use), which live sessions use which, one download
lease per URL, and each user's recent fetches (the rate)."""
from dataclasses import dataclass

import sqlalchemy as sa

from .base import StoreBase
from .models import LIVE_STATUSES, SUSPENDED
from .tables import fetch_cache, fetch_leases, fetch_requests, fetch_uses, sessions

LEASES = "fetch"       # the decision domain of lease changes, uses and removals
# Sessions whose uses keep an entry: any not ended (a suspended one comes back).
_LIVE_SESSIONS = sa.select(sessions.c.id).where(sessions.c.status.in_(LIVE_STATUSES + (SUSPENDED,)))


@dataclass(frozen=True)
class CacheEntry:
    url: str
    sha256: str
    save_name: str
    size: int
    fetched_at: float
    last_used: float
    mtime_ns: int


class FetchQueries(StoreBase):
    def fetch_entry(self, url: str) -> CacheEntry | None:
        row = self._execute(fetch_cache.select().where(fetch_cache.c.url == url)).mappings().first()
        return CacheEntry(**row) if row else None

    def add_fetch_entry(self, entry: CacheEntry) -> None:
        self._execute(fetch_cache.delete().where(fetch_cache.c.url == entry.url))
        self._execute(fetch_cache.insert().values(**entry.__dict__))

    def touch_fetch_entry(self, url: str, now: float) -> None:
        self._execute(fetch_cache.update().where(fetch_cache.c.url == url).values(last_used=now))

    def remove_fetch_entry(self, entry: CacheEntry) -> bool:
        """Remove this download of the entry unless a live (or suspended) session
        uses it: decided with the uses (use_fetch_entry), so a path just handed
        to a session is never of a file being removed. False if kept."""
        with self._decision(LEASES):
            if self._current_download(entry.url) != entry.fetched_at:
                return False        # gone, or fetched again since
            if self._execute(sa.select(sa.func.count()).select_from(fetch_uses).where(
                    fetch_uses.c.url == entry.url, fetch_uses.c.session_id.in_(_LIVE_SESSIONS))).scalar():
                return False
            self._execute(fetch_uses.delete().where(fetch_uses.c.url == entry.url))
            self._execute(fetch_cache.delete().where(fetch_cache.c.url == entry.url))
            return True

    def _current_download(self, url: str) -> float | None:
        return self._execute(sa.select(fetch_cache.c.fetched_at).where(fetch_cache.c.url == url)).scalar()

    def fetch_entries(self) -> list[CacheEntry]:
        query = fetch_cache.select().order_by(fetch_cache.c.last_used.desc())
        return [CacheEntry(**row) for row in self._execute(query).mappings()]

    def fetch_cache_bytes(self) -> int:
        return int(self._execute(sa.select(sa.func.coalesce(sa.func.sum(fetch_cache.c.size), 0))).scalar() or 0)

    def use_fetch_entry(self, session_id: str, url: str, fetched_at: float | None = None) -> bool:
        """Record that a session opened the entry (with `fetched_at`: that
        download of it): not evicted while it lives. False if that download is
        no longer the entry (removed, or fetched again): the caller looks again."""
        with self._decision(LEASES):
            if fetched_at is not None and self._current_download(url) != fetched_at:
                return False
            exists = self._execute(sa.select(sa.func.count()).select_from(fetch_uses).where(
                fetch_uses.c.session_id == session_id, fetch_uses.c.url == url)).scalar()
            if not exists:
                self._execute(fetch_uses.insert().values(session_id=session_id, url=url))
            return True

    def evictable_fetch_entries(self) -> list[CacheEntry]:
        """Entries no live (or suspended) session uses, least recently used first."""
        in_use = sa.select(fetch_uses.c.url).where(fetch_uses.c.session_id.in_(_LIVE_SESSIONS))
        query = fetch_cache.select().where(fetch_cache.c.url.not_in(in_use)).order_by(fetch_cache.c.last_used)
        return [CacheEntry(**row) for row in self._execute(query).mappings()]

    def take_fetch_lease(self, url: str, holder: str, now: float, seconds: float) -> bool:
        """The one right to download `url` now: True if taken (none held, or the
        last holder's expired). The others wait for the entry or the expiry."""
        with self._decision(LEASES):
            current = self._execute(sa.select(fetch_leases.c.expires_at).where(fetch_leases.c.url == url)).first()
            if current is not None and current[0] > now:
                return False
            self._execute(fetch_leases.delete().where(fetch_leases.c.url == url))
            self._execute(fetch_leases.insert().values(url=url, holder=holder, expires_at=now + seconds))
            return True

    def release_fetch_lease(self, url: str, holder: str) -> None:
        self._execute(fetch_leases.delete().where(fetch_leases.c.url == url, fetch_leases.c.holder == holder))

    def count_fetch_request(self, user: str, now: float, window: float) -> int:
        """Record one fetch of `user` and answer how many it made in the last `window` s."""
        self._execute(fetch_requests.delete().where(fetch_requests.c.at < now - window))
        self._execute(fetch_requests.insert().values(user=user, at=now))
        return int(self._execute(sa.select(sa.func.count()).select_from(fetch_requests).where(
            fetch_requests.c.user == user, fetch_requests.c.at >= now - window)).scalar() or 0)
