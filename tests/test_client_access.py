"""Tokens, acting for users and sharing (issues 35 and 36) through the Python
client and the `cxs` CLI, against a live gunicorn with the real runtime."""
import argparse
import json
import os
import subprocess
import sys

import pytest
import requests

from cxs_client import BadRequest, Client, Forbidden, Unauthorized
from cxs_client.cli_access import duration

from .conftest import wait_until

pytestmark = pytest.mark.slow
CXS = [os.path.join(os.path.dirname(sys.executable), "cxs")]


@pytest.fixture
def server(gunicorn_server):
    # A revocation is refused by every worker within TOKEN_CACHE_SECONDS: short, so the test waits little.
    return gunicorn_server(workers=2, SWEEP_INTERVAL=60, TOKEN_CACHE_SECONDS=1)


def secret(server, user, role="user"):
    return server.token(user, role)["Authorization"].split(" ", 1)[1]


def cli(server, token, *args, code=0):
    out = subprocess.run(CXS + list(args), env=dict(os.environ, CXS_URL=server.url, CXS_TOKEN=token),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == code, (args, out.stdout, out.stderr)
    return out


def refused(call):
    """Whether `call` is now refused as unauthorized (a revoked token)."""
    try:
        call()
    except Unauthorized:
        return True
    return False


def test_durations_for_expires():
    assert [duration(t) for t in ("3600", "90s", "30m", "1h", "7d", "2H")] == [3600, 90, 1800, 3600, 604800, 7200]
    for bad in ("0", "1w", "-5", "h", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            duration(bad)


def test_tokens_made_listed_and_revoked_through_the_client_and_cli(server):
    alice = Client(server.url, secret(server, "alice"))
    narrow = alice.create_token(scopes=["sessions:read"], expires_in=3600, note="read only")
    assert narrow["token"].startswith("cxs_") and narrow["scopes"] == ["sessions:read"]
    assert narrow["user"] == "alice" and narrow["note"] == "read only" and narrow["expires_at"]
    reader = Client(server.url, narrow["token"])
    assert reader.list() == []
    with pytest.raises(Forbidden) as scoped:
        reader.create()
    assert scoped.value.code == "insufficient_scope" and "sessions:write" in scoped.value.message
    with pytest.raises(Forbidden) as beyond:             # more than alice has
        alice.create_token(scopes=["admin:read"])
    assert beyond.value.code == "forbidden" and "admin:read" in beyond.value.message
    with pytest.raises(BadRequest) as longer:            # nor may it outlive the token making it (422)
        reader.create_token(scopes=["sessions:read"])
    assert longer.value.code == "invalid_token"

    listed = {t["id"]: t for t in alice.tokens()}
    assert narrow["id"] in listed and all("token" not in t for t in listed.values())
    assert listed[narrow["id"]]["revoked_at"] is None
    with pytest.raises(Forbidden):
        alice.tokens(all=True)
    alice.revoke_token(narrow["id"])
    wait_until(lambda: refused(reader.list), 10, message="the revoked token refused")
    assert [t["revoked_at"] is not None for t in alice.tokens() if t["id"] == narrow["id"]] == [True]

    # The CLI: the secret alone with -q, a summary otherwise; a table or JSON of them; revoked by id.
    token = secret(server, "alice")
    quiet = cli(server, token, "token", "create", "--scope", "sessions:read", "--expires", "1h", "--note",
                "from the cli", "-q").stdout.strip()
    assert quiet.startswith("cxs_") and len(quiet.splitlines()) == 1
    shown = cli(server, token, "token", "create", "--scope", "sessions:read", "--scope", "files:read",
                "--expires", "30m")
    fields = dict(line.split(None, 1) for line in shown.stdout.splitlines())
    assert fields["token"].startswith("cxs_") and fields["scopes"] == "files:read sessions:read"
    assert "shown this once" in shown.stderr
    table = cli(server, token, "token", "ls").stdout
    assert "from the cli" in table and table.splitlines()[0].split()[:3] == ["id", "user", "role"]
    mine = json.loads(cli(server, token, "token", "ls", "--json").stdout)
    made = [t for t in mine if t["note"] == "from the cli"]
    assert len(made) == 1 and all("token" not in t for t in mine)
    assert cli(server, quiet, "ls", "-q").stdout.strip() == ""
    cli(server, token, "token", "rm", str(made[0]["id"]))
    wait_until(lambda: subprocess.run(CXS + ["ls"], env=dict(os.environ, CXS_URL=server.url, CXS_TOKEN=quiet),
                                      capture_output=True, text=True).returncode == 2, 10,
               message="the revoked token refused to the CLI")
    assert "revoked" in cli(server, token, "token", "ls").stdout
    assert "403 (forbidden)" in cli(server, token, "token", "ls", "--all", code=2).stderr
    boss = secret(server, "boss", "admin")
    everyone = json.loads(cli(server, boss, "token", "ls", "--all", "--json").stdout)
    assert {"alice", "boss"} <= {t["user"] for t in everyone}
    assert "403 (forbidden)" in cli(server, token, "token", "create", "--scope", "act-as", code=2).stderr


def test_a_portal_token_acts_for_its_users_through_the_client_and_cli(server):
    boss = Client(server.url, secret(server, "boss", "admin"))
    portal = boss.create_token(user="portal", role="admin", act_as="lab-*", note="portal back-end",
                               scopes=["act-as", "sessions:read", "sessions:write", "sessions:command"])
    assert portal["act_as"] == "lab-*" and portal["user"] == "portal"
    as_ada = Client(server.url, portal["token"]).acting_as("lab-ada")
    assert as_ada.act_as == "lab-ada" and as_ada.http.headers["X-Act-As"] == "lab-ada"
    created = as_ada.create(label="ada's")
    assert created["user"] == "lab-ada"
    assert as_ada.run(created["id"], "version")["ok"]
    ada = Client(server.url, secret(server, "lab-ada"))          # ada's own token sees it as hers
    assert [(s["id"], s["access"]) for s in ada.list()] == [(created["id"], "owner")]
    assert [c["user"] for c in ada.commands(created["id"])["commands"] if c["command"] == "version"] == ["lab-ada"]
    same = Client(server.url, portal["token"], act_as="lab-ada")
    assert [s["id"] for s in same.list()] == [created["id"]]
    with pytest.raises(Forbidden) as outside:
        as_ada.acting_as("bob").list()
    assert outside.value.code == "act_as_refused"
    with pytest.raises(Forbidden) as files:                      # never more than the portal token's scopes
        as_ada.files(created["id"])
    assert files.value.code == "insufficient_scope"
    with pytest.raises(Forbidden) as plain:                      # a user's token cannot act for anyone
        Client(server.url, secret(server, "alice"), act_as="lab-ada").list()
    assert plain.value.code == "act_as_refused"

    listed = cli(server, portal["token"], "--act-as", "lab-ada", "ls", "-q").stdout.split()
    assert listed == [created["id"]]
    assert "act_as_refused" in cli(server, portal["token"], "--act-as", "bob", "ls", code=2).stderr
    cli(server, portal["token"], "--act-as", "lab-ada", "rm", created["id"])
    assert ada.list(status="active") == []


def test_sharing_through_the_client_and_cli(server):
    olga = Client(server.url, secret(server, "olga"))
    gina = Client(server.url, secret(server, "gina"))
    sid = olga.create(label="olga's")["id"]
    share = olga.share(sid, "gina", "view", expires_in=3600)
    assert (share["user"], share["access"], share["created_by"]) == ("gina", "view", "olga") and share["expires_at"]
    assert [(s["id"], s["owner"], s["access"]) for s in gina.list()] == [(sid, "olga", "view")]
    assert gina.get(sid)["access"] == "view"
    assert gina.snapshot(sid, width=64, height=48, supersample=1).startswith(b"\x89PNG")
    with pytest.raises(Forbidden):
        gina.run(sid, "version")
    with pytest.raises(Forbidden):
        gina.share(sid, "otto", "view")                   # only the owner shares
    control = olga.share(sid, "gina", "control")          # replaces the view share
    assert [(s["id"], s["access"]) for s in olga.shares(sid)] == [(control["id"], "control")]
    assert gina.run(sid, "version")["ok"]
    olga.unshare(sid, control["id"])
    assert olga.shares(sid) == [] and gina.list() == []
    with pytest.raises((Forbidden, Unauthorized)):
        gina.get(sid)

    link = olga.create_share_link(sid, expires_in=600)
    url, _, key = link["url"].partition("#")
    assert url == server.url + "/shared/" + sid and key and link["expires_at"]
    assert [(x["id"], "url" in x) for x in olga.share_links(sid)] == [(link["id"], False)]
    holder = {"X-Share-Link": key}
    seen = requests.get(server.url + "/api/sessions/" + sid, headers=holder, timeout=30)
    assert seen.status_code == 200 and seen.json()["owner"] == "olga"
    image = requests.get(server.url + "/api/sessions/%s/snapshot?width=64&height=48&supersample=1" % sid,
                         headers=holder, timeout=60)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert requests.get(server.url + "/api/sessions/%s/commands" % sid, headers=holder, timeout=30).status_code == 200
    with requests.get(server.url + "/api/sessions/%s/events" % sid, headers=holder, stream=True, timeout=30) as events:
        assert events.status_code == 200
        assert next(line for line in events.iter_lines() if line.startswith(b"event:")) == b"event: status"
    for method, path in (("POST", "/commands"), ("GET", "/files"), ("DELETE", ""), ("GET", "/shares")):
        answer = requests.request(method, server.url + "/api/sessions/" + sid + path, headers=holder,
                                  json={"command": "version"}, timeout=30)
        assert answer.status_code in (401, 403), (method, path, answer.status_code)
    assert requests.get(server.url + "/api/sessions", headers=holder, timeout=30).status_code in (401, 403)
    olga.revoke_share_link(sid, link["id"])
    gone = requests.get(server.url + "/api/sessions/" + sid, headers=holder, timeout=30)
    assert gone.status_code == 401 and olga.share_links(sid) == []

    # The CLI: share, list both kinds, make a link, revoke each by its id.
    token = olga.token
    made = json.loads(cli(server, token, "share", sid, "gina", "--access", "view", "--expires", "1h").stdout)
    assert made["access"] == "view" and made["user"] == "gina"
    printed = cli(server, token, "share", "link", sid, "--expires", "10m").stdout.strip()
    assert printed.startswith(server.url + "/shared/%s#" % sid)
    both = json.loads(cli(server, token, "share", "ls", sid).stdout)
    assert [s["id"] for s in both["shares"]] == [made["id"]] and len(both["links"]) == 1
    cli(server, token, "share", "rm", sid, both["links"][0]["id"])
    cli(server, token, "share", "rm", sid, made["id"])
    assert json.loads(cli(server, token, "share", "ls", sid).stdout) == {"shares": [], "links": []}
    assert "404" in cli(server, token, "share", "rm", sid, made["id"], code=2).stderr
    assert "--access" in cli(server, token, "share", sid, "gina", code=2).stderr
    assert "403" in cli(server, gina.token, "share", "ls", sid, code=2).stderr
    olga.delete(sid)
