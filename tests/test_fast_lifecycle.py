"""The service's own logic at the launcher boundary (tests/fake_launcher.py says
why a fake is faithful there): sessions' lifecycle over HTTP, limits, the
sweeper's decisions with an injected clock, the warm pool, suspend and
resume, and transitions whose owner is gone. Fast tier: no ChimeraX, no
gunicorn; the same behaviours are proven on the real runtime in the slow tier."""
import os
import time
import uuid

from app.context import EXTENSION
from app.services.upkeep import owners
from app.services.upkeep.owners import Owner
from app.store import SessionRecord

from .conftest import token_header, wait_until
from .helpers import gone_owner, row, sweep


def users(app, *names):
    return [token_header(app, name) for name in names]


def create(client, headers, expect=201, **body):
    reply = client.post("/api/sessions", headers=headers, json=body)
    assert reply.status_code == expect, reply.get_json()
    return reply.get_json()


def pool(app, action, *args):
    warm, close = app.extensions[EXTENSION].make_pool()
    try:
        return getattr(warm, action)(*args)
    finally:
        close()


# Lifecycle over HTTP

def test_create_get_list_delete(fake):
    app, launcher = fake
    client, (alice,) = app.test_client(), users(app, "alice")
    made = create(client, alice, label="first")
    assert made["status"] == "active" and made["label"] == "first"
    assert client.get("/api/sessions/" + made["id"], headers=alice).get_json()["id"] == made["id"]
    listed = client.get("/api/sessions", headers=alice).get_json()
    assert [s["id"] for s in listed["sessions"]] == [made["id"]] and listed["has_more"] is False
    assert client.delete("/api/sessions/" + made["id"], headers=alice).status_code == 204
    assert launcher.running() == 0
    assert client.get("/api/sessions/" + made["id"], headers=alice).status_code == 404
    assert not os.path.exists(row(app, made["id"]).workspace)


def test_a_command_reaches_the_agent_and_is_in_the_history(fake):
    app, _ = fake
    client, (alice,) = app.test_client(), users(app, "alice")
    sid = create(client, alice)["id"]
    reply = client.post("/api/sessions/%s/commands" % sid, headers=alice, json={"command": "pwd"})
    assert reply.status_code == 200 and reply.get_json()["ok"]
    failed = client.post("/api/sessions/%s/commands" % sid, headers=alice, json={"command": "fail now"})
    assert failed.status_code == 200 and failed.get_json()["ok"] is False
    history = client.get("/api/sessions/%s/history" % sid, headers=alice).get_json()
    assert [(e["command"], e["ok"]) for e in history["history"]] == [("pwd", True), ("fail now", False)]


def test_another_users_session_is_forbidden_and_an_unknown_one_not_found(fake):
    app, _ = fake
    client, (alice, bob) = app.test_client(), users(app, "alice", "bob")
    sid = create(client, alice)["id"]
    assert client.get("/api/sessions/" + sid, headers=bob).status_code == 403
    assert client.delete("/api/sessions/" + sid, headers=bob).status_code == 403
    assert client.get("/api/sessions/%s" % uuid.uuid4(), headers=alice).status_code == 404
    assert client.get("/api/sessions", headers=bob).get_json()["sessions"] == []


def test_the_per_user_limit_is_429_and_the_host_limit_503(fake):
    app, _ = fake
    app.config.update(MAX_SESSIONS_PER_USER=2, MAX_SESSIONS=3, POOL_SIZE=0)
    client, (alice, bob) = app.test_client(), users(app, "alice", "bob")
    create(client, alice), create(client, alice)
    limited = client.post("/api/sessions", headers=alice, json={})
    assert limited.status_code == 429 and limited.get_json()["error"]["code"] == "user_session_limit"
    assert "Retry-After" in limited.headers
    create(client, bob)
    full = client.post("/api/sessions", headers=bob, json={})
    assert full.status_code == 503 and "Retry-After" in full.headers


def test_heartbeat_moves_last_activity(fake):
    app, _ = fake
    client, (alice,) = app.test_client(), users(app, "alice")
    sid = create(client, alice)["id"]
    before = row(app, sid).last_activity
    time.sleep(0.01)        # timestamps must differ; nothing is awaited
    assert client.put("/api/sessions/%s/heartbeat" % sid, headers=alice).status_code == 200
    assert row(app, sid).last_activity > before


