"""The store on both backends: invariants under concurrency, precision, and which
errors are the database's fault (503) and which are ours (500)."""
import threading
import time

import pytest
import sqlalchemy as sa

from app.store import LimitReached, SessionRecord, Store, StoreUnavailable
from app.store.models import PoolStatus, ProcessHandle


def record(i, user, domain="local:test", host="h1"):
    now = time.time()
    return SessionRecord(id="s%03d" % i, user=user, label=None, status="starting", created_at=now,
                         last_activity=now, idle_timeout=60, max_lifetime=600, workspace="/nowhere/%d" % i,
                         host_id=host, domain=domain)


@pytest.fixture
def store(database_url):
    Store(database_url).init_schema()
    handle = Store(database_url)
    yield handle
    handle.close()


def test_concurrent_inserts_never_exceed_limits_or_share_ports(database_url, store):
    results, barrier = [], threading.Barrier(30)

    def attempt(i):
        mine = Store(database_url)
        barrier.wait()
        try:
            rec = record(i, "u%d" % (i % 6))
            mine.insert_session(rec, max_total=10, max_per_user=3, ports=range(7000, 7100))
            results.append(rec.port)
        except LimitReached as err:
            results.append(err.scope)
        finally:
            mine.close()
    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ports = [r for r in results if isinstance(r, int)]
    assert len(ports) == 10 and len(set(ports)) == 10
    assert len(results) == 30
    live = store.live_sessions()
    assert len(live) == 10
    assert max(sum(1 for r in live if r.user == u) for u in {r.user for r in live}) <= 3


def test_capacity_and_ports_are_counted_per_domain(store):
    store.insert_session(record(1, "a", domain="one"), max_total=1, max_per_user=9, ports=range(7000, 7002))
    with pytest.raises(LimitReached) as full:
        store.insert_session(record(2, "b", domain="one"), max_total=1, max_per_user=9, ports=range(7000, 7002))
    assert full.value.scope == "global"
    other = record(3, "c", domain="two")
    store.insert_session(other, max_total=1, max_per_user=9, ports=range(7000, 7002))
    assert other.port == 7000          # the same port on another machine is free
    assert [r.id for r in store.live_sessions(domain="two")] == ["s003"]


def test_pool_claim_takes_each_entry_once_and_only_in_its_domain(store):
    assert store.add_pool_entry("p1", "/d1", 10, 2, "h1", "one").port is None
    store.set_pool_entry("p1", PoolStatus.READY, ProcessHandle({"pid": 1}), 7001)
    assert store.insert_session(record(1, "a", domain="two"), 10, 10, claim_pool=True) is None
    claimed = store.insert_session(record(2, "a", domain="one"), 10, 10, claim_pool=True)
    assert claimed.id == "p1" and claimed.process == ProcessHandle({"pid": 1})
    assert store.get_session("s002").port == 7001
    assert store.insert_session(record(3, "a", domain="one"), 10, 10, claim_pool=True) is None


def test_transition_is_compare_and_set(store):
    store.insert_session(record(1, "a"), 10, 10)
    assert store.transition("s001", ["starting"], "active")
    assert not store.transition("s001", ["starting"], "failed")
    assert store.get_session("s001").status == "active"


def test_session_pages_are_newest_first_and_stable_while_rows_are_added(store):
    # Ties on created_at (sessions created in the same microsecond) are ordered by id.
    for i, (user, created_at) in enumerate([("a", 100.0), ("a", 101.5), ("b", 101.5), ("a", 101.5),
                                            ("a", 102.25), ("b", 103.0), ("a", 104.0)]):
        rec = record(i, user)
        rec.created_at = created_at
        store.insert_session(rec, max_total=99, max_per_user=99)
    newest_first = ["s006", "s004", "s003", "s001", "s000"]
    seen, before = [], None
    while True:
        page = store.list_sessions(user="a", limit=2, before=before)
        if not page:
            break
        seen += [r.id for r in page]
        before = (page[-1].created_at, page[-1].id)
        late = record(len(seen) + 50, "a")         # newer than every page: never in a later one
        store.insert_session(late, max_total=99, max_per_user=99)
    assert seen == newest_first
    store.transition("s004", ["starting"], "active")
    assert [r.id for r in store.list_sessions(statuses=["active", "failed"])] == ["s004"]
    assert len(store.list_sessions(user="b", statuses=["starting"])) == 2


