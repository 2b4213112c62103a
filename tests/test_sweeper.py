"""The sweeper against real ChimeraX processes: idle, too old, crashed, hung."""
import io
import os
import signal

import psutil
import pytest

from app.context import EXTENSION

from .conftest import token_header, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def env(app_factory):
    """An app, alice's client and a sweeper bound to the same store."""
    def build(**config):
        app = app_factory(**config)
        sweeper, close = app.extensions[EXTENSION].make_sweeper()
        built.append(close)
        return app, app.test_client(), token_header(app, "alice"), sweeper
    built = []
    yield build
    for close in built:
        close()


def create(client, headers, **body):
    response = client.post("/api/sessions", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def status_of(client, headers, session_id):
    body = client.get("/api/sessions/" + session_id, headers=headers).get_json()
    return body["status"], body["end_reason"]


def process_of(sweeper, session_id):
    return psutil.Process(sweeper.store.get_session(session_id).process.details["pid"])


def gone(proc):
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def test_idle_session_is_ended_and_cleaned(env):
    app, client, alice, sweeper = env(IDLE_ACTION="terminate")   # the other idle action; suspend: test_suspend.py
    idle = create(client, alice, idle_timeout=1)
    busy = create(client, alice, idle_timeout=600)
    proc = process_of(sweeper, idle["id"])
    assert sweeper.sweep() == {}                      # not idle yet
    record = sweeper.store.get_session(idle["id"])
    # An injected clock: the sweep runs as if the idle timeout had passed.
    assert sweeper.sweep(now=record.last_activity + record.idle_timeout + 0.5) == {"idle_timeout": 1}
    assert status_of(client, alice, idle["id"]) == ("terminated", "idle_timeout")
    assert gone(proc) and not os.path.exists(record.workspace)
    assert status_of(client, alice, busy["id"]) == ("active", None)
    # Deleting an ended session: no longer served, yet listed with why it ended.
    assert client.delete("/api/sessions/" + idle["id"], headers=alice).status_code == 204
    gone_reply = client.get("/api/sessions/" + idle["id"], headers=alice)
    assert (gone_reply.status_code, gone_reply.get_json()["error"]["code"]) == (404, "session_deleted")
    listed = {s["id"]: s["end_reason"] for s in client.get("/api/sessions", headers=alice).get_json()["sessions"]}
    assert listed[idle["id"]] == "idle_timeout"


def test_max_lifetime(env):
    app, client, alice, sweeper = env(SESSION_MAX_LIFETIME=1)
    session = create(client, alice)
    record = sweeper.store.get_session(session["id"])
    client.put("/api/sessions/%s/heartbeat" % session["id"], headers=alice)   # activity does not extend it
    assert sweeper.sweep(now=record.created_at + 1.5) == {"max_lifetime": 1}
    assert status_of(client, alice, session["id"]) == ("terminated", "max_lifetime")


def test_crashed_process_is_detected_and_its_files_kept_for_a_while(env):
    app, client, alice, sweeper = env(FAILED_RETENTION=1)
    session = create(client, alice)
    url = "/api/sessions/" + session["id"]
    assert client.post(url + "/files", headers=alice, content_type="multipart/form-data",
                       data={"file": (io.BytesIO(b"ATOM"), "before.cif")}).status_code == 201
    record = sweeper.store.get_session(session["id"])
    proc = process_of(sweeper, session["id"])
    proc.kill()
    wait_until(lambda: gone(proc), 5, message="process to die")
    assert sweeper.sweep() == {"crashed": 1}
    assert status_of(client, alice, session["id"]) == ("failed", "crashed")
    response = client.post(url + "/commands", json={"command": "pwd"}, headers=alice)
    assert response.status_code == 409
    # the workspace stays for FAILED_RETENTION seconds, for download
    assert client.get(url + "/files/before.cif", headers=alice).status_code == 200
    ended_at = sweeper.store.get_session(session["id"]).ended_at
    sweeper.sweep(now=ended_at + 1.5)         # retention has passed
    assert not os.path.exists(record.workspace)
    assert client.get(url + "/files/before.cif", headers=alice).status_code == 409


def test_memory_guard(env):
    app, client, alice, sweeper = env(MAX_RSS_MB=20, FAILED_RETENTION=0)
    session = create(client, alice)
    proc = process_of(sweeper, session["id"])
    assert sweeper.sweep() == {"memory_limit": 1}
    assert status_of(client, alice, session["id"]) == ("failed", "memory_limit")
    assert gone(proc)


def test_command_to_a_dead_process_is_502_then_409(env):
    app, client, alice, sweeper = env()
    session = create(client, alice)
    proc = process_of(sweeper, session["id"])
    proc.kill()
    wait_until(lambda: gone(proc), 5, message="process to die")
    url = "/api/sessions/%s/commands" % session["id"]
    first = client.post(url, json={"command": "pwd"}, headers=alice)
    assert first.status_code == 502 and first.get_json()["error"]["code"] == "chimerax_died"
    assert status_of(client, alice, session["id"]) == ("failed", "crashed")
    assert client.post(url, json={"command": "pwd"}, headers=alice).status_code == 409


def test_hung_process_times_out_then_is_killed_as_unhealthy(env):
    app, client, alice, sweeper = env(COMMAND_TIMEOUT=0.5, HEALTH_CHECK_TIMEOUT=0.3,
                                      HEALTH_CHECK_FAILURES=2, STOP_GRACE_PERIOD=0.5)
    hung = create(client, alice)
    fine = create(client, alice)
    proc = process_of(sweeper, hung["id"])
    proc.send_signal(signal.SIGSTOP)
    try:
        response = client.post("/api/sessions/%s/commands" % hung["id"], json={"command": "pwd"}, headers=alice)
        assert response.status_code == 504
        assert response.get_json()["error"]["code"] == "command_timeout"
        # the hung session does not block another one
        ok = client.post("/api/sessions/%s/commands" % fine["id"], json={"command": "pwd"}, headers=alice)
        assert ok.get_json()["ok"] is True
        assert sweeper.sweep() == {}                  # first failed check: warned, kept
        assert status_of(client, alice, hung["id"]) == ("active", None)
        assert sweeper.sweep() == {"unhealthy": 1}
        assert status_of(client, alice, hung["id"]) == ("failed", "unhealthy")
        assert gone(proc)                             # SIGKILL ends even a stopped process
    finally:
        if not gone(proc):
            proc.kill()
    assert status_of(client, alice, fine["id"]) == ("active", None)


def test_one_bad_session_does_not_stop_the_sweep(env, monkeypatch):
    app, client, alice, sweeper = env()
    first = create(client, alice, idle_timeout=1)
    second = create(client, alice, idle_timeout=1)
    idle_at = sweeper.store.get_session(second["id"]).last_activity + 1.5
    real_exit_reason = sweeper.launcher.exit_reason

    def exit_reason(handle):        # the sweeper's first look at each active session
        if handle.details["pid"] == sweeper.store.get_session(first["id"]).process.details["pid"]:
            raise RuntimeError("boom")
        return real_exit_reason(handle)
    monkeypatch.setattr(sweeper.launcher, "exit_reason", exit_reason)
    assert sweeper.sweep(now=idle_at) == {"suspended": 1}            # IDLE_ACTION=suspend, the default
    assert status_of(client, alice, second["id"])[0] == "suspended"
    assert status_of(client, alice, first["id"])[0] == "active"