# The sweeper, with an injected clock

def test_idle_sessions_suspend_by_default_and_resume_on_use(fake):
    app, launcher = fake
    client, (alice,) = app.test_client(), users(app, "alice")
    sid = create(client, alice)["id"]
    assert sweep(app, now=time.time() + 3600) == {"suspended": 1}
    suspended = row(app, sid)
    assert suspended.status == "suspended" and suspended.suspend_digest and not suspended.process
    reply = client.post("/api/sessions/%s/commands" % sid, headers=alice, json={"command": "pwd"})
    assert reply.status_code == 409 and reply.get_json()["error"]["code"] == "session_resuming"
    wait_until(lambda: row(app, sid).status == "active", 10, message="the resume")
    assert any(path.endswith(".cxs") for agent in launcher.agents.values() for path in agent.opened)


def test_idle_action_terminate_ends_idle_sessions(fake):
    app, _ = fake
    app.config["IDLE_ACTION"] = "terminate"
    client, (alice,) = app.test_client(), users(app, "alice")
    sid = create(client, alice)["id"]
    assert sweep(app, now=time.time() + 3600) == {"idle_timeout": 1}
    assert row(app, sid).status == "terminated" and row(app, sid).end_reason == "idle_timeout"


def test_max_lifetime_and_crash(fake):
    app, launcher = fake
    app.config["SESSION_MAX_LIFETIME"] = 1000
    client, (alice,) = app.test_client(), users(app, "alice")
    old = create(client, alice, idle_timeout=86400)["id"]
    crashed = create(client, alice)["id"]
    launcher.kill(row(app, crashed).process)
    assert sweep(app) == {"crashed": 1}
    assert row(app, crashed).status == "failed" and row(app, crashed).end_reason == "crashed"
    assert sweep(app, now=time.time() + app.config["SESSION_MAX_LIFETIME"] + 1) == {"max_lifetime": 1}
    assert row(app, old).end_reason == "max_lifetime"


def test_a_session_that_is_active_and_young_is_left_alone(fake):
    app, launcher = fake
    client, (alice,) = app.test_client(), users(app, "alice")
    sid = create(client, alice)["id"]
    assert sweep(app) == {}
    assert row(app, sid).status == "active" and launcher.running() == 1


# Transitions and their owners

def _insert(app, launcher, status, owner, operation, ready=True, **fields):
    runtime = app.extensions[EXTENSION]
    sid = str(uuid.uuid4())
    workspace = os.path.join(app.config["WORKSPACE_ROOT"], sid)
    os.makedirs(workspace)
    state = launcher.start(sid, workspace, None)
    now = time.time()
    store = runtime.new_store()
    try:
        store.insert_session(SessionRecord(
            id=sid, user="alice", label=None, status="starting", created_at=now, last_activity=now,
            idle_timeout=600, max_lifetime=3600, workspace=workspace, process=state,
            host_id=app.config["HOST_ID"], domain=launcher.domain, owner=owner, operation=operation), 99, 99)
        if status != "starting":
            store.transition(sid, ["starting"], status, **fields)
    finally:
        store.close()
    return sid, state


def test_a_ready_start_whose_owner_is_gone_is_adopted_at_once(fake):
    app, launcher = fake
    sid, _ = _insert(app, launcher, "starting", gone_owner(), "create")
    sweep(app)
    assert row(app, sid).status == "active" and row(app, sid).owner is None


def test_a_start_with_more_to_do_whose_owner_is_gone_fails(fake):
    app, launcher = fake
    sid, state = _insert(app, launcher, "starting", gone_owner(), "create_more")
    assert sweep(app) == {"startup_failed": 1}
    assert row(app, sid).status == "failed" and launcher.poll(state)


def test_a_start_whose_owner_lives_is_left_until_it_is_stuck(fake):
    app, launcher = fake
    sid, _ = _insert(app, launcher, "starting", owners.current(), "create")
    assert sweep(app, now=time.time() + 20) == {} and row(app, sid).status == "starting"
    assert sweep(app, now=time.time() + 3600) == {} and row(app, sid).status == "active"   # stuck: adopted


