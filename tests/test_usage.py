"""Usage accounting and retention (issue 33): how sessions count per UTC day,
samples adding up across a session's processes, retention that deletes old
ended sessions in bounded batches with their accounting kept (on SQLite and
PostgreSQL, with an injected clock). Fast tier."""
from datetime import datetime, timezone
import threading
import uuid

import pytest
import sqlalchemy as sa

from app.store import SessionRecord, Store
from app.store.accounting import DAY, DayUsage, SessionUsage, add_sample, day_start, session_days, split_days
from app.store.tables import fetch_uses, history, usage_daily

MiB = 2**20
# The injected clock: noon UTC, 1 March 2026; retention's cutoff 90 days before.
NOW = day_start("2026-03-01") + 12 * 3600
CUTOFF = NOW - 90 * DAY


def insert(store, user, created, ended=None, status="terminated", cpu=None, peak=None, removed=1,
           domain="elsewhere"):
    """A session row as the service leaves it (no process: `domain` is no launcher's)."""
    sid = str(uuid.uuid4())
    store.insert_session(SessionRecord(id=sid, user=user, label=None, status="starting", created_at=created,
                                       last_activity=created, idle_timeout=60, max_lifetime=600,
                                       workspace="/nowhere", host_id="h", domain=domain),
                         max_total=10**6, max_per_user=10**6)
    if cpu is not None or peak is not None:
        store.record_usage(sid, "p", cpu, None, peak)
    if status in ("terminated", "failed"):
        store.transition(sid, ["starting"], status, ended_at=ended, end_reason="deleted", workspace_removed=removed)
    elif status != "starting":
        store.transition(sid, ["starting"], status)
    return sid


@pytest.fixture
def store(database_url):
    Store(database_url).init_schema()
    handle = Store(database_url)
    yield handle
    handle.close()


# The rules

def test_a_session_is_split_exactly_at_utc_midnight():
    start = day_start("2026-01-10") + 23 * 3600          # 23:00 to 01:30 the next day
    assert split_days(start, start + 2.5 * 3600) == [("2026-01-10", 3600.0), ("2026-01-11", 5400.0)]
    days = session_days(start, start + 2.5 * 3600, NOW, cpu_seconds=100.0, memory_peak_bytes=5 * MiB)
    assert days == {"2026-01-10": DayUsage(3600.0, 40.0, 5 * MiB), "2026-01-11": DayUsage(5400.0, 60.0, 5 * MiB)}
    # Three days; a session that has not ended counts until now; one of no time keeps its day.
    spans = session_days(start, None, start + 2 * DAY, 48.0, None)
    assert {d: u.session_seconds for d, u in spans.items()} == {
        "2026-01-10": 3600.0, "2026-01-11": DAY, "2026-01-12": DAY - 3600.0}
    assert sum(u.cpu_seconds for u in spans.values()) == 48.0
    assert session_days(start, start, NOW, 3.0, 7) == {"2026-01-10": DayUsage(0.0, 3.0, 7)}


def test_samples_keep_the_largest_peak_the_latest_cpu_and_add_a_new_process():
    kept = add_sample(SessionUsage(), "a", 10.0, 100, 300)
    kept = add_sample(kept, "a", 12.0, 200, 250)        # the same process: its latest CPU, the largest peak
    assert (kept.cpu_seconds, kept.memory_bytes, kept.memory_peak_bytes) == (12.0, 200, 300)
    assert add_sample(kept, "a", 11.0, 200, None).cpu_seconds == 12.0      # a late sample is no news
    resumed = add_sample(kept, "b", 2.0, 400, None)     # a new process counts from zero: added
    assert (resumed.cpu_seconds, resumed.memory_peak_bytes) == (14.0, 400)
    assert add_sample(resumed, "b", 5.0, None, None).cpu_seconds == 17.0


# The store, on both backends

def test_the_store_records_samples_and_counts_live_sessions_until_now(store):
    sid = insert(store, "alice", NOW - 3600, status="active")
    assert store.record_usage(sid, "p1", 4.0, 10 * MiB, 20 * MiB)
    assert store.record_usage(sid, "p1", 6.0, 15 * MiB, 18 * MiB)
    assert not store.record_usage("gone", "p1", 1.0, 1, 1)
    record = store.get_session(sid)
    assert (record.cpu_seconds, record.memory_bytes, record.memory_peak_bytes) == (6.0, 15 * MiB, 20 * MiB)
    assert store.usage_by_day("alice", "2026-03-01", "2026-03-01", NOW) == {
        "2026-03-01": DayUsage(3600.0, 6.0, 20 * MiB)}
    assert store.live_usage_totals() == {"memory_bytes": 15 * MiB, "cpu_seconds": 6.0}


