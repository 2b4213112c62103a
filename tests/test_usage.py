"""Usage accounting and retention (issue 33): how sessions count per UTC day,
samples adding up across a session's processes, retention that deletes old
ended sessions in bounded batches with their accounting kept (on SQLite and
PostgreSQL, with an injected clock), the session view's usage and limits,
GET /api/usage, the Prometheus totals and the admin overview's top sessions,
the client and `cxs usage`. Fast tier: the launcher is tests/fake_launcher.py,
whose figures stand for what a cgroup would say (the launcher's own tests
prove those)."""
from datetime import datetime, timedelta, timezone
import re
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from app.context import EXTENSION
from app.services.usage import retention
from app.store import SessionRecord, Store
from app.store.accounting import DAY, DayUsage, SessionUsage, add_sample, day_start, session_days, split_days
from app.store.tables import fetch_uses, history, usage_daily
from cxs_client import Client, cli

from .conftest import token_header, wait_until
from .helpers import row, sweep

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


# The sweeper and the session view, with the fake launcher

def _store(app):
    return app.extensions[EXTENSION].new_store()


def _create(client, headers):
    reply = client.post("/api/sessions", headers=headers, json={})
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()["id"]


LIMITS = {"memory_mb": 4096, "address_space_mb": 8192, "cpus": 1.0, "processes": 256, "enforced_by": "cgroup v1"}


def test_the_view_shows_live_usage_and_limits_and_the_last_figures_once_the_process_is_gone(fake):
    app, launcher = fake
    app.config["USAGE_VIEW_SECONDS"] = 0        # every GET reads the launcher: the figures set are seen at once
    launcher.limits = dict(LIMITS)
    client = app.test_client()
    alice, bob, root = (token_header(app, "alice"), token_header(app, "bob"),
                        token_header(app, "root", "admin"))
    sid = _create(client, alice)
    url = "/api/sessions/" + sid
    view = client.get(url, headers=alice).get_json()
    assert view["usage"] == dict.fromkeys(("cpu_seconds", "memory_bytes", "memory_peak_bytes", "processes"))
    launcher.set_usage(row(app, sid).process, cpu_seconds=2.5, memory_bytes=100 * MiB, memory_peak_bytes=150 * MiB,
                       processes=9)
    view = client.get(url, headers=alice).get_json()
    assert view["usage"] == {"cpu_seconds": 2.5, "memory_bytes": 100 * MiB, "memory_peak_bytes": 150 * MiB,
                             "processes": 9}
    assert view["limits"] == LIMITS
    assert client.get(url, headers=bob).status_code == 403
    assert client.get(url, headers=root).get_json()["usage"]["processes"] == 9
    assert "usage" not in client.get("/api/sessions", headers=alice).get_json()["sessions"][0]

    sweep(app, time.time())
    assert (row(app, sid).cpu_seconds, row(app, sid).memory_peak_bytes) == (2.5, 150 * MiB)
    # Suspending stops the process: its last figures are taken first.
    launcher.set_usage(row(app, sid).process, cpu_seconds=4.0, memory_bytes=90 * MiB, memory_peak_bytes=150 * MiB)
    assert client.post(url + "/suspend", headers=alice).get_json()["status"] == "suspended"
    view = client.get(url, headers=alice).get_json()
    assert view["usage"] == {"cpu_seconds": 4.0, "memory_bytes": None, "memory_peak_bytes": 150 * MiB,
                             "processes": None}
    assert view["limits"] is None
    # A resumed session's new process counts from zero: the view and the samples add it.
    assert client.post(url + "/resume", headers=alice).status_code in (200, 202)
    wait_until(lambda: row(app, sid).status == "active", 10, message="the resume")
    launcher.set_usage(row(app, sid).process, cpu_seconds=1.0, memory_bytes=50 * MiB, memory_peak_bytes=60 * MiB,
                       processes=3)
    assert client.get(url, headers=alice).get_json()["usage"] == {
        "cpu_seconds": 5.0, "memory_bytes": 50 * MiB, "memory_peak_bytes": 150 * MiB, "processes": 3}
    sweep(app, time.time())
    launcher.set_usage(row(app, sid).process, cpu_seconds=1.5, memory_bytes=50 * MiB)
    assert client.delete(url, headers=alice).status_code == 204
    assert (row(app, sid).cpu_seconds, row(app, sid).memory_peak_bytes) == (5.5, 150 * MiB)


def test_a_reading_of_usage_is_shown_again_within_usage_view_seconds(fake):
    app, launcher = fake
    client, alice = app.test_client(), token_header(app, "alice")
    url = "/api/sessions/" + _create(client, alice)
    process = row(app, url.rsplit("/", 1)[1]).process
    app.config["USAGE_VIEW_SECONDS"] = 3600
    launcher.set_usage(process, cpu_seconds=1.0, memory_bytes=10 * MiB, memory_peak_bytes=10 * MiB, processes=2)
    first = client.get(url, headers=alice).get_json()["usage"]
    launcher.set_usage(process, cpu_seconds=2.0, memory_bytes=20 * MiB, memory_peak_bytes=20 * MiB, processes=3)
    assert client.get(url, headers=alice).get_json()["usage"] == first       # the same reading, not read again
    app.config["USAGE_VIEW_SECONDS"] = 0
    assert client.get(url, headers=alice).get_json()["usage"]["memory_bytes"] == 20 * MiB


