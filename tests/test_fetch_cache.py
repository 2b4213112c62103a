"""The fetch cache's own rules, on a real store and a loopback source (no
ChimeraX: the broker's side alone): least recently used entries go first,
never one a live session uses; an admin's purge keeps those too; a changed
cached file is fetched again, never served."""
import http.server
import os
import threading
import time
import uuid

import pytest

from app.services.fetch.broker import Broker
from app.store import SessionRecord, Store

MB = 2**20


@pytest.fixture
def source():
    files = {"a.cif": b"a" * (600 * 1024), "b.cif": b"b" * (600 * 1024), "c.cif": b"c" * 1000}
    hits = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            name = self.path.lstrip("/")
            hits[name] = hits.get(name, 0) + 1
            body = files.get(name)
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d/" % server.server_address[1], hits
    server.shutdown()
    server.server_close()


@pytest.fixture
def broker(tmp_path, source):
    url = "sqlite:///%s" % (tmp_path / "store.sqlite3")
    Store(url).init_schema()
    store = Store(url)
    settings = {"FETCH_CACHE_DIR": str(tmp_path / "cache"), "FETCH_CACHE_MB": 1, "FETCH_ALLOWED": [source[0]],
                "FETCH_MIRRORS": "", "ALLOW_FETCH": True, "FETCH_TIMEOUT": 10.0, "FETCH_MAX_MB": 5,
                "FETCH_PER_USER_PER_MIN": 1000, "FETCH_ALLOW_URLS": False}
    yield Broker(store, settings, launcher=None), store, source
    store.close()


def fetch(broker, base, name):
    return broker.fetch("alice", {"url": base + name, "save_name": name})


def live_session(store):
    record = SessionRecord(id=str(uuid.uuid4()), user="alice", label=None, status="active", created_at=time.time(),
                           last_activity=time.time(), idle_timeout=60, max_lifetime=600, workspace="/nowhere",
                           host_id="h", domain="d")
    store.insert_session(record, max_total=100, max_per_user=100)
    return record.id


def test_least_recently_used_go_first_but_never_one_in_use(broker):
    broker, store, (base, hits) = broker
    session = live_session(store)
    entry, how = fetch(broker, base, "a.cif")
    assert how == "downloaded" and os.path.exists(broker.cache.path(entry))
    store.use_fetch_entry(session, entry.url)
    fetch(broker, base, "b.cif")            # 1.2 MB > 1 MB: b is the only one not in use
    assert [e.url for e in store.fetch_entries()] == [base + "a.cif"]
    store.transition(session, ["active"], "terminated")
    fetch(broker, base, "c.cif")
    fetch(broker, base, "b.cif")            # now a, unused and the oldest, goes
    assert sorted(e.url for e in store.fetch_entries()) == [base + "b.cif", base + "c.cif"]
    assert hits == {"a.cif": 1, "b.cif": 2, "c.cif": 1}


def test_a_hit_is_served_from_disk_and_a_changed_file_fetched_again(broker):
    broker, store, (base, hits) = broker
    entry, _ = fetch(broker, base, "c.cif")
    assert fetch(broker, base, "c.cif")[1] == "hit" and hits["c.cif"] == 1
    path = broker.cache.path(entry)
    os.chmod(path, 0o644)
    with open(path, "ab") as out:
        out.write(b"tampered")
    again, how = fetch(broker, base, "c.cif")
    assert how == "downloaded" and hits["c.cif"] == 2
    assert open(broker.cache.path(again), "rb").read() == b"c" * 1000


def test_an_admins_purge_keeps_what_live_sessions_use(broker):
    broker, store, (base, _) = broker
    used, _ = fetch(broker, base, "c.cif")
    store.use_fetch_entry(live_session(store), used.url)
    fetch(broker, base, "a.cif")
    listing = broker.listing()
    assert {e["url"]: e["in_use"] for e in listing["entries"]} == {base + "c.cif": True, base + "a.cif": False}
    assert broker.purge_unused() == {"removed": [base + "a.cif"], "kept_in_use": [base + "c.cif"]}
    assert [e.url for e in store.fetch_entries()] == [base + "c.cif"]
    assert os.path.exists(broker.cache.path(used))


def test_a_download_finished_between_the_look_and_the_lease_is_not_fetched_again(broker, tmp_path):
    """The interleaving the several-workers test met by chance once in CI: another
    worker (a second broker on the same store) stores the entry and lets go of its
    lease after this one looked for the entry and before it takes the lease."""
    broker, store, (base, hits) = broker
    other = Broker(Store(store.url), dict(broker.settings), launcher=None)
    take, finished = store.take_fetch_lease, []

    def take_after_the_other_finished(*args, **kwargs):
        if not finished:
            finished.append(other.fetch("bob", {"url": base + "c.cif", "save_name": "c.cif"}))
        return take(*args, **kwargs)
    store.take_fetch_lease = take_after_the_other_finished
    try:
        entry, how = fetch(broker, base, "c.cif")
    finally:
        other.store.close()
    assert finished[0][1] == "downloaded"
    assert how == "hit" and entry.sha256 == finished[0][0].sha256
    assert hits == {"c.cif": 1}


def test_an_entry_evicted_between_its_hit_and_its_use_is_fetched_again(broker):
    """Another worker filling the cache evicts the entry (no session used it yet)
    after this one found it and before it recorded the session's use: the path
    handed to ChimeraX is never one of a removed file."""
    import types
    broker, store, (base, hits) = broker
    session = live_session(store)
    broker.launcher = types.SimpleNamespace(fetch_cache_path=lambda process, path: path)
    fetch(broker, base, "c.cif")
    found, evicted = broker.fetch, []

    def found_then_evicted(*args, **kwargs):
        entry, how = found(*args, **kwargs)
        if not evicted:
            evicted.append(broker.purge_unused(entry.url))
        return entry, how
    broker.fetch = found_then_evicted
    answer = broker.answer(store.get_session(session), "alice", {"url": base + "c.cif", "save_name": "c.cif"})
    assert evicted == [{"removed": [base + "c.cif"], "kept_in_use": []}]
    assert open(answer["path"], "rb").read() == b"c" * 1000
    assert hits == {"c.cif": 2}
    assert broker.purge_unused(base + "c.cif")["kept_in_use"] == [base + "c.cif"]    # used now


def test_an_eviction_decided_on_an_old_list_keeps_an_entry_a_session_has_just_taken(broker):
    """The other order: a worker lists the unused entries, a session then opens
    one, and the worker's eviction comes after: the entry and its file stay."""
    import types
    broker, store, (base, hits) = broker
    session = live_session(store)
    broker.launcher = types.SimpleNamespace(fetch_cache_path=lambda process, path: path)
    fetch(broker, base, "c.cif")
    listed = store.evictable_fetch_entries()
    assert [e.url for e in listed] == [base + "c.cif"]
    answer = broker.answer(store.get_session(session), "alice", {"url": base + "c.cif", "save_name": "c.cif"})
    assert not broker.purge(listed[0])
    assert open(answer["path"], "rb").read() == b"c" * 1000 and hits == {"c.cif": 1}
