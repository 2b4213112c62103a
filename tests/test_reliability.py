"""Fault injection against real gunicorn and the real ChimeraX runtime.

Each test prints the detection time it measured ("measured: ...") — the
figures in RELIABILITY.md come from `pytest tests/test_reliability.py -s`.
"""
import os
import signal
import socket
import sqlite3
import threading
import time

import psutil
import pytest
import requests

from app import create_app

from .conftest import alive, wait_until

pytestmark = pytest.mark.slow


def get(server, headers, session_id):
    return requests.get(server.url + "/api/sessions/" + session_id, headers=headers, timeout=10).json()


def create(server, headers, **body):
    response = requests.post(server.url + "/api/sessions", json=body, headers=headers, timeout=60)
    assert response.status_code == 201, response.text
    return response.json()


def one_session(server):
    """alice's and an admin's headers, a new session of alice's and its ChimeraX pid."""
    alice, admin = server.token("alice"), server.token("boss", "admin")
    session = create(server, alice)
    return alice, admin, session, get(server, admin, session["id"])["pid"]


def command(server, headers, session_id, text="pwd", timeout=30):
    return requests.post(server.url + "/api/sessions/%s/commands" % session_id, json={"command": text},
                         headers=headers, timeout=timeout)


def test_command_during_a_crash_is_502_then_409(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60)       # no sweep gets there first
    alice, admin, session, pid = one_session(server)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), 5, message="process to die")
    first = command(server, alice, session["id"])
    assert first.status_code == 502 and first.json()["error"]["code"] == "chimerax_died"
    assert (get(server, alice, session["id"])["status"], get(server, alice, session["id"])["end_reason"]) == (
        "failed", "crashed")
    assert command(server, alice, session["id"]).status_code == 409


def test_crash_is_detected_within_one_sweep(gunicorn_server):
    interval = 1.0
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=interval, FAILED_RETENTION=2)
    alice, admin, session, pid = one_session(server)
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: get(server, alice, session["id"])["status"] == "failed", interval + 5, interval=0.05,
               message="crash detection")
    detected = time.monotonic() - killed
    print("measured: crash detected in %.2fs (sweep interval %gs)" % (detected, interval))
    assert get(server, alice, session["id"])["end_reason"] == "crashed"
    assert detected <= interval + 2
    assert command(server, alice, session["id"]).status_code == 409
    # files stay downloadable for FAILED_RETENTION, then go with the workspace
    files_url = server.url + "/api/sessions/%s/files" % session["id"]
    files = requests.get(files_url, headers=alice, timeout=10)
    assert files.status_code == 200 and files.json() == {"files": []}
    wait_until(lambda: requests.get(files_url, headers=alice, timeout=10).status_code == 409, 2 + interval + 3,
               interval=0.2, message="retained workspace to be removed")
    assert not os.path.exists(os.path.join(server.env["WORKSPACE_ROOT"], session["id"]))


def test_memory_guard_ends_a_process_over_the_limit(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=1, MAX_RSS_MB=20)
    alice, admin, session, pid = one_session(server)
    began = time.monotonic()
    wait_until(lambda: get(server, alice, session["id"])["status"] == "failed", 10, interval=0.1,
               message="memory guard")
    print("measured: memory limit enforced %.2fs after ready" % (time.monotonic() - began))
    assert get(server, alice, session["id"])["end_reason"] == "memory_limit"
    wait_until(lambda: not alive(pid), 5, message="process to end")


def test_hang_gives_504_then_unhealthy_and_never_blocks_others(gunicorn_server):
    server = gunicorn_server(workers=3, SWEEP_INTERVAL=1, COMMAND_TIMEOUT=1, HEALTH_CHECK_TIMEOUT=0.5,
                             HEALTH_CHECK_FAILURES=2, STOP_GRACE_PERIOD=0.5)
    alice, admin = server.token("alice"), server.token("boss", "admin")
    hung, fine = create(server, alice), create(server, alice)
    pid = get(server, admin, hung["id"])["pid"]
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        slow = {}
        thread = threading.Thread(target=lambda: slow.update(r=command(server, alice, hung["id"])))
        thread.start()
        started = time.monotonic()
        assert command(server, alice, fine["id"]).json()["ok"] is True    # not blocked meanwhile
        assert time.monotonic() - started < 1.0
        thread.join()
        assert slow["r"].status_code == 504 and slow["r"].json()["error"]["code"] == "command_timeout"
        wait_until(lambda: get(server, alice, hung["id"])["status"] == "failed", 15, interval=0.1,
                   message="hung session to be failed")
        print("measured: hang ended as unhealthy %.2fs after SIGSTOP" % (time.monotonic() - stopped))
        assert get(server, alice, hung["id"])["end_reason"] == "unhealthy"
        wait_until(lambda: not alive(pid), 5, message="SIGKILL of the stopped process")
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert get(server, alice, fine["id"])["status"] == "active"