def test_a_process_out_of_reach_is_not_read_here(fake, monkeypatch):
    app, launcher = fake
    launcher.limits = dict(LIMITS)
    client, alice = app.test_client(), token_header(app, "alice")
    sid = _create(client, alice)
    launcher.set_usage(row(app, sid).process, cpu_seconds=2.0, memory_bytes=MiB)
    sweep(app, time.time())
    launcher.set_usage(row(app, sid).process, cpu_seconds=9.0, memory_bytes=MiB)
    # Another instance's view of it: this launcher's pid would name another process.
    monkeypatch.setattr(launcher, "reaches", lambda domain: False)
    view = client.get("/api/sessions/" + sid, headers=alice).get_json()
    assert view["usage"] == {"cpu_seconds": 2.0, "memory_bytes": None, "memory_peak_bytes": MiB, "processes": None}
    assert view["limits"] is None


def test_an_end_never_fails_for_its_usage_sample(fake):
    app, launcher = fake
    client, alice = app.test_client(), token_header(app, "alice")
    sid = _create(client, alice)

    def broken(state):
        raise RuntimeError("the cgroup vanished")
    launcher._usage = broken
    assert client.get("/api/sessions/" + sid, headers=alice).get_json()["usage"]["cpu_seconds"] is None
    assert client.delete("/api/sessions/" + sid, headers=alice).status_code == 204
    assert row(app, sid).status == "terminated" and launcher.running() == 0


def test_sweeps_retire_old_sessions_in_bounded_batches(fake, monkeypatch):
    app, _ = fake
    monkeypatch.setattr(retention, "BATCH", 3)
    monkeypatch.setattr(retention, "BATCHES_PER_SWEEP", 2)
    store = _store(app)
    try:
        old = [insert(store, "alice", CUTOFF - 2 * DAY, CUTOFF - DAY, cpu=1.0) for _ in range(10)]
        recent = insert(store, "alice", CUTOFF, CUTOFF + 60)
        live = insert(store, "alice", CUTOFF - 9 * DAY, status="active")
        before = _everything(store, ("alice",))
        app.config["SESSION_RETENTION_DAYS"] = 0            # kept for ever
        sweep(app, NOW)
        assert all(store.get_session(sid) for sid in old)
        app.config["SESSION_RETENTION_DAYS"] = 90
        sweep(app, NOW)
        assert sum(store.get_session(sid) is None for sid in old) == 6      # 2 batches of 3
        sweep(app, NOW)
        assert [sid for sid in old if store.get_session(sid)] == []
        assert store.get_session(recent) and store.get_session(live)
        _same(before, _everything(store, ("alice",)))
    finally:
        store.close()


# GET /api/usage

def test_usage_per_day_is_split_at_midnight_and_sums_to_the_totals(fake):
    app, _ = fake
    client, alice = app.test_client(), token_header(app, "alice")
    store = _store(app)
    try:
        start = day_start("2025-06-01") + 23 * 3600
        insert(store, "alice", start, start + 2.5 * 3600, cpu=100.0, peak=512 * MiB)
        insert(store, "alice", start + 2 * 3600, start + 3 * 3600, cpu=10.0, peak=256 * MiB)
        insert(store, "bob", start, start + 3600, cpu=7.0)
    finally:
        store.close()
    reply = client.get("/api/usage?since=2025-06-01&until=2025-06-03", headers=alice)
    assert reply.status_code == 200
    assert reply.get_json() == {
        "user": "alice", "since": "2025-06-01", "until": "2025-06-03",
        "days": [{"day": "2025-06-01", "session_hours": 1.0, "cpu_seconds": 40.0, "memory_peak_bytes": 512 * MiB},
                 {"day": "2025-06-02", "session_hours": 2.5, "cpu_seconds": 70.0, "memory_peak_bytes": 512 * MiB}],
        "totals": {"session_hours": 3.5, "cpu_seconds": 110.0, "memory_peak_bytes": 512 * MiB}}
    only = client.get("/api/usage?since=2025-06-02&until=2025-06-02", headers=alice).get_json()
    assert [d["day"] for d in only["days"]] == ["2025-06-02"] and only["totals"]["session_hours"] == 2.5