def test_timestamps_keep_microseconds(store):
    rec = record(1, "a")
    rec.created_at = rec.last_activity = 1764000000.123456
    store.insert_session(rec, 10, 10)
    assert store.get_session("s001").created_at == 1764000000.123456


def test_health_failures_count_up_and_reset(store):
    store.insert_session(record(1, "a"), 10, 10)
    assert [store.record_health("s001", False) for _ in range(3)] == [1, 2, 3]
    assert store.record_health("s001", True) == 0
    assert store.get_session("s001").health_failures == 0


def test_a_constraint_violation_is_our_bug_not_an_outage(store):
    store.insert_session(record(1, "a"), 10, 10)
    with pytest.raises(sa.exc.IntegrityError):
        store.insert_session(record(1, "a"), 10, 10)        # the same id twice
    assert store.get_session("s001").status == "starting"   # and the handle still works


def test_an_unreachable_database_is_unavailable(tmp_path, postgres_server):
    gone = "postgresql+psycopg://cxs@/nothing?host=%s" % (tmp_path / "no-server-here")
    with pytest.raises(StoreUnavailable):
        Store(gone).ping()


def test_sweep_records_are_per_host_and_pid(store):
    store.record_sweep("a", 10)
    store.record_sweep("a", 10)
    store.record_sweep("b", 10)
    assert store.sweep_counts() == {("a", 10): 2, ("b", 10): 1}


def test_connections_the_server_dropped_are_replaced(postgres_url):
    """A restart of PostgreSQL (here: every backend of the database terminated)
    leaves the pool full of dead connections: a read is retried once on a fresh
    one; a write, which may have been applied, is a 503 and the next one works."""
    import psycopg
    Store(postgres_url).init_schema()
    store = Store(postgres_url)
    store.insert_session(record(1, "a"), 10, 10)

    def drop_all_connections():
        plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE datname = current_database() AND pid <> pg_backend_pid()")
    try:
        drop_all_connections()
        assert store.get_session("s001").status == "starting"                  # prepared read
        drop_all_connections()
        assert [r.id for r in store.live_sessions()] == ["s001"]               # Core read
        drop_all_connections()
        with pytest.raises(StoreUnavailable):
            store.transition("s001", ["starting"], "active")
        assert store.transition("s001", ["starting"], "active")
    finally:
        store.close()


def test_between_requests_nothing_is_held_but_a_sqlite_connection(database_url, store):
    """What a worker thread's handle keeps after a request (Store.end_request):
    its SQLite connection (no pool round trip per request), never a lock; a
    server connection goes back to the pool."""
    sqlite = database_url.startswith("sqlite")
    store.insert_session(record(1, "a"), 10, 10)
    assert store.get_session("s001") is not None
    store.end_request()
    assert store.engine.pool.checkedout() == (1 if sqlite else 0)
    other = Store(database_url, busy_timeout=0.2)
    try:
        other.insert_session(record(2, "b"), 10, 10)        # a write is not blocked
        if sqlite:
            # A transaction left open (a bug) does not outlive its request.
            store._conn().exec_driver_sql("BEGIN IMMEDIATE")
            with pytest.raises(StoreUnavailable):
                other.insert_session(record(3, "c"), 10, 10)
            store.end_request()
            assert store.engine.pool.checkedout() == 0
            other.insert_session(record(3, "c"), 10, 10)
        assert store.get_session("s002").user == "b"
    finally:
        other.close()
