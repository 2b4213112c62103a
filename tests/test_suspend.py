"""Suspend and resume on the real runtime: the scene survives without a process,
the session file is the service's alone, and idle sessions suspend by default."""
import logging
import os
import re
import subprocess
import time

import pytest

from app.context import EXTENSION
import config

from .conftest import alanin_pdb, alive, token_header, wait_until
from .helpers import RUNTIME_PYTHON, png_files

pytestmark = pytest.mark.slow


def create(client, headers):
    with open(alanin_pdb(), "rb") as pdb:
        created = client.post("/api/sessions", headers=headers, content_type="multipart/form-data",
                              data={"file": (pdb, "alanin.pdb")})
    assert created.status_code == 201, created.get_json()
    return created.get_json()["id"]


def run(client, headers, sid, command):
    reply = client.post("/api/sessions/%s/commands" % sid, json={"command": command}, headers=headers)
    assert reply.status_code == 200 and reply.get_json()["ok"], (command, reply.get_json())
    return reply.get_json()


def scene_facts(client, headers, sid):
    """Atoms per model, the models, the camera, an image."""
    atoms = {spec: re.search(r"(\d+) atoms", " ".join(run(client, headers, sid, "measure center " + spec)
                                                      ["log"]["note"])).group(1) for spec in ("#1", "#2")}
    models = run(client, headers, sid, "info models")["json_values"]
    camera = re.search(r"position: ([^\n]+)", " ".join(run(client, headers, sid, "camera")["log"]["note"])).group(1)
    image = client.get("/api/sessions/%s/snapshot?width=160&height=120&supersample=1" % sid, headers=headers)
    assert image.status_code == 200
    return atoms, models, camera, image.data


def pixels_differing(png_a, png_b):
    """Fraction of pixels whose colour differs by more than 8/255 in any channel (PIL in the runtime's env)."""
    with png_files(png_a, png_b) as paths:
        out = subprocess.run([RUNTIME_PYTHON, "-c", (
            "import sys; from PIL import Image, ImageChops; a, b = (Image.open(p).convert('RGB') for p in sys.argv[1:]);"
            "assert a.size == b.size; d = ImageChops.difference(a, b).getdata();"
            "print(sum(1 for px in d if max(px) > 8) / len(d))"), *paths],
            capture_output=True, text=True, check=True)
    return float(out.stdout)


def session_row(app, sid):
    return app.extensions[EXTENSION].new_store().get_session(sid)


def suspended_file(app, sid):
    return os.path.join(app.config["WORKSPACE_ROOT"], ".suspended", sid + ".cxs")


def wait_active(client, headers, sid):
    return wait_until(lambda: client.get("/api/sessions/" + sid, headers=headers).get_json()["status"] == "active"
                      and True, 60, message="the session to be active again")


def test_suspend_then_resume_restores_the_scene(app_factory):
    app = app_factory()
    client, alice = app.test_client(), token_header(app, "alice")
    sid = create(client, alice)
    for command in ("open alanin.pdb", "cartoon; color red; style #2 stick", "turn y 40", "move x 3"):
        run(client, alice, sid, command)
    before = scene_facts(client, alice, sid)
    process = session_row(app, sid).process

    suspended = client.post("/api/sessions/%s/suspend" % sid, headers=alice)
    assert suspended.status_code == 200 and suspended.get_json()["status"] == "suspended"
    assert not alive(process.details["pid"])                                    # no process while suspended
    assert os.stat(suspended_file(app, sid)).st_mode & 0o777 == 0o600   # outside the workspace, private
    names = {f["name"] for f in client.get("/api/sessions/%s/files" % sid, headers=alice).get_json()["files"]}
    assert names == {"alanin.pdb"}                                      # files kept; no scratch left
    refused = client.post("/api/sessions/%s/commands" % sid, json={"command": "version"},
                          headers=token_header(app, "bob"))
    assert refused.status_code == 403                                   # still alice's

    resumed = client.post("/api/sessions/%s/resume" % sid, headers=alice)
    assert resumed.status_code == 202 and resumed.get_json()["status"] == "starting"
    wait_active(client, alice, sid)
    after = scene_facts(client, alice, sid)
    assert after[:3] == before[:3]                      # atoms per model, the models, the camera
    # The image: at most 1 % of pixels differ by more than 8/255 in a channel.
    assert pixels_differing(before[3], after[3]) <= 0.01
    assert not os.path.exists(suspended_file(app, sid))


def test_idle_sessions_suspend_by_default(app_factory):
    assert config.Config.IDLE_ACTION == "suspend"           # the production default ...
    app = app_factory()
    assert app.config["IDLE_ACTION"] == "suspend"           # ... and the tests'
    client, alice = app.test_client(), token_header(app, "alice")
    sid = create(client, alice)
    sweeper, close = app.extensions[EXTENSION].make_sweeper()
    try:
        assert sweeper.sweep(now=time.time() + 3600) == {"suspended": 1}      # an injected clock, no sleep
    finally:
        close()
    assert client.get("/api/sessions/" + sid, headers=alice).get_json()["status"] == "suspended"