def test_a_start_whose_owner_is_unknown_waits_for_the_time_limit(fake):
    app, launcher = fake
    elsewhere = str(Owner("another-machine", 1, 1.0))
    sid, _ = _insert(app, launcher, "starting", elsewhere, "create_more")
    assert sweep(app) == {} and row(app, sid).status == "starting"
    assert sweep(app, now=time.time() + 3600) == {"startup_failed": 1}


def test_an_end_whose_owner_is_gone_is_finished_with_its_reason(fake):
    app, launcher = fake
    sid, state = _insert(app, launcher, "terminating", gone_owner(), "end", ended_at=time.time(),
                         end_reason="max_lifetime")
    sweep(app)
    ended = row(app, sid)
    assert ended.status == "terminated" and ended.end_reason == "max_lifetime" and launcher.poll(state)


def test_a_suspend_whose_owner_is_gone_goes_back_to_active_while_its_process_runs(fake):
    app, launcher = fake
    sid, state = _insert(app, launcher, "active", None, None)
    store = app.extensions[EXTENSION].new_store()
    try:
        store.transition(sid, ["active"], "terminating", ended_at=time.time(), owner=gone_owner(),
                         operation="suspend")
    finally:
        store.close()
    sweep(app)
    assert row(app, sid).status == "active" and not launcher.poll(state)


def _kept_file(app, sid, data, mtime=None):
    directory = os.path.join(app.config["WORKSPACE_ROOT"], ".suspended")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, sid + ".cxs")
    with open(path, "wb") as out:
        out.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_a_suspend_whose_owner_died_in_the_stop_is_suspended_with_its_kept_file(fake):
    """The file is kept before the process is stopped: a worker that dies while
    stopping it (SIGTERM sent, or not yet) loses nothing."""
    app, launcher = fake
    began = time.time()
    sid, state = _insert(app, launcher, "terminating", gone_owner(), "suspend", ended_at=began)
    _kept_file(app, sid, b"this suspend's scene")
    assert sweep(app) == {}
    assert row(app, sid).status == "suspended" and launcher.poll(state)      # stopped by the take-over


def test_an_earlier_file_is_not_taken_for_a_suspend_that_had_not_kept_one(fake):
    app, launcher = fake
    began = time.time()
    sid, state = _insert(app, launcher, "terminating", gone_owner(), "suspend", ended_at=began)
    _kept_file(app, sid, b"an older scene (a resume's leftover)", mtime=began - 60)
    sweep(app)
    assert row(app, sid).status == "active" and not launcher.poll(state)     # the running process is the scene


def test_a_suspend_whose_owner_is_gone_and_whose_process_is_gone_fails_keeping_the_workspace(fake):
    app, launcher = fake
    sid, state = _insert(app, launcher, "terminating", gone_owner(), "suspend", ended_at=time.time())
    launcher.kill(state)
    assert sweep(app) == {"suspend_failed": 1}
    failed = row(app, sid)
    assert failed.status == "failed" and os.path.isdir(failed.workspace) and not failed.workspace_removed


def test_a_resume_whose_owner_is_gone_is_suspended_again(fake):
    app, launcher = fake
    client, (alice,) = app.test_client(), users(app, "alice")
    sid = create(client, alice)["id"]
    assert client.post("/api/sessions/%s/suspend" % sid, headers=alice).status_code == 200
    store = app.extensions[EXTENSION].new_store()
    try:
        store.transition(sid, ["suspended"], "starting", owner=gone_owner(), operation="resume")
    finally:
        store.close()
    sweep(app)
    assert row(app, sid).status == "suspended"
    assert client.post("/api/sessions/%s/resume" % sid, headers=alice).status_code in (200, 202)
    wait_until(lambda: row(app, sid).status == "active", 10, message="the resume")


def test_an_unrecorded_process_is_reaped_only_when_old(fake):
    app, launcher = fake
    stray = launcher.start("stray", "/nowhere", None)
    sweeper, close = app.extensions[EXTENSION].make_sweeper()
    try:
        assert sweeper.reap_orphans(time.time()) == []
        assert sweeper.reap_orphans(time.time() + 3600) == [stray.details["pid"]]
    finally:
        close()
    assert launcher.poll(stray)


