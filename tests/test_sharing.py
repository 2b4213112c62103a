"""Shared sessions and share links (issue 36): who may do what, over every
operation on a session, found from the route declarations."""
import io
import re
import time
import uuid

import pytest

from app.context import EXTENSION
from app.services.identity.tokens import TokenService
from app.store import Store

from .test_sandbox import command as api_command

# What each operation on a session needs (the oracle, written independently
# of the service): view, control, or owner (the owner or an admin).
NEEDS = {
    "sessions.get_session": "view", "sessions.history": "view", "commands.commands": "view",
    "commands.command": "view", "commands.events": "view", "sessions.list_files": "view",
    "sessions.download_file": "view", "sessions.snapshot": "view", "sessions.scene": "view",
    "sessions.run_command": "control", "commands.interrupt": "control", "sessions.upload_file": "control",
    "sessions.heartbeat": "control",
    "sessions.delete_file": "owner", "sessions.suspend_session": "owner", "sessions.resume_session": "owner",
    "sessions.delete_session": "owner", "shares.share": "owner", "shares.shares": "owner",
    "shares.unshare": "owner", "shares.link": "owner", "shares.links": "owner", "shares.unlink": "owner",
}
ORDER = {"view": 0, "control": 1, "owner": 2}
BODIES = {"sessions.run_command": {"command": "version"}, "shares.share": {"user": "zed", "access": "view"},
          "shares.link": {}, "commands.interrupt": {}}


def token(app, user, role="user", **kw):
    store = Store(app.extensions[EXTENSION].url)
    try:
        return {"Authorization": "Bearer " + TokenService(store).create(user, role, **kw)[1]}
    finally:
        store.close()


def session_operations(app):
    for rule in app.url_map.iter_rules():
        if "<uuid:session_id>" not in rule.rule or not rule.rule.startswith("/api/"):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, rule.rule


def test_every_operation_on_a_session_has_a_declared_need(fake):
    app, _ = fake
    endpoints = {endpoint for endpoint, _, _ in session_operations(app)}
    assert endpoints == set(NEEDS), "operations on a session without a need in this table: %s" % (
        endpoints ^ set(NEEDS))


def fill(rule, session_id, app_client, headers):
    url = rule.replace("<uuid:session_id>", session_id)
    url = re.sub(r"<uuid:[^>]+>", str(uuid.uuid4()), url)
    return re.sub(r"<[^>]+>", "kept.pdb", url)


# Who asks: (name, how they get access, what they may do at most)
CALLERS = ("owner", "admin", "view", "control", "expired", "revoked", "other", "link", "revoked-link")
MAY = {"owner": "owner", "admin": "owner", "view": "view", "control": "control"}


@pytest.mark.parametrize("caller", CALLERS)
def test_who_may_do_what_on_a_shared_session(fake, caller):
    app, _ = fake
    client = app.test_client()
    owner, admin = token(app, "olga"), token(app, "root", "admin")
    created = client.post("/api/sessions", headers=owner, json={})
    sid = created.get_json()["id"]
    assert client.post("/api/sessions/%s/files" % sid, headers=owner,
                       data={"file": (io.BytesIO(b"kept"), "kept.pdb")}).status_code == 201
    headers = {"owner": owner, "admin": admin}.get(caller)
    if caller in ("view", "control", "expired", "revoked"):
        grant = client.post("/api/sessions/%s/shares" % sid, headers=owner, json={
            "user": "gina", "access": "view" if caller == "view" else "control",
            "expires_in": 1 if caller == "expired" else None}).get_json()
        if caller == "revoked":
            assert client.delete("/api/sessions/%s/shares/%s" % (sid, grant["id"]), headers=owner).status_code == 204
        headers = token(app, "gina")
        if caller == "expired":
            deadline = time.time() + 1.05
            while time.time() < deadline:       # past its expiry: the store compares with the clock
                time.sleep(0.05)
    elif caller == "other":
        headers = token(app, "otto")
    elif caller in ("link", "revoked-link"):
        made = client.post("/api/sessions/%s/share-links" % sid, headers=owner, json={}).get_json()
        assert made["url"].endswith("/shared/%s#%s" % (sid, made["url"].rsplit("#", 1)[1]))
        if caller == "revoked-link":
            assert client.delete("/api/sessions/%s/share-links/%s" % (sid, made["id"]),
                                 headers=owner).status_code == 204
        headers = {"X-Share-Link": made["url"].rsplit("#", 1)[1]}
    may = MAY.get(caller)
    operations = sorted(session_operations(app), key=lambda op: (ORDER[NEEDS[op[0]]], op[0] == "sessions."
                                                                  "delete_session"))
    for endpoint, method, rule in operations:
        need = NEEDS[endpoint]
        scope = getattr(app.view_functions[endpoint], "_scope")
        allowed = (may is not None and ORDER[need] <= ORDER[may]) or (
            caller == "link" and need == "view" and scope == "sessions:read")
        kwargs = {"headers": headers}
        if method in ("POST", "PUT"):
            kwargs["json"] = BODIES.get(endpoint, {})
        if endpoint == "sessions.upload_file":
            kwargs = {"headers": headers, "data": {"file": (io.BytesIO(b"x"), "up.pdb")}}
        url = fill(rule, sid, client, headers)
        reply = client.open(url, method=method, buffered=endpoint != "commands.events", **kwargs)
        status = reply.status_code
        reply.close()
        if allowed:
            assert status not in (401, 403), (caller, method, url, status, reply.get_data(as_text=True)[:300])
        else:
            assert status in (401, 403), (caller, method, url, status)
    if caller in ("view", "control"):
        listed = client.get("/api/sessions", headers=headers).get_json()["sessions"]
        assert [(s["id"], s["owner"], s["access"]) for s in listed] == [(sid, "olga", caller)]
    client.delete("/api/sessions/" + sid, headers=owner)