def test_a_changed_session_file_is_refused_never_opened_and_logged(app_factory, caplog):
    app = app_factory()
    client, alice = app.test_client(), token_header(app, "alice")
    sid = create(client, alice)
    assert client.post("/api/sessions/%s/suspend" % sid, headers=alice).status_code == 200
    with open(suspended_file(app, sid), "ab") as forged:
        forged.write(b"\nimport os; os.system('touch /tmp/pwned')\n")
    logger = logging.getLogger("cxs")          # the app's loggers do not propagate to the root
    logger.addHandler(caplog.handler)
    try:
        reply = client.post("/api/sessions/%s/resume" % sid, headers=alice)
    finally:
        logger.removeHandler(caplog.handler)
    assert reply.status_code == 409 and reply.get_json()["error"]["code"] == "session_file_rejected"
    assert any("does not match the HMAC" in r.getMessage() for r in caplog.records)
    row = session_row(app, sid)
    assert row.status == "suspended" and not row.process           # nothing was started to open it


def test_limits_delete_and_auto_resume(app_factory):
    app = app_factory(MAX_SESSIONS=1, MAX_SUSPENDED_PER_USER=1)
    client, alice = app.test_client(), token_header(app, "alice")
    first = create(client, alice)
    assert client.post("/api/sessions/%s/suspend" % first, headers=alice).status_code == 200
    second = create(client, alice)              # the suspended one does not count against MAX_SESSIONS
    limited = client.post("/api/sessions/%s/suspend" % second, headers=alice)
    assert limited.status_code == 429           # MAX_SUSPENDED_PER_USER
    assert client.delete("/api/sessions/" + second, headers=alice).status_code == 204

    # A command to a suspended session resumes it (AUTO_RESUME) and asks to retry.
    busy = client.post("/api/sessions/%s/commands" % first, json={"command": "version"}, headers=alice)
    assert busy.status_code == 409 and busy.get_json()["error"]["code"] == "session_resuming"
    assert busy.headers["Retry-After"]
    wait_active(client, alice, first)
    run(client, alice, first, "version")

    assert client.post("/api/sessions/%s/suspend" % first, headers=alice).status_code == 200
    workspace = session_row(app, first).workspace
    assert client.delete("/api/sessions/" + first, headers=alice).status_code == 204
    assert client.get("/api/sessions/" + first, headers=alice).status_code == 404
    ended, = [s for s in client.get("/api/sessions", headers=alice).get_json()["sessions"] if s["id"] == first]
    assert (ended["status"], ended["end_reason"]) == ("terminated", "deleted")
    assert not os.path.exists(workspace) and not os.path.exists(suspended_file(app, first))


def test_retention_and_an_unfinished_resume(app_factory):
    app = app_factory(SUSPENDED_RETENTION=60)
    client, alice = app.test_client(), token_header(app, "alice")
    kept, expired = create(client, alice), create(client, alice)
    for sid in (kept, expired):
        assert client.post("/api/sessions/%s/suspend" % sid, headers=alice).status_code == 200
    store = app.extensions[EXTENSION].new_store()
    # A resume whose worker died: the row says starting, no process was ever recorded.
    assert store.resume_session(kept, "alice", app.extensions[EXTENSION].launcher.domain, "h", 10, 10)[0]
    workspace = session_row(app, expired).workspace
    store.transition(expired, ["suspended"], "suspended", suspended_at=time.time() - 120)
    sweeper, close = app.extensions[EXTENSION].make_sweeper()
    try:
        # Past the start-up grace (30 + 10 + 5 s here), not past kept's retention (60 s).
        sweeper.sweep(now=time.time() + 50)
    finally:
        close()
    assert session_row(app, kept).status == "suspended" and os.path.exists(suspended_file(app, kept))
    gone = session_row(app, expired)
    assert (gone.status, gone.end_reason) == ("terminated", "suspended_expired")
    assert not os.path.exists(workspace) and not os.path.exists(suspended_file(app, expired))



def test_resume_takes_a_warm_pool_process(app_factory):
    app = app_factory(POOL_SIZE=1, MAX_SESSIONS=4)
    client, alice = app.test_client(), token_header(app, "alice")
    sid = create(client, alice)
    run(client, alice, sid, "open alanin.pdb; turn y 30")
    before = scene_facts(client, alice, sid)
    assert client.post("/api/sessions/%s/suspend" % sid, headers=alice).status_code == 200
    pool, close = app.extensions[EXTENSION].make_pool()
    try:
        assert pool.fill() == 1
        pooled = pool.store.pool_entries()[0].process.details["pid"]
        assert client.post("/api/sessions/%s/resume" % sid, headers=alice).status_code == 202
        wait_active(client, alice, sid)
        assert session_row(app, sid).process.details["pid"] == pooled          # the warm process, not a new one
        assert scene_facts(client, alice, sid)[:3] == before[:3]
        names = {f["name"] for f in client.get("/api/sessions/%s/files" % sid, headers=alice).get_json()["files"]}
        assert names == {"alanin.pdb"}
    finally:
        close()


def test_a_restart_during_a_resume_keeps_the_session_suspended(app_factory):
    from app.services.upkeep import recovery
    app = app_factory()
    client, alice = app.test_client(), token_header(app, "alice")
    sid = create(client, alice)
    assert client.post("/api/sessions/%s/suspend" % sid, headers=alice).status_code == 200
    runtime = app.extensions[EXTENSION]
    store = runtime.new_store()
    assert store.resume_session(sid, "alice", runtime.launcher.domain, app.config["HOST_ID"], 10, 10)[0]
    sweeper, close = runtime.make_sweeper()
    try:
        recovery.recover(sweeper.service)
    finally:
        close()
    assert session_row(app, sid).status == "suspended" and os.path.exists(suspended_file(app, sid))