def start_orphan(server, tmp_path):
    """A ChimeraX carrying this service's marker that the store knows nothing of."""
    app = create_app({"DATABASE_PATH": server.env["DATABASE_PATH"], "WORKSPACE_ROOT": server.env["WORKSPACE_ROOT"],
                      "CHIMERAX_PATH": server.env["CHIMERAX_PATH"]}, config_name="testing")
    launcher = app.extensions["chimerax_sessions"].launcher
    workspace = str(tmp_path / "orphan")
    launcher.make_workspace(workspace)
    return launcher.wait_ready(launcher.start("not-in-the-store", workspace, None), 30).details["pid"]


def test_restart_adopts_live_sessions_and_reaps_the_rest(gunicorn_server, tmp_path):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60)
    alice, admin = server.token("alice"), server.token("boss", "admin")
    survivor, victim = create(server, alice), create(server, alice)
    before = get(server, admin, survivor["id"])
    victim_pid = get(server, admin, victim["id"])["pid"]
    orphan = start_orphan(server, tmp_path)

    server.kill_hard()
    os.kill(victim_pid, signal.SIGKILL)          # died while the service was down
    assert alive(before["pid"])
    restarted = time.monotonic()
    server.start()
    print("measured: restart with recovery answered after %.2fs" % (time.monotonic() - restarted))

    after = get(server, admin, survivor["id"])
    assert after["status"] == "active" and (after["pid"], after["port"]) == (before["pid"], before["port"])
    reply = command(server, alice, survivor["id"]).json()
    assert reply["ok"] and "/session" in "".join(reply["log"]["note"])
    ended = get(server, alice, victim["id"])
    assert (ended["status"], ended["end_reason"]) == ("terminated", "server_restart")
    wait_until(lambda: not alive(orphan), 10, message="orphan to be killed")
    assert "adopted 1 session(s), ended 1, killed 1 orphan(s)" in server.log_text()


def test_restart_without_adoption_reaps_everything(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, ADOPT_ON_START="false")
    alice, admin, session, pid = one_session(server)
    server.kill_hard()
    server.start()
    ended = get(server, alice, session["id"])
    assert (ended["status"], ended["end_reason"]) == ("terminated", "server_restart")
    assert not alive(pid)


def test_graceful_stop_leaves_sessions_for_adoption(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60)
    alice, admin, session, pid = one_session(server)
    server.stop()
    assert alive(pid)
    server.start()
    assert get(server, alice, session["id"])["status"] == "active"
    assert command(server, alice, session["id"]).json()["ok"]


def test_graceful_stop_can_end_every_session(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, SHUTDOWN_TERMINATES_SESSIONS="true")
    alice, admin, session, pid = one_session(server)
    server.stop()
    assert not alive(pid)
    db = sqlite3.connect(server.env["DATABASE_PATH"])
    row = db.execute("SELECT status, end_reason FROM sessions WHERE id = ?", (session["id"],)).fetchone()
    db.close()
    assert row == ("terminated", "server_shutdown")
    server.start()


def runtime_count():
    return sum(1 for p in psutil.process_iter(["cmdline", "status"])
               if "cxs_runtime" in " ".join(p.info["cmdline"] or []) and p.info["status"] != psutil.STATUS_ZOMBIE)


def test_fifty_concurrent_creates_respect_capacity(gunicorn_server):
    # POOL_SIZE=0: pooled processes count against MAX_SESSIONS while the pool fills, so
    # the exact count of successful creates would depend on how far it got.
    server = gunicorn_server(workers=4, SWEEP_INTERVAL=60, MAX_SESSIONS=10, MAX_SESSIONS_PER_USER=4,
                             GUNICORN_TIMEOUT=180, POOL_SIZE=0)
    headers = [server.token("user%d" % i) for i in range(10)]
    baseline = runtime_count()
    peak, sampling = [0], [True]

    def sample():
        while sampling[0]:
            peak[0] = max(peak[0], runtime_count() - baseline)
            time.sleep(0.02)
    sampler = threading.Thread(target=sample)
    sampler.start()
    results = []

    def attempt(i):
        r = requests.post(server.url + "/api/sessions", json={}, headers=headers[i % 10], timeout=170)
        results.append(r.status_code)
    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(50)]
    began = time.monotonic()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sampling[0] = False
        sampler.join()
    print("measured: 50 concurrent creates settled in %.2fs, peak %d new ChimeraX" % (
        time.monotonic() - began, peak[0]))
    assert results.count(201) == 10, sorted(results)
    assert set(results) <= {201, 503, 429}
    assert 500 not in results
    assert peak[0] <= 10, "spawned %d ChimeraX processes for 10 sessions" % peak[0]