def test_share_links_are_bounded_per_session(fake):
    app, _ = fake
    app.config["SHARE_LINKS_PER_SESSION"] = 2
    client = app.test_client()
    owner = token(app, "olga")
    sid = client.post("/api/sessions", headers=owner, json={}).get_json()["id"]
    made = [client.post("/api/sessions/%s/share-links" % sid, headers=owner, json={}) for _ in range(3)]
    assert [m.status_code for m in made] == [201, 201, 409]
    assert made[2].get_json()["error"]["code"] == "too_many_links"
    listed = client.get("/api/sessions/%s/share-links" % sid, headers=owner).get_json()["links"]
    assert len(listed) == 2 and all("url" not in link for link in listed)       # the secret was shown once


@pytest.mark.slow
def test_a_grantee_controlling_an_admins_session_is_held_to_their_own_profile(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60)
    admin, alice = server.token("boss", "admin"), server.token("alice")
    import requests
    sid = requests.post(server.url + "/api/sessions", headers=admin, json={}, timeout=120).json()["id"]
    assert requests.post(server.url + "/api/sessions/%s/shares" % sid, headers=admin, timeout=30,
                         json={"user": "alice", "access": "control"}).status_code == 201
    assert api_command(server, alice, sid, "version").json()["ok"]
    refused = api_command(server, alice, sid, "runscript anything.py")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "command_denied"
    assert api_command(server, admin, sid, "pwd").json()["ok"]          # the owner's profile is the owner's
    history = requests.get(server.url + "/api/sessions/%s/commands" % sid, headers=admin, timeout=30).json()
    ran = [(c["command"], c["user"], c["verdict"]) for c in history["commands"]]
    assert ("version", "alice", "allow") in ran and ("runscript anything.py", "alice", "deny") in ran


def test_shares_made_and_revoked_are_lifecycle_events(fake):
    import json
    app, _ = fake
    client = app.test_client()
    owner = token(app, "olga")
    sid = client.post("/api/sessions", headers=owner, json={}).get_json()["id"]
    grant = client.post("/api/sessions/%s/shares" % sid, headers=owner, json={"user": "gina", "access": "view"})
    again = client.post("/api/sessions/%s/shares" % sid, headers=owner, json={"user": "gina", "access": "control"})
    assert client.delete("/api/sessions/%s/shares/%s" % (sid, again.get_json()["id"]), headers=owner).status_code == 204
    store = Store(app.extensions[EXTENSION].url)
    try:
        events = [json.loads(e.body) for e in store.list_events("pending", 100) if e.session_id == sid]
    finally:
        store.close()
    told = [(e["type"], e.get("share"), e.get("access")) for e in events if e["type"].startswith("share.")]
    first, second = grant.get_json()["id"], again.get_json()["id"]
    assert told == [("share.created", first, "view"), ("share.revoked", first, None),
                    ("share.created", second, "control"), ("share.revoked", second, None)]
    assert all(e["user"] == "olga" and e.get("grantee") == "gina" for e in events if e["type"].startswith("share."))


@pytest.mark.slow
def test_a_command_waits_out_a_viewers_render_instead_of_being_refused(gunicorn_server):
    import threading

    import requests
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60)
    owner, viewer = server.token("olga"), server.token("vera")
    sid = requests.post(server.url + "/api/sessions", headers=owner, json={}, timeout=120).json()["id"]
    requests.post(server.url + "/api/sessions/%s/shares" % sid, headers=owner, json={"user": "vera", "access": "view"},
                  timeout=30).raise_for_status()
    rendered = {}

    def render():       # a large snapshot: the session is busy with the service's own work meanwhile
        rendered["reply"] = requests.get(server.url + "/api/sessions/%s/snapshot" % sid, headers=viewer, timeout=120,
                                         params={"width": 4096, "height": 4096, "supersample": 1})
    thread = threading.Thread(target=render)
    thread.start()
    from .conftest import wait_until
    from .test_availability import agent_channel
    from app.services.processes import chimerax_client
    channel = agent_channel(server, sid)
    wait_until(lambda: (chimerax_client.health(channel, 5) or {}).get("busy"), 30, interval=0.01,
               message="the render to be running")
    reply = api_command(server, owner, sid, "version")
    thread.join()
    assert rendered["reply"].status_code == 200
    assert reply.status_code == 200 and reply.json()["ok"], reply.text
