"""The session API against the real ChimeraX runtime, in-process (Flask test client)."""
import io
import os

import psutil
import pytest

from app.store import Store

from .conftest import add_ended_sessions, alanin_pdb, runtime_children, token_header, wait_until, workspaces

pytestmark = pytest.mark.slow


def create(client, headers, **body):
    response = client.post("/api/sessions", json=body, headers=headers)
    assert response.status_code in (201, 202), response.get_json()
    return response.get_json()


def store_record(app, session_id):
    store = Store(app.config["DATABASE_PATH"])
    try:
        return store.get_session(session_id)
    finally:
        store.close()


def test_lifecycle_create_command_heartbeat_delete(app, client, alice):
    session = create(client, alice, label="my structure")
    assert session["status"] == "active" and session["user"] == "alice"
    assert session["label"] == "my structure"
    assert "pid" not in session and "port" not in session      # internals are admin-only
    record = store_record(app, session["id"])
    leader = psutil.Process(record.process.details["pid"])
    assert record.process.details["sandbox"] == "bwrap"                  # the default where bwrap works
    assert leader.uids().real != 0 and leader.uids().effective != 0
    assert leader.environ()["CXS_SESSION_ID"] == session["id"]   # marker for re-adoption

    result = client.post("/api/sessions/%s/commands" % session["id"], json={"command": "pwd"},
                         headers=alice).get_json()
    assert result["ok"] is True and result["error"] is None
    assert "/session" in "".join(result["log"]["note"])     # the workspace, as the sandbox names it
    assert result["duration_ms"] > 0

    failed = client.post("/api/sessions/%s/commands" % session["id"], json={"command": "open missing.pdb"},
                         headers=alice)
    assert failed.status_code == 200          # a ChimeraX error is a result, not an HTTP error
    assert failed.get_json()["ok"] is False
    assert failed.get_json()["error"]["type"] == "UserError"
    assert "missing.pdb" in failed.get_json()["error"]["message"]

    beat = client.put("/api/sessions/%s/heartbeat" % session["id"], headers=alice).get_json()
    assert beat["id"] == session["id"] and beat["expires_at"] > beat["last_activity"]

    assert client.delete("/api/sessions/" + session["id"], headers=alice).status_code == 204
    # gone and reaped: not even a zombie remains
    wait_until(lambda: not psutil.pid_exists(leader.pid), 5, message="process to be reaped")
    assert not os.path.exists(record.workspace)
    gone = client.get("/api/sessions/" + session["id"], headers=alice)
    assert gone.status_code == 404 and gone.get_json()["error"]["code"] == "session_deleted"
    assert client.get("/api/sessions/%s/history" % session["id"], headers=alice).status_code == 404
    # listings keep it, for accounting
    ended, = [s for s in client.get("/api/sessions", headers=alice).get_json()["sessions"] if s["id"] == session["id"]]
    assert ended["status"] == "terminated" and ended["end_reason"] == "deleted"
    assert ended["ended_at"] and ended["expires_at"] is None
    # A second delete is harmless; commands to an ended session are 409.
    assert client.delete("/api/sessions/" + session["id"], headers=alice).status_code == 204
    gone = client.post("/api/sessions/%s/commands" % session["id"], json={"command": "pwd"}, headers=alice)
    assert gone.status_code == 409 and gone.get_json()["error"]["code"] == "session_not_active"


def test_create_with_a_structure_opens_it_before_active(app, client, alice):
    with open(alanin_pdb(), "rb") as pdb:
        response = client.post("/api/sessions", headers=alice, content_type="multipart/form-data",
                               data={"label": "with file", "idle_timeout": "600",
                                     "file": (pdb, "alanin.pdb")})
    assert response.status_code == 201, response.get_json()
    session = response.get_json()
    assert session["status"] == "active" and session["idle_timeout"] == 600
    info = client.post("/api/sessions/%s/commands" % session["id"], json={"command": "info models"},
                       headers=alice).get_json()
    assert "alanin.pdb" in "".join(info["log"]["note"])