def test_a_process_claimed_from_the_pool_while_the_sweep_looks_is_not_taken_for_an_orphan(fake):
    """A create claims a pool process (its row moves from the pool to the
    session, in one transaction) between the sweep's two reads of what is known."""
    app, launcher = fake
    assert pool(app, "fill") == 2
    client, (alice,) = app.test_client(), users(app, "alice")
    sweeper, close = app.extensions[EXTENSION].make_sweeper()
    claimed = []

    def claiming_after(read):
        def wrapped():
            rows = read()
            if not claimed:
                claimed.append(create(client, alice))
            return rows
        return wrapped
    sweeper.store.live_sessions = claiming_after(sweeper.store.live_sessions)
    sweeper.store.pool_entries = claiming_after(sweeper.store.pool_entries)
    try:
        assert sweeper.reap_orphans(time.time() + 3600) == []     # old enough to be stopped if unknown
    finally:
        close()
    assert claimed and client.get("/api/sessions/" + claimed[0]["id"], headers=alice).get_json()["status"] == "active"
    assert launcher.running() == 2         # the claimed one and the one left in the pool


# The warm pool

def test_the_pool_fills_to_its_size_and_a_create_claims_from_it(fake):
    app, launcher = fake
    assert pool(app, "fill") == 2
    store = app.extensions[EXTENSION].new_store()
    try:
        assert store.count_pool_by_status() == {"ready": 2}
    finally:
        store.close()
    client, (alice, root) = app.test_client(), users(app, "alice") + [token_header(app, "root", "admin")]
    overview = client.get("/api/admin/overview", headers=root)
    assert overview.status_code == 200 and overview.get_json()["pool"] == {"ready": 2}
    started = launcher.started
    sid = create(client, alice)["id"]
    assert launcher.started == started          # claimed, not started
    assert row(app, sid).status == "active" and os.path.isdir(row(app, sid).workspace)
    assert pool(app, "fill") == 1


def test_the_pool_never_exceeds_capacity(fake):
    app, _ = fake
    app.config.update(MAX_SESSIONS=3)
    client, (alice,) = app.test_client(), users(app, "alice")
    create(client, alice), create(client, alice)
    assert pool(app, "fill") == 1


def test_a_dead_pool_process_is_dropped_and_replaced(fake):
    app, launcher = fake
    pool(app, "fill")
    store = app.extensions[EXTENSION].new_store()
    try:
        entry = store.pool_entries()[0]
    finally:
        store.close()
    launcher.kill(entry.process)
    assert pool(app, "maintain") == 1
    assert pool(app, "fill") == 1


def test_a_pool_start_whose_owner_is_gone_is_dropped_at_once(fake):
    app, launcher = fake
    store = app.extensions[EXTENSION].new_store()
    try:
        directory = os.path.join(app.config["WORKSPACE_ROOT"], ".pool-x")
        assert store.add_pool_entry("x", directory, 10, 2, app.config["HOST_ID"], launcher.domain,
                                    owner=gone_owner()).port is None
    finally:
        store.close()
    assert pool(app, "maintain") == 1


def test_the_admin_overview_counts_pool_entries_while_they_start(fake):
    app, launcher = fake
    import threading
    launcher.ready_gate = threading.Event()
    filler = threading.Thread(target=pool, args=(app, "fill"))
    filler.start()
    root = token_header(app, "root", "admin")
    client = app.test_client()
    try:
        wait_until(lambda: client.get("/api/admin/overview", headers=root).get_json()["pool"] == {"starting": 1},
                   10, message="a starting pool entry")
    finally:
        launcher.ready_gate.set()
        filler.join(10)
    assert client.get("/api/admin/overview", headers=root).get_json()["pool"] == {"ready": 2}


def test_the_admin_overview_lists_refused_commands(fake):
    app, _ = fake
    client, (alice,) = app.test_client(), users(app, "alice")
    root = token_header(app, "root", "admin")
    sid = create(client, alice)["id"]
    refused = client.post("/api/sessions/%s/commands" % sid, headers=alice, json={"command": "pwd\u200b"})
    assert refused.status_code == 403
    overview = client.get("/api/admin/overview", headers=root)
    assert overview.status_code == 200
    assert [(d["user"], d["session_id"]) for d in overview.get_json()["denied"]] == [("alice", sid)]