def test_usage_is_your_own_unless_you_are_an_admin(fake):
    app, _ = fake
    client = app.test_client()
    alice, root = token_header(app, "alice"), token_header(app, "root", "admin")
    mine = client.get("/api/usage", headers=alice)
    assert mine.status_code == 200 and mine.get_json()["user"] == "alice"
    assert client.get("/api/usage?user=alice", headers=alice).status_code == 200
    refused = client.get("/api/usage?user=bob", headers=alice)
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "forbidden" and refused.get_json()["error"]["request_id"]
    assert client.get("/api/usage?user=bob", headers=root).get_json()["user"] == "bob"
    assert client.get("/api/usage", headers=root).get_json()["user"] == "root"
    assert client.get("/api/usage").status_code == 401


def test_usage_defaults_to_the_last_30_days(fake):
    app, _ = fake
    client, alice = app.test_client(), token_header(app, "alice")
    before = datetime.now(timezone.utc).date()
    reply = client.get("/api/usage", headers=alice).get_json()
    after = datetime.now(timezone.utc).date()
    assert reply["until"] in (before.isoformat(), after.isoformat())
    assert reply["since"] == (datetime.fromisoformat(reply["until"]) - timedelta(days=30)).date().isoformat()
    assert client.get("/api/usage?until=2025-03-31", headers=alice).get_json()["since"] == "2025-03-01"


@pytest.mark.parametrize("query, field", [
    ("since=2025-02-30", "since"), ("since=yesterday", "since"), ("until=2025-1-5", "until"),
    ("since=2025-06-03&until=2025-06-01", "since"), ("since=2023-01-01&until=2025-01-01", "since"),
    ("since=1969-12-31&until=1970-01-02", "since"), ("until=0001-01-01", "until"), ("user=", "user"),
    ("days=3", "days"),
])
def test_bad_usage_queries_are_validation_errors(fake, query, field):
    app, _ = fake
    reply = app.test_client().get("/api/usage?" + query, headers=token_header(app, "alice"))
    assert reply.status_code == 400, reply.get_json()
    error = reply.get_json()["error"]
    assert error["code"] == "validation_error" and field in error["fields"], error


def test_the_document_describes_get_usage(fake):
    app, _ = fake
    operation = app.test_client().get("/api/openapi.json").get_json()["paths"]["/api/usage"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"user", "since", "until"}
    assert {"200", "400", "401", "403"} <= set(operation["responses"])


# Monitoring

def test_metrics_and_the_overview_total_and_rank_live_sessions(fake):
    app, _ = fake
    client, root = app.test_client(), token_header(app, "root", "admin")
    store = _store(app)
    try:
        live = [insert(store, "u%d" % i, NOW, status="active") for i in range(7)]
        for i, sid in enumerate(live):
            store.record_usage(sid, "p", float(10 * ((i * 3) % 7)), (i + 1) * MiB, (i + 1) * MiB)
        insert(store, "gone", NOW - 60, NOW, cpu=1000.0, peak=1000 * MiB)       # ended: not live
    finally:
        store.close()
    text = client.get("/metrics", headers=root).get_data(as_text=True)
    gauges = dict(re.findall(r"^(cxs_session_\w+) (\S+)$", text, re.M))
    assert {name: float(value) for name, value in gauges.items()} == {
        "cxs_session_memory_bytes": 28 * MiB, "cxs_session_cpu_seconds": 10 * sum(range(7))}
    overview = client.get("/api/admin/overview", headers=root).get_json()
    assert [s["id"] for s in overview["top_memory"]] == live[::-1][:5]
    assert [s["cpu_seconds"] for s in overview["top_cpu"]] == [60.0, 50.0, 40.0, 30.0, 20.0]
    assert overview["top_cpu"][0]["user"] == "u2"


# The client and the CLI

def test_the_client_and_cxs_usage(fake, monkeypatch, capsys):
    from werkzeug.serving import make_server
    app, _ = fake
    store = _store(app)
    try:
        start = day_start("2025-06-01") + 23 * 3600
        insert(store, "alice", start, start + 2.5 * 3600, cpu=100.0, peak=512 * MiB)
    finally:
        store.close()
    token = token_header(app, "alice")["Authorization"].split(" ", 1)[1]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        url = "http://127.0.0.1:%d" % server.server_port
        report = Client(url, token).usage(since="2025-06-01", until=datetime(2025, 6, 3).date())
        assert report["totals"]["session_hours"] == 2.5 and len(report["days"]) == 2
        monkeypatch.setenv("CXS_URL", url)
        monkeypatch.setenv("CXS_TOKEN", token)
        assert cli.main(["usage", "--since", "2025-06-01", "--until", "2025-06-03"]) == 0
        assert capsys.readouterr().out.splitlines() == [
            "usage of alice, 2025-06-01 to 2025-06-03 (UTC)",
            "day            hours       cpu s  peak MiB",
            "2025-06-01      1.00        40.0       512",
            "2025-06-02      1.50        60.0       512",
            "total           2.50       100.0       512"]
        assert cli.main(["usage", "--user", "bob"]) == 2
        assert "403 (forbidden)" in capsys.readouterr().err
    finally:
        server.shutdown()
        serving.join()