def test_concurrent_deletes_commands_and_heartbeats_on_one_session(gunicorn_server):
    server = gunicorn_server(workers=4, SWEEP_INTERVAL=60)
    alice, admin, session, pid = one_session(server)
    url = server.url + "/api/sessions/" + session["id"]
    statuses = []

    def hit(kind):
        if kind == "delete":
            r = requests.delete(url, headers=alice, timeout=60)
        elif kind == "beat":
            r = requests.put(url + "/heartbeat", headers=alice, timeout=60)
        else:
            r = requests.post(url + "/commands", json={"command": "pwd"}, headers=alice, timeout=60)
        statuses.append(r.status_code)
    threads = [threading.Thread(target=hit, args=(kind,)) for kind in ["delete", "beat", "cmd"] * 8]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(code < 500 or code == 502 for code in statuses), statuses
    assert 500 not in statuses
    assert get(server, alice, session["id"])["error"]["code"] == "session_deleted"
    wait_until(lambda: not alive(pid), 10, message="process to end")


def test_port_taken_by_another_program_is_skipped(gunicorn_server):
    from .conftest import free_port
    base = free_port()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", base))
    blocker.listen(1)
    try:
        server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, CHIMERAX_PORT_RANGE="%d-%d" % (base, base + 5),
                                 SANDBOX="none")       # ports are for TCP channels: the unsandboxed ones
        alice, admin = server.token("alice"), server.token("boss", "admin")
        first, second = create(server, alice), create(server, alice)
        ports = {get(server, admin, s["id"])["port"] for s in (first, second)}
        assert base not in ports and len(ports) == 2
        assert command(server, alice, first["id"]).json()["ok"]
    finally:
        blocker.close()


def test_locked_store_gives_503_and_recovers(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, STORE_BUSY_TIMEOUT=0.3)
    alice = server.token("alice")
    session = create(server, alice)
    beat = server.url + "/api/sessions/%s/heartbeat" % session["id"]
    db = sqlite3.connect(server.env["DATABASE_PATH"], isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")           # another program holds the write lock
    try:
        # WAL: reads go on; every write gets a clear 503, not a 500
        assert requests.get(server.url + "/api/sessions", headers=alice, timeout=10).status_code == 200
        locked = [requests.put(beat, headers=alice, timeout=10) for _ in range(3)]
        assert [r.status_code for r in locked] == [503] * 3
        assert locked[0].json()["error"]["code"] == "store_unavailable"
        assert locked[0].headers["Retry-After"]
        create_locked = requests.post(server.url + "/api/sessions", json={}, headers=alice, timeout=10)
        assert create_locked.status_code == 503
        assert create_locked.json()["error"]["code"] == "store_unavailable"
    finally:
        db.execute("ROLLBACK")
        db.close()
    released = time.monotonic()
    wait_until(lambda: requests.put(beat, headers=alice, timeout=10).status_code == 200, 5, message="recovery")
    print("measured: store recovered %.2fs after the lock was released" % (time.monotonic() - released))
    assert [requests.put(beat, headers=alice, timeout=10).status_code for _ in range(20)] == [200] * 20
    assert requests.get(server.url + "/api/health", timeout=10).status_code == 200
    assert "Traceback" not in server.log_text()


def _immutable(paths, on):
    import subprocess
    for path in paths:
        if os.path.exists(path):
            subprocess.run(["chattr", "+i" if on else "-i", path], check=True, capture_output=True)


def test_read_only_store_gives_503_and_recovers(gunicorn_server):
    # As root, file modes do not stop writes; the immutable attribute does.
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, STORE_BUSY_TIMEOUT=0.3)
    alice = server.token("alice")
    session = create(server, alice)
    beat = server.url + "/api/sessions/%s/heartbeat" % session["id"]
    # The write-ahead log is where every write lands (WAL mode). Leaving the
    # -shm index writable matters: it is memory-mapped, and a mapped file that
    # turns immutable gets processes killed with SIGBUS, a fault unlike any a
    # read-only database or disk produces.
    db = server.env["DATABASE_PATH"]
    files = [db + "-wal"]
    try:
        _immutable(files, True)
    except Exception as err:         # a filesystem without chattr support
        pytest.skip("cannot make the store read-only here: %s" % err)
    try:
        responses = [requests.put(beat, headers=alice, timeout=10) for _ in range(3)]
        assert [r.status_code for r in responses] == [503] * 3
        assert responses[0].json()["error"]["code"] == "store_unavailable"
    finally:
        _immutable(files, False)
    wait_until(lambda: requests.put(beat, headers=alice, timeout=10).status_code == 200, 5, message="recovery")
    # every worker recovers, not just the one that answered first
    assert [requests.put(beat, headers=alice, timeout=10).status_code for _ in range(20)] == [200] * 20
    assert "Traceback" not in server.log_text()