def test_create_with_an_unreadable_file_fails_cleanly(app, client, alice):
    response = client.post("/api/sessions", headers=alice, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(b"ATOM  garbage\x00\x01" * 10), "broken.cif")})
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"]["code"] == "unreadable_structure"
    sessions = client.get("/api/sessions", headers=alice).get_json()["sessions"]
    assert [(s["status"], s["end_reason"]) for s in sessions] == [("failed", "startup_failed")]
    assert workspaces(app) == []
    assert runtime_children() == []


def test_create_with_a_bad_file_name_reserves_nothing(app, client, alice):
    response = client.post("/api/sessions", headers=alice, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(b"x"), "evil.py")})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad_file"
    assert client.get("/api/sessions", headers=alice).get_json()["sessions"] == []


def all_pages(client, headers, query):
    seen, pages = [], 0
    while True:
        after = "&starting_after=" + seen[-1]["id"] if seen else ""
        page = client.get("/api/sessions?" + query + after, headers=headers)
        assert page.status_code == 200, page.get_json()
        body = page.get_json()
        seen, pages = seen + body["sessions"], pages + 1
        if not body["has_more"]:
            return [s["label"] for s in seen], pages


def test_lists_are_pages_newest_first(app, client, alice, admin):
    store = Store(app.config["DATABASE_PATH"])
    try:
        add_ended_sessions(store, ["alice", "bob"], 5)
    finally:
        store.close()
    assert all_pages(client, alice, "limit=2") == (["alice 4", "alice 3", "alice 2", "alice 1", "alice 0"], 3)
    assert all_pages(client, alice, "status=failed&status=starting") == (["alice 4", "alice 2", "alice 0"], 1)
    everyone, pages = all_pages(client, admin, "limit=3")
    assert pages == 4 and len(everyone) == 10 and set(everyone[:2]) == {"bob 4", "alice 4"}
    assert sorted(everyone) == sorted("%s %d" % (u, i) for u in ("alice", "bob") for i in range(5))
    first = client.get("/api/sessions", headers=alice).get_json()
    assert len(first["sessions"]) == 5 and first["has_more"] is False      # default: 50 a page
    bobs = client.get("/api/sessions?user=bob", headers=admin).get_json()["sessions"]
    response = client.get("/api/sessions?starting_after=" + bobs[0]["id"], headers=alice)
    assert response.status_code == 404      # another user's session is no place to start, nor known


def test_ownership_and_admin_view(app, client, alice, bob, admin):
    mine = create(client, alice)
    url = "/api/sessions/" + mine["id"]
    for method, path in (("get", url), ("delete", url), ("put", url + "/heartbeat")):
        response = getattr(client, method)(path, headers=bob)
        assert response.status_code == 403 and response.get_json()["error"]["code"] == "forbidden"
    response = client.post(url + "/commands", json={"command": "pwd"}, headers=bob)
    assert response.status_code == 403
    assert client.get("/api/sessions", headers=bob).get_json()["sessions"] == []
    assert [s["id"] for s in client.get("/api/sessions", headers=alice).get_json()["sessions"]] == [mine["id"]]

    seen = client.get(url, headers=admin).get_json()
    assert seen["pid"] > 0 and seen["memory_mb"] > 10
    assert seen["port"] is None         # sandboxed: a Unix socket, no TCP port
    everyone = client.get("/api/sessions?user=alice&status=active", headers=admin).get_json()["sessions"]
    assert [s["id"] for s in everyone] == [mine["id"]]
    assert client.get("/api/sessions?user=bob", headers=admin).get_json()["sessions"] == []


