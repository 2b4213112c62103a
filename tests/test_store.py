"""Store invariants under concurrency: real SQLite, one connection per thread."""
import threading
import time

from app.store import LimitReached, SessionRecord, Store


def record(i, user):
    now = time.time()
    return SessionRecord(id="s%03d" % i, user=user, label=None, status="starting", created_at=now,
                         last_activity=now, idle_timeout=60, max_lifetime=600, workspace="/nowhere/%d" % i)


def test_concurrent_inserts_never_exceed_limits_or_share_ports(tmp_path):
    path = str(tmp_path / "store.sqlite3")
    Store(path).init_schema()
    results, barrier = [], threading.Barrier(30)

    def attempt(i):
        store = Store(path)
        barrier.wait()
        try:
            rec = record(i, "u%d" % (i % 6))
            store.insert_session(rec, max_total=10, max_per_user=3, ports=range(7000, 7100))
            results.append(rec.port)
        except LimitReached as err:
            results.append(err.scope)
        finally:
            store.close()
    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ports = [r for r in results if isinstance(r, int)]
    assert len(ports) == 10 and len(set(ports)) == 10
    assert len(results) == 30
    live = Store(path).live_sessions()
    assert len(live) == 10
    assert max(sum(1 for r in live if r.user == u) for u in {r.user for r in live}) <= 3


def test_transition_is_compare_and_set(tmp_path):
    store = Store(str(tmp_path / "s.sqlite3"))
    store.init_schema()
    store.insert_session(record(1, "a"), 10, 10)
    assert store.transition("s001", ["starting"], "active")
    assert not store.transition("s001", ["starting"], "failed")
    assert store.get_session("s001").status == "active"
