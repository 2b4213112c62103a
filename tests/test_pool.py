"""The warm pool with real ChimeraX processes: claim, replenish, recycle, drain."""
import os
import threading
import time

import psutil
import pytest
import requests

from app.context import EXTENSION

from .conftest import alanin_pdb, alive, token_header, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def pooled(app_factory):
    app = app_factory(POOL_SIZE=2, MAX_SESSIONS=6)
    pool, close = app.extensions[EXTENSION].make_pool()
    yield app, pool
    close()


def ready_pids(pool):
    return {e.process.details["pid"] for e in pool.store.pool_entries() if e.status == "ready"}


def test_claim_moves_a_ready_process_into_a_fresh_workspace(pooled):
    app, pool = pooled
    assert pool.fill() == 2 and pool.fill() == 0          # full: nothing more
    waiting = ready_pids(pool)
    assert len(waiting) == 2 and all(alive(p) for p in waiting)
    client, alice = app.test_client(), token_header(app, "alice")
    started = time.perf_counter()
    session = client.post("/api/sessions", json={}, headers=alice).get_json()
    print("measured: warm create %.1f ms in-process" % ((time.perf_counter() - started) * 1000))
    record = pool.store.get_session(session["id"])
    assert session["status"] == "active" and record.process.details["pid"] in waiting
    proc = psutil.Process(record.process.details["pid"])
    assert client.get("/api/sessions/%s/files" % session["id"], headers=alice).get_json() == {"files": []}
    # The process sees the session's workspace: a file uploaded to it opens.
    with open(alanin_pdb(), "rb") as pdb:
        assert client.post("/api/sessions/%s/files" % session["id"], headers=alice,
                           content_type="multipart/form-data", data={"file": (pdb, "a.pdb")}).status_code == 201
    opened = client.post("/api/sessions/%s/commands" % session["id"], json={"command": "open a.pdb"},
                         headers=alice).get_json()
    assert opened["ok"], opened
    assert len(pool.store.pool_entries()) == 1                      # claimed, not shared
    assert pool.fill() == 1 and len(ready_pids(pool)) == 2          # replenished
    assert record.process.details["pid"] not in ready_pids(pool)
    assert client.delete("/api/sessions/" + session["id"], headers=alice).status_code == 204
    wait_until(lambda: not alive(proc.pid), 5, message="claimed process to end")


def test_recycle_dead_and_old_entries(pooled):
    app, pool = pooled
    pool.fill()
    first, second = sorted(ready_pids(pool))
    psutil.Process(first).kill()
    wait_until(lambda: not alive(first), 5, message="kill")
    assert pool.maintain() == 1                          # the dead one is dropped
    app.config["POOL_MAX_AGE"] = 0
    assert pool.maintain() == 1                          # the old one is recycled
    wait_until(lambda: not alive(second), 5, message="recycled process to end")
    app.config["POOL_MAX_AGE"] = 3600
    assert pool.fill() == 2 and not ready_pids(pool) & {first, second}


def test_drain_leaves_nothing(pooled):
    app, pool = pooled
    pool.fill()
    pids = ready_pids(pool)
    directories = [e.directory for e in pool.store.pool_entries()]
    assert pool.drain() == 2
    wait_until(lambda: not any(alive(p) for p in pids), 5, message="pool to drain")
    assert not any(os.path.exists(d) for d in directories)
    assert pool.store.pool_entries() == []


def test_pool_respects_capacity(app_factory):
    app = app_factory(POOL_SIZE=3, MAX_SESSIONS=2)
    pool, close = app.extensions[EXTENSION].make_pool()
    try:
        assert pool.fill() == 2                          # the pool never exceeds host capacity
    finally:
        pool.drain()
        close()


def test_pool_disabled_with_zero(app_factory):
    app = app_factory(POOL_SIZE=0)
    pool, close = app.extensions[EXTENSION].make_pool()
    try:
        assert pool.fill() == 0 and pool.store.pool_entries() == []
        session = app.test_client().post("/api/sessions", json={}, headers=token_header(app, "alice"))
        assert session.status_code == 201                # cold start still works
    finally:
        close()


def test_claims_are_atomic_under_twenty_concurrent_creates(gunicorn_server):
    server = gunicorn_server(workers=4, POOL_SIZE=5, MAX_SESSIONS=30, MAX_SESSIONS_PER_USER=30,
                             SWEEP_INTERVAL=60, GUNICORN_TIMEOUT=180)
    alice, admin = server.token("alice"), server.token("boss", "admin")
    store_path = server.env["DATABASE_PATH"]
    import sqlite3

    def pool_ready():
        db = sqlite3.connect(store_path)
        try:
            return [r[0] for r in db.execute("SELECT process FROM pool WHERE status = 'ready'")]
        finally:
            db.close()
    wait_until(lambda: len(pool_ready()) == 5, 60, interval=0.2, message="pool to fill")
    results = []

    def create():
        results.append(requests.post(server.url + "/api/sessions", json={}, headers=alice, timeout=170))
    threads = [threading.Thread(target=create) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [201] * 20
    pids = [requests.get(server.url + "/api/sessions/" + r.json()["id"], headers=admin, timeout=10).json()["pid"]
            for r in results]
    assert len(set(pids)) == 20                           # no process serves two sessions
    # and the pool is refilled in the background
    wait_until(lambda: len(pool_ready()) == 5, 60, interval=0.2, message="pool to refill")


def test_warm_create_through_gunicorn_and_replenish(gunicorn_server):
    server = gunicorn_server(workers=2, POOL_SIZE=2, SWEEP_INTERVAL=60)
    alice = server.token("alice")
    import sqlite3

    def ready():
        db = sqlite3.connect(server.env["DATABASE_PATH"])
        try:
            return db.execute("SELECT COUNT(*) FROM pool WHERE status = 'ready'").fetchone()[0]
        finally:
            db.close()
    wait_until(lambda: ready() == 2, 30, interval=0.1, message="pool to fill")
    times = []
    for _ in range(2):
        started = time.perf_counter()
        response = requests.post(server.url + "/api/sessions", json={}, headers=alice, timeout=60)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 201
    print("measured: warm creates through gunicorn: %s ms" % ", ".join("%.1f" % t for t in times))
    wait_until(lambda: ready() == 2, 30, interval=0.1, message="pool to refill")