def test_per_user_and_global_limits_spawn_nothing(app_factory):
    app = app_factory(MAX_SESSIONS=3, MAX_SESSIONS_PER_USER=2)
    client = app.test_client()
    alice, bob = token_header(app, "alice"), token_header(app, "bob")
    create(client, alice)
    create(client, alice)
    create(client, bob)
    spawned = {p.pid for p in psutil.Process().children(recursive=True)}

    over_user = client.post("/api/sessions", json={}, headers=alice)
    assert over_user.status_code == 429
    assert over_user.get_json()["error"]["code"] == "user_session_limit"
    assert int(over_user.headers["Retry-After"]) > 0
    over_all = client.post("/api/sessions", json={}, headers=bob)
    assert over_all.status_code == 503
    assert over_all.get_json()["error"]["code"] == "capacity_exhausted"
    assert "Retry-After" in over_all.headers
    assert {p.pid for p in psutil.Process().children(recursive=True)} == spawned
    assert len(workspaces(app)) == 3


def test_create_without_waiting_then_becomes_active(app, client, alice):
    response = client.post("/api/sessions", json={"wait": False, "idle_timeout": 600}, headers=alice)
    assert response.status_code == 202
    session = response.get_json()
    assert session["status"] == "starting" and session["idle_timeout"] == 600
    wait_until(lambda: client.get("/api/sessions/" + session["id"], headers=alice).get_json()["status"]
               == "active", 30, message="session to become active")
    busy = client.post("/api/sessions/%s/commands" % session["id"], json={"command": "pwd"}, headers=alice)
    assert busy.get_json()["ok"] is True


def test_delete_while_starting_leaves_nothing(app, client, alice):
    session = client.post("/api/sessions", json={"wait": False}, headers=alice).get_json()
    assert client.delete("/api/sessions/" + session["id"], headers=alice).status_code == 204
    record = store_record(app, session["id"])

    def settled():
        # the background starter notices it was cancelled and removes what it made
        control = os.path.join(app.config["WORKSPACE_ROOT"], ".control")
        return (not os.path.exists(record.workspace) and not runtime_children()
                and not (os.path.isdir(control) and os.listdir(control)))
    wait_until(settled, 30, message="cancelled start-up to clean up")
    assert store_record(app, session["id"]).status == "terminated"


def test_fixed_port_range_reserves_distinct_ports(app_factory, tmp_path):
    from .conftest import free_port
    base = free_port()
    # Ports are for TCP channels: the unsandboxed ones.
    app = app_factory(CHIMERAX_PORT_RANGE="%d-%d" % (base, base + 20), SANDBOX="none")
    client = app.test_client()
    alice = token_header(app, "alice")
    ports = set()
    for _ in range(2):
        session = create(client, alice)
        ports.add(store_record(app, session["id"]).port)
    assert len(ports) == 2 and all(base <= p <= base + 20 for p in ports)


def test_activity_writes_are_coalesced(app_factory):
    app = app_factory(ACTIVITY_WRITE_INTERVAL=3600.0)
    client = app.test_client()
    alice = token_header(app, "alice")
    session = create(client, alice)
    before = store_record(app, session["id"]).last_activity
    for _ in range(5):
        client.post("/api/sessions/%s/commands" % session["id"], json={"command": "pwd"}, headers=alice)
    assert store_record(app, session["id"]).last_activity == before
    # an explicit heartbeat always records
    client.put("/api/sessions/%s/heartbeat" % session["id"], headers=alice)
    assert store_record(app, session["id"]).last_activity > before


def test_reading_a_session_is_not_activity(app, client, alice):
    session = create(client, alice)
    before = store_record(app, session["id"]).last_activity
    client.get("/api/sessions/" + session["id"], headers=alice)
    client.get("/api/sessions", headers=alice)
    assert store_record(app, session["id"]).last_activity == before


def test_health_reports_store_and_chimerax(client):
    body = client.get("/api/health").get_json()
    assert body["status"] == "ok"
    assert body["checks"] == {"store": "ok", "chimerax": {"found": True, "kind": "configured"}}


def test_health_without_chimerax_is_503_and_create_refuses(app_factory, tmp_path):
    app = app_factory(CHIMERAX_PATH=str(tmp_path / "missing"))
    client = app.test_client()
    assert client.get("/api/health").status_code == 503
    response = client.post("/api/sessions", json={}, headers=token_header(app, "alice"))
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "chimerax_unavailable"
    assert "Retry-After" in response.headers

