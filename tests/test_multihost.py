"""Several service instances on one store.

Two real gunicorn masters (HOST_ID a and b) on one real PostgreSQL, sharing
WORKSPACE_ROOT, as two hosts behind a load balancer would. They run on one
machine, so each reaches the other's processes (one launcher domain): any
of them serves any session, capacity is counted once, and one sweeper runs
across both. A session whose process runs on a machine this instance cannot
reach is shown but never commanded, ended or swept from here.
"""
import threading
import time

import psycopg
import pytest
import requests

from app.store import SessionRecord, Store

from .conftest import alive, token_header, wait_until


def _leaders(servers):
    store = servers[0].store()
    try:
        return store.sweep_counts()
    finally:
        store.close()


@pytest.mark.slow
def test_two_instances_share_sessions_capacity_and_one_sweeper(postgres_url, gunicorn_server):
    url, interval = postgres_url, 1.0
    # POOL_SIZE=0: pooled processes count against MAX_SESSIONS while the pool fills, so
    # "exactly MAX_SESSIONS creates succeed" would depend on how far it got (the pool's
    # own capacity sharing is test_pool.py's).
    # SESSION_VIEW_CACHE_SECONDS=30: a view seen ended on a before the bound can only be the notice's doing.
    common = dict(workers=2, database_url=url, SWEEP_INTERVAL=interval, MAX_SESSIONS=5,
                  MAX_SESSIONS_PER_USER=20, SESSION_IDLE_TIMEOUT_MIN=1, POOL_SIZE=0, SESSION_VIEW_CACHE_SECONDS=30)
    a = gunicorn_server(HOST_ID="a", **common)
    b = gunicorn_server(HOST_ID="b", **common)
    b.env["WORKSPACE_ROOT"] = a.env["WORKSPACE_ROOT"]
    b.stop()
    b.start()
    alice, admin = a.token("alice"), b.token("boss", "admin")      # tokens live in the shared store

    # Created through a, seen, commanded and deleted through b.
    created = requests.post(a.url + "/api/sessions", json={"label": "on a"}, headers=alice, timeout=60)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    assert [s["id"] for s in requests.get(b.url + "/api/sessions", headers=alice, timeout=10).json()["sessions"]] \
        == [sid]
    assert requests.get(b.url + "/api/sessions/" + sid, headers=admin, timeout=10).json()["host_id"] == "a"
    ran = requests.post(b.url + "/api/sessions/%s/commands" % sid, json={"command": "pwd"}, headers=alice,
                        timeout=30)
    assert ran.status_code == 200 and ran.json()["ok"], ran.text
    pid = requests.get(a.url + "/api/sessions/" + sid, headers=admin, timeout=10).json()["pid"]
    for _ in range(8):      # every worker of a keeps the row for its views
        assert requests.get(a.url + "/api/sessions/" + sid, headers=alice, timeout=10).json()["status"] == "active"
    assert requests.delete(b.url + "/api/sessions/" + sid, headers=alice, timeout=30).status_code == 204
    assert not alive(pid)
    # Ended through b, seen so through a's workers at once (their notices), not after the bound.
    wait_until(lambda: all(requests.get(a.url + "/api/sessions/" + sid, headers=alice, timeout=10).status_code
                           == 404 for _ in range(8)), 5, interval=0.01, message="the deletion seen through a")

    # 20 concurrent creates over both instances against MAX_SESSIONS=5: exactly 5.
    results, barrier = [], threading.Barrier(20)

    def create(server):
        barrier.wait()
        results.append(requests.post(server.url + "/api/sessions", json={"idle_timeout": 3}, headers=alice,
                                     timeout=120))
    threads = [threading.Thread(target=create, args=((a, b)[i % 2],)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results)
    assert codes == [201] * 5 + [503] * 15, codes
    assert {r.json()["error"]["code"] for r in results if r.status_code == 503} == {"capacity_exhausted"}
    sessions = [r.json()["id"] for r in results if r.status_code == 201]

    # A DELETE through one of a's workers is a 404 through all of them at once,
    # with the notices switched off (the host's shared mark; store/session_views.py).
    sid = sessions.pop()
    for _ in range(8):
        requests.get(a.url + "/api/sessions/" + sid, headers=alice, timeout=10).raise_for_status()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as db:
        db.execute("ALTER TABLE sessions DISABLE TRIGGER sessions_changed")
        try:
            assert requests.delete(a.url + "/api/sessions/" + sid, headers=alice, timeout=30).status_code == 204
            assert [requests.get(a.url + "/api/sessions/" + sid, headers=alice, timeout=10).status_code
                    for _ in range(8)] == [404] * 8
        finally:
            db.execute("ALTER TABLE sessions ENABLE TRIGGER sessions_changed")

    # One sweeper across both instances ...
    wait_until(lambda: sum(_leaders([a]).values()) >= 2, 10, message="sweeps")
    leaders = _leaders([a])
    assert len(leaders) == 1, leaders
    (leader_host, leader_pid), = leaders
    assert (a.log_text() + b.log_text()).count("runs the sweeps every") == 1
    holder, other = (a, b) if leader_host == "a" else (b, a)
    assert leader_pid in holder.worker_pids()

    # ... and when its whole instance is killed, the other takes over within two sweeps,
    # and the idle sessions (some started by the dead instance) are still suspended
    # (IDLE_ACTION=suspend, the default).
    killed_at = time.monotonic()
    holder.kill_hard()
    # Taken over when it announces the role (its first sweep's record comes after that
    # sweep's work: suspending the idle sessions takes seconds).
    wait_until(lambda: "sweeper: %s pid" % other.env["HOST_ID"] in other.log_text(),
               2 * interval + 3, interval=0.1, message="the other instance to take over the sweeps")
    took = time.monotonic() - killed_at
    assert took <= 2 * interval + 1.5, took
    for sid in sessions:
        wait_until(lambda: requests.get(other.url + "/api/sessions/" + sid, headers=alice, timeout=10)
                   .json()["status"] == "suspended", 3 + 2 * interval + 5, interval=0.2,
                   message="idle session %s to be suspended" % sid)


def test_a_session_on_a_machine_out_of_reach_is_never_guessed_about(app_factory):
    app = app_factory(HOST_ID="here")
    client, alice = app.test_client(), token_header(app, "alice")
    store = Store(app.config["DATABASE_PATH"])
    now = time.time() - 3600
    store.insert_session(SessionRecord(
        id="00000000-0000-4000-8000-0000000000aa", user="alice", label="far", status="starting",
        created_at=now, last_activity=now, idle_timeout=60, max_lifetime=600, workspace="/elsewhere/w",
        host_id="far", domain="local:another-machine"), 10, 10)
    store.transition("00000000-0000-4000-8000-0000000000aa", ["starting"], "active",
                     process={"pid": 1, "create_time": 0.0})
    url = "/api/sessions/00000000-0000-4000-8000-0000000000aa"
    assert client.get(url, headers=alice).json["status"] == "active"
    for reply in (client.post(url + "/commands", json={"command": "pwd"}, headers=alice),
                  client.delete(url, headers=alice)):
        assert reply.status_code == 503 and reply.json["error"]["code"] == "session_unreachable"
        assert "local:another-machine" in reply.json["error"]["message"] and reply.headers["Retry-After"]
    # Idle for an hour, yet neither the sweeper nor a restart of this instance touches it.
    rt = app.extensions["chimerax_sessions"]
    sweeper, close = rt.make_sweeper()
    try:
        assert sweeper.sweep() == {}
    finally:
        close()
    rt.recover()
    assert store.get_session("00000000-0000-4000-8000-0000000000aa").status == "active"
    store.transition("00000000-0000-4000-8000-0000000000aa", ["active"], "terminated")  # for the cleanup
    store.close()