def _everything(store, users):
    return {user: store.usage_by_day(user, "2025-01-01", "2026-03-01", NOW) for user in users}


def _same(before, after):
    assert before.keys() == after.keys()
    for user in before:
        assert before[user].keys() == after[user].keys(), user
        for day, used in before[user].items():
            again = after[user][day]
            assert again.session_seconds == pytest.approx(used.session_seconds), (user, day)
            assert again.cpu_seconds == pytest.approx(used.cpu_seconds), (user, day)
            assert again.memory_peak_bytes == used.memory_peak_bytes, (user, day)


def _count(store, table, ids):
    return store._execute(sa.select(sa.func.count()).select_from(table).where(table.c.session_id.in_(ids))).scalar()


def test_retention_deletes_old_ended_sessions_in_batches_and_keeps_their_accounting(store):
    # 7 old sessions (alternately alice's and bob's) from 23:00 to 01:30, each a day before the last.
    old = [insert(store, ("alice", "bob")[i % 2], CUTOFF - (i + 1) * DAY - 13 * 3600,
                  CUTOFF - (i + 1) * DAY - 10.5 * 3600, status=("terminated", "failed")[i % 2],
                  cpu=100.0 + i, peak=(i + 1) * MiB) for i in range(7)]
    kept = {
        "recent": insert(store, "alice", NOW - 10 * DAY, NOW - 10 * DAY + 3600, cpu=5.0, peak=MiB),
        "live": insert(store, "alice", CUTOFF - 5 * DAY, status="active", cpu=50.0, peak=9 * MiB),
        "suspended": insert(store, "bob", CUTOFF - 5 * DAY, status="suspended", cpu=1.0),
        "files_kept": insert(store, "bob", CUTOFF - 3 * DAY, CUTOFF - 3 * DAY + 60, status="failed", removed=0),
    }
    for sid in old + list(kept.values()):
        store.add_history(sid, NOW, "pwd", "allow", True, 1.0, keep=100)
        store.use_fetch_entry(sid, "https://files.rcsb.org/%s.cif" % sid)
    before = _everything(store, ("alice", "bob"))

    assert [store.retire_sessions(CUTOFF, 3) for _ in range(4)] == [3, 3, 1, 0]     # bounded batches

    assert [sid for sid in old if store.get_session(sid) is not None] == []
    assert _count(store, history, old) == 0 and _count(store, fetch_uses, old) == 0
    for name, sid in kept.items():
        assert store.get_session(sid) is not None, name
        assert store.history(sid)[1] == 1, name
    assert _count(store, fetch_uses, list(kept.values())) == len(kept)
    _same(before, _everything(store, ("alice", "bob")))
    # What was rolled up is exactly the old sessions, split at midnight.
    rolled = {(r.user, r.day): (r.session_seconds, r.cpu_seconds, r.memory_peak_bytes)
              for r in store._execute(usage_daily.select())}
    first = CUTOFF - DAY - 13 * 3600
    assert rolled[("alice", datetime.fromtimestamp(first, timezone.utc).strftime("%Y-%m-%d"))] == pytest.approx(
        (3600.0, 40.0, MiB))
    assert sum(seconds for seconds, _, _ in rolled.values()) == pytest.approx(7 * 2.5 * 3600)
    assert sum(cpu for _, cpu, _ in rolled.values()) == pytest.approx(sum(100.0 + i for i in range(7)))
    # Later sessions ending old add to the same days' rows.
    again = insert(store, "alice", first, first + 60, cpu=1.0, peak=64 * MiB)
    before = _everything(store, ("alice",))
    assert store.retire_sessions(CUTOFF, 3) == 1 and store.get_session(again) is None
    _same(before, _everything(store, ("alice",)))


def test_retention_by_several_sweepers_at_once_counts_each_session_once(database_url, store):
    for i in range(12):
        insert(store, "alice", CUTOFF - (i + 2) * DAY, CUTOFF - (i + 2) * DAY + 3600, cpu=10.0)
    before = _everything(store, ("alice",))
    barrier, done = threading.Barrier(3), []

    def retire():
        mine = Store(database_url)
        try:
            barrier.wait()
            while (n := mine.retire_sessions(CUTOFF, 2)):
                done.append(n)
        finally:
            mine.close()
    threads = [threading.Thread(target=retire) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(done) == 12
    _same(before, _everything(store, ("alice",)))
