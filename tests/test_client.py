"""The Python client and the `cxs` CLI against a live gunicorn with the real runtime."""
import json
import os
import subprocess
import sys

import pytest

from cxs_client import Client, CommandFailed, Conflict, Forbidden, NotFound, RateLimited

from .conftest import add_ended_sessions, alanin_pdb, wait_until
from .helpers import distinct_colours

pytestmark = pytest.mark.slow


@pytest.fixture
def live(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, MAX_SESSIONS_PER_USER=2)
    token = server.token("alice")["Authorization"].split(" ", 1)[1]
    return server, Client(server.url, token)


def test_client_workflow_and_context_manager(live, tmp_path):
    server, client = live
    with client.session(label="ctx", file=alanin_pdb(), heartbeat_every=0.2) as session:
        assert client.get(session.id)["status"] == "active"
        first = client.get(session.id)["last_activity"]
        wait_until(lambda: client.get(session.id)["last_activity"] != first, 5, message="background heartbeat")
        assert any("66 atoms" in m for m in session.run("measure center #1")["log"]["note"])
        session.run("style stick; color red")
        png = session.snapshot(width=120, height=90, dest=str(tmp_path / "s.png"))
        assert png.startswith(b"\x89PNG") and distinct_colours(tmp_path / "s.png")[:2] == (120, 90)
        session.run("save out.cif")
        assert {f["name"] for f in session.files()} == {"alanin.pdb", "out.cif"}
        assert b"_atom_site" in session.download("out.cif")
        with pytest.raises(CommandFailed) as failed:
            session.run("open missing.pdb")
        assert failed.value.result["error"]["type"] == "UserError"
        with pytest.raises(Forbidden) as denied:
            session.run("runscript evil.py")
        assert denied.value.code == "command_denied" and denied.value.request_id
        kept = session.id
    with pytest.raises(NotFound) as gone:                       # deleted on exit
        client.get(kept)
    assert gone.value.code == "session_deleted"
    assert [s["end_reason"] for s in client.list() if s["id"] == kept] == ["deleted"]
    with pytest.raises(Conflict):
        client.run(kept, "pwd")
    with pytest.raises(NotFound):
        client.get("00000000-0000-4000-8000-000000000000")


def test_client_typed_limit_error(live):
    server, client = live
    a, b = client.create(), client.create()
    with pytest.raises(RateLimited) as limited:
        client.create()
    assert limited.value.code == "user_session_limit" and limited.value.retry_after
    client.delete(a["id"])
    client.delete(b["id"])


def test_client_list_follows_the_pages(live):
    server, client = live
    store = server.store()
    try:
        add_ended_sessions(store, ["alice", "bob"], 120)       # the service answers 50 a page
    finally:
        store.close()
    everything = client.list()
    assert [s["label"] for s in everything] == ["alice %d" % i for i in reversed(range(120))]
    assert [s["label"] for s in client.list(limit=55)] == ["alice %d" % i for i in reversed(range(65, 120))]
    assert len(client.list(status=["failed", "active"])) == 60


def test_cli_for_integration_scripts(live, tmp_path):
    server, client = live
    env = dict(os.environ, CXS_URL=server.url, CXS_TOKEN=client.http.headers["Authorization"].split(" ", 1)[1])
    cxs = [os.path.join(os.path.dirname(sys.executable), "cxs")]

    def run(*args, check=True):
        out = subprocess.run(cxs + list(args), env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        if check:
            assert out.returncode == 0, out.stderr
        return out
    sid = run("create", "--file", alanin_pdb(), "--label", "cli", "-q").stdout.strip()
    assert sid in run("ls", "-q").stdout
    assert "66 atoms" in run("run", sid, "measure center #1").stdout
    assert run("run", sid, "color red").returncode == 0
    shown = json.loads(run("get", sid).stdout)       # the real launcher's figures: ChimeraX has used CPU
    assert shown["usage"]["cpu_seconds"] > 0 and shown["limits"]["enforced_by"]
    assert run("snapshot", sid, "-o", "x.png", "--width", "64", "--height", "48").returncode == 0
    assert (tmp_path / "x.png").read_bytes().startswith(b"\x89PNG")
    bad = run("run", sid, "open missing.pdb", check=False)
    assert bad.returncode == 1 and "UserError" in bad.stderr
    denied = run("run", sid, "runscript evil.py", check=False)
    assert denied.returncode == 2 and "command_denied" in denied.stderr
    assert run("history", sid, "--cxc").stdout.splitlines()[-1] == "color red"   # runscript: denied
    history = json.loads(run("history", sid).stdout)["history"]
    assert [(e["command"], e["verdict"]) for e in history][-2:] == [("open missing.pdb", "allow"),
                                                                     ("runscript evil.py", "deny")]
    assert run("scene", sid, "-o", "x.glb", "--size", "10").returncode == 0
    assert (tmp_path / "x.glb").read_bytes()[:4] == b"glTF"
    assert json.loads(run("suspend", sid).stdout)["status"] == "suspended"
    assert json.loads(run("resume", sid).stdout)["status"] == "active"
    assert "66 atoms" in run("run", sid, "measure center #1").stdout       # the scene came back
    run("rm", sid)
    gone = subprocess.run(cxs + ["get", sid], env=env, capture_output=True, text=True)
    assert gone.returncode == 2 and "404 (session_deleted)" in gone.stderr
    missing_token = subprocess.run(cxs + ["ls"], env=dict(env, CXS_TOKEN=""), capture_output=True, text=True)
    assert missing_token.returncode == 2 and "token" in missing_token.stderr
    # The session just ended counts in today's usage.
    today = client.usage()
    assert today["user"] == "alice" and today["days"][-1]["day"] == today["until"]
    assert today["totals"]["session_hours"] > 0
    table = run("usage").stdout.splitlines()
    assert table[0] == "usage of alice, %s to %s (UTC)" % (today["since"], today["until"])
    assert table[-1].startswith("total ")
    assert json.loads(run("usage", "--json", "--since", today["until"]).stdout)["days"][0]["day"] == today["until"]
    other = run("usage", "--user", "bob", check=False)
    assert other.returncode == 2 and "403 (forbidden)" in other.stderr
