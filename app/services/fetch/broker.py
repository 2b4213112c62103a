"""The service's side of a fetch: what a session's ChimeraX asked for
(`{"url", "name", "save_name", "uncompress"}`) is decided, downloaded at most
once across workers and hosts (a lease in the store), cached, and answered
with the path ChimeraX reads it from, or with the reason it is not."""
from collections.abc import Callable, Mapping
import logging
import time
from typing import Any
import uuid

from ...store import SessionRecord, StoreUnavailable
from ...store.fetch_queries import CacheEntry
from ..monitoring import metrics
from ..processes.launchers import Launcher
from . import rules
from .cache import Cache
from .download import download

log = logging.getLogger("cxs.fetch")

SAVE_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
WAIT_POLL = 0.05        # while another worker downloads: how often its result is looked for
TOUCH_INTERVAL = 60.0   # s: an entry's last use is written at most this often
# Uses this process has written (a session's use of an entry is one row): not written again.
_recorded_uses: set[tuple[str, str, float]] = set()


class Broker:
    def __init__(self, store: Any, settings: Mapping[str, Any], launcher: Launcher,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.settings, self.launcher, self.clock = store, settings, launcher, clock
        self.cache = Cache(settings["FETCH_CACHE_DIR"], settings["FETCH_CACHE_MB"] * 2**20)
        self.allowed = list(settings["FETCH_ALLOWED"])
        self.mirrors = rules.parse_mirrors(settings["FETCH_MIRRORS"])

    def answer(self, record: SessionRecord, user: str, request: Mapping[str, Any],
               trusted: bool = False) -> dict[str, str]:
        """What the agent hands back to ChimeraX's fetch_file: {"path"} or {"error"}.
        `trusted`: the command runs without a policy profile (URLs may be allowed)."""
        started = time.perf_counter()
        try:
            for _ in range(2):
                entry, result = self.fetch(user, request, trusted)
                # A use keeps the entry from removal (decided with it, store.remove_fetch_entry);
                # one removed between the look and the use (another worker filling the
                # cache) is looked for again, and fetched.
                if self._use(record.id, entry):
                    break
            else:
                raise rules.FetchRefused("the cached file was removed while it was being opened; try again",
                                         "source_error")
        except rules.FetchRefused as refused:
            metrics.FETCHES.labels(refused.result).inc()
            log.info("fetch for %s refused (%s): %s", user, refused.result, refused.message)
            return {"error": refused.message}
        except StoreUnavailable:
            metrics.FETCHES.labels("store_unavailable").inc()
            return {"error": "the fetch cache is unavailable; try again shortly"}
        metrics.FETCHES.labels(result).inc()
        metrics.FETCH_SECONDS.observe(time.perf_counter() - started)
        return {"path": self.launcher.fetch_cache_path(record.process, self.cache.path(entry))}

    def _use(self, session_id: str, entry: CacheEntry) -> bool:
        """Record that the session uses this download of the entry; False if it
        is no longer the entry."""
        use = (session_id, entry.url, entry.fetched_at)     # a new download of the URL is a new entry
        if use in _recorded_uses:
            return True         # kept since this process recorded it
        if not self.store.use_fetch_entry(session_id, entry.url, entry.fetched_at):
            return False
        if len(_recorded_uses) > 10000:
            _recorded_uses.clear()
        _recorded_uses.add(use)
        return True

    def fetch(self, user: str, request: Mapping[str, Any], trusted: bool = False) -> tuple[CacheEntry, str]:
        """(the cache entry of the request's URL, "hit" or "downloaded")."""
        if not self.settings["ALLOW_FETCH"]:
            raise rules.FetchRefused("fetching is turned off on this service (ALLOW_FETCH)", "disabled")
        if request.get("kind") == "url" and not (trusted and self.settings["FETCH_ALLOW_URLS"]):
            # Viewers never get here (the policy refuses URLs); trusted profiles only with the switch.
            raise rules.FetchRefused("opening URLs is turned off on this service (FETCH_ALLOW_URLS)", "urls_off")
        url, save_name = str(request.get("url") or ""), str(request.get("save_name") or "")
        rules.check(url, self.allowed)
        if not save_name or set(save_name) - SAVE_NAME_CHARS or save_name.startswith(".") or len(save_name) > 128:
            raise rules.FetchRefused("%r is not a name the cache keeps" % save_name, "not_allowed")
        now = self.clock()
        holder, counted = uuid.uuid4().hex, False
        deadline = time.monotonic() + self.settings["FETCH_TIMEOUT"] + 5
        while True:
            entry = self._cached(url, save_name)
            if entry is not None:
                if now - entry.last_used > TOUCH_INTERVAL:      # the LRU order needs no finer time
                    self.store.touch_fetch_entry(url, now)
                return entry, "hit"
            # What reaches the sources (or waits for them) counts; a hit does not.
            if not counted and self.store.count_fetch_request(user, now, 60) > self.settings["FETCH_PER_USER_PER_MIN"]:
                raise rules.FetchRefused("too many fetches: at most %d a minute (FETCH_PER_USER_PER_MIN)"
                                         % self.settings["FETCH_PER_USER_PER_MIN"], "rate_limited")
            counted = True
            if self.store.take_fetch_lease(url, holder, self.clock(), self.settings["FETCH_TIMEOUT"] + 5):
                try:
                    # The holder before us may have stored the entry and let go between our look
                    # above and this lease: look again under the lease, or the URL is fetched twice.
                    entry = self._cached(url, save_name)
                    if entry is not None:
                        return entry, "hit"
                    return self._download(url, save_name, bool(request.get("uncompress"))), "downloaded"
                finally:
                    self.store.release_fetch_lease(url, holder)
            if time.monotonic() > deadline:
                raise rules.FetchRefused("another download of %s did not finish in time" % url, "timed_out")
            time.sleep(WAIT_POLL)       # another worker holds the lease: its entry appears, or the lease ends

    def _cached(self, url: str, save_name: str) -> CacheEntry | None:
        """The entry of `url`, if stored under that name and its file is as stored."""
        entry = self.store.fetch_entry(url)
        return entry if entry is not None and entry.save_name == save_name and self.cache.intact(entry) else None

    def _download(self, url: str, save_name: str, uncompress: bool) -> CacheEntry:
        self.cache.prepare()
        source = rules.download_url(url, self.mirrors)
        redirects = self.allowed + [replacement for _, replacement in self.mirrors]
        got = download(source, self.cache.root, timeout=self.settings["FETCH_TIMEOUT"],
                       max_bytes=self.settings["FETCH_MAX_MB"] * 2**20, uncompress=uncompress,
                       redirect_prefixes=redirects)
        metrics.FETCH_BYTES.inc(got.size)
        mtime_ns = self.cache.place(got, save_name)
        now = self.clock()
        entry = CacheEntry(url=url, sha256=got.sha256, save_name=save_name, size=got.size, fetched_at=now,
                           last_used=now, mtime_ns=mtime_ns)
        self.store.add_fetch_entry(entry)
        log.info("fetched %s (%d bytes) from %s", url, got.size, source)
        self.evict()
        return entry

    def evict(self) -> list[str]:
        """Least recently used entries no live session uses go until the cache
        is within FETCH_CACHE_MB; the URLs removed."""
        total, removed = self.store.fetch_cache_bytes(), list[str]()
        if total <= self.cache.max_bytes:
            return removed
        for entry in self.store.evictable_fetch_entries():
            if total <= self.cache.max_bytes:
                break
            if self.purge(entry):
                total -= entry.size
                removed.append(entry.url)
        return removed

    def listing(self) -> dict[str, Any]:
        """The cache as an admin sees it: entries newest use first, sizes, which are in use."""
        entries = self.store.fetch_entries()
        spare = {e.url for e in self.store.evictable_fetch_entries()}
        return {"bytes": sum(e.size for e in entries), "max_bytes": self.cache.max_bytes,
                "entries": [dict(e.__dict__, in_use=e.url not in spare) for e in entries]}

    def purge_unused(self, url: str | None = None) -> dict[str, list[str]]:
        """Remove entries (one, or all) that no live session uses; those in use are kept."""
        asked = [e for e in self.store.fetch_entries() if url is None or e.url == url]
        removed = [e.url for e in asked if self.purge(e)]
        return {"removed": removed, "kept_in_use": [e.url for e in asked if e.url not in removed]}

    def purge(self, entry: CacheEntry) -> bool:
        """Remove the entry and its file unless a live session uses it; whether it went."""
        if not self.store.remove_fetch_entry(entry):
            return False
        same = [e for e in self.store.fetch_entries() if e.sha256 == entry.sha256]
        self.cache.remove(entry, file_shared=any(e.save_name == entry.save_name for e in same),
                          folder_shared=bool(same))
        log.info("fetch cache: removed %s", entry.url)
        return True
