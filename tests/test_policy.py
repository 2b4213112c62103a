"""The command policy: a corpus of bypass attempts against a real ChimeraX session.

Every attempt must be denied with 403 `command_denied` and provably never
reach ChimeraX: the REST client is spied on (nothing sent), and ChimeraX's
state (models, working directory), the workspace listing and the sentinel
paths outside the workspace are unchanged afterwards.
"""
import os

import pytest

from app.services import chimerax_client, policy

from .conftest import alanin_pdb, token_header

pytestmark = pytest.mark.slow

OUTSIDE = "/tmp/cxs-policy-escape"       # nothing may ever be written here

CORPUS = [
    # dangerous verbs, spelled out, abbreviated, cased
    "runscript evil.py", "runsc evil.py", "runs evil.py", "run evil.py", "r evil.py", "RUNSCRIPT evil.py",
    "Runscript evil.py", "shell", "she", "pip install requests", "pi install x", "toolshed install x",
    "tools", "devel build .", "cd /", "cd ..", "c /", "alias evil runscript evil.py", "ali evil pwd",
    "perframe \"runscript evil.py\"", "remotecontrol rest start port 1234", "remote rest start",
    "exit", "ex", "quit", "q", "log save %s/log.html" % OUTSIDE, "movie record", "debug sdump x",
    "defattr evil.defattr", "2dlabels text hi", "~runscript x", "~alias evil", "unknowncommand",
    # chaining and separators
    "pwd; runscript evil.py", "pwd ;runscript evil.py", "pwd;;runscript evil.py", "pwd\nrunscript evil.py",
    "pwd\rrunscript evil.py", "pwd\trunscript evil.py", "pwd\x00", "pwd\u2028runscript evil.py",
    "pwd\u0085runscript evil.py", "# comment; runscript evil.py", "  ; shell",
    # look-alikes and invisible characters
    "\uff52\uff55\uff4e\uff53\uff43\uff52\uff49\uff50\uff54 evil.py", "runscr\u0456pt evil.py",
    "run\u200bscript evil.py", "open\u00a0evil.py", "\u202eyp.live tpircsnur", "ｏｐｅｎ x.pdb",
    # quoting
    "open \"evil.py\"", "open 'x.pdb' format 'python'", "open \"a;runscript evil.py\"", "open \"unterminated",
    "'runscript' evil.py", "\"shell\"",
    # keyword tricks in open/save and file-writing keywords
    "open x.pdb format python", "open x.pdb form python", "open x.pdb fo py", "open x.pdb format cmd",
    "open x.pdb format PYTHON", "open x.pdb format cxc", "open x.pdb x.py", "open x.pdb name a x.py",
    "save x.pdb format python", "save x.png wid 10", "save evil.py", "save evil.cxc", "save evil.cxs",
    "save evil.html", "open evil.cxc", "open evil.cxs", "open evil.pyc", "open evil.py",
    "info models saveFile %s/info.txt" % OUTSIDE, "info models savef %s/x" % OUTSIDE,
    "info models s %s/x" % OUTSIDE, "info models SAVEFILE %s/x" % OUTSIDE,
    "measure convexity #1 writeSurfaceData %s/x" % OUTSIDE, "meas convexity #1 w %s/x" % OUTSIDE,
    # paths
    "open /etc/passwd", "open %s/x.pdb" % OUTSIDE, "open ../x.pdb", "open ./../x.pdb", "open ~/x.pdb",
    "open ~root/x.pdb", "save /tmp/x.pdb", "save %s/x.pdb" % OUTSIDE, "save ../x.pdb", "save ~/x.pdb",
    "save sub/../../x.pdb", "open link.pdb", "save link.pdb", "open x.pdb\x00.png", "open .hidden.pdb",
    "open %2e%2e/x.pdb", "open C:\\x.pdb", "save \\\\host\\share\\x.pdb",
    # URLs and databases
    "open http://127.0.0.1/x.pdb", "open https://127.0.0.1/x.cif", "open ftp://127.0.0.1/x.pdb",
    "open file:///etc/passwd", "open 1abc", "open pdb:1abc", "open 1abc format mmcif",
]


@pytest.fixture
def session(app, client):
    alice = token_header(app, "alice")
    with open(alanin_pdb(), "rb") as pdb:
        created = client.post("/api/sessions", headers=alice, content_type="multipart/form-data",
                              data={"file": (pdb, "x.pdb")}).get_json()
    record = app.extensions["chimerax_sessions"].new_store().get_session(created["id"])
    os.symlink("/etc/hosts", os.path.join(record.workspace, "link.pdb"))
    return client, alice, created["id"], record.workspace


def chimerax_state(client, alice, session_id):
    def run(command):
        reply = client.post("/api/sessions/%s/commands" % session_id, json={"command": command}, headers=alice)
        return "".join(reply.get_json()["log"]["note"])
    return run("info models"), run("pwd")


def test_every_bypass_attempt_is_denied_and_never_reaches_chimerax(session, monkeypatch):
    client, alice, session_id, workspace = session
    state_before = chimerax_state(client, alice, session_id)
    listing_before = sorted(os.listdir(workspace))
    sent = []
    real_run = chimerax_client.run_command
    monkeypatch.setattr(chimerax_client, "run_command",
                        lambda host, port, command, *a, **kw: sent.append(command) or real_run(host, port, command, *a, **kw))
    not_denied = {}
    for attempt in CORPUS:
        response = client.post("/api/sessions/%s/commands" % session_id, json={"command": attempt}, headers=alice)
        body = response.get_json()
        if response.status_code != 403 or body["error"]["code"] != "command_denied":
            not_denied[attempt] = (response.status_code, body)
    assert not_denied == {}
    assert sent == []
    monkeypatch.undo()
    assert chimerax_state(client, alice, session_id) == state_before
    assert sorted(os.listdir(workspace)) == listing_before
    assert not os.path.exists(OUTSIDE)


def test_denial_names_the_verb_and_is_audited(session, caplog):
    import logging
    client, alice, session_id, _ = session
    logger = logging.getLogger("cxs")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="cxs.audit")
    try:
        denied = client.post("/api/sessions/%s/commands" % session_id, json={"command": "runsc evil.py"},
                             headers=alice).get_json()
        client.post("/api/sessions/%s/commands" % session_id, json={"command": "style stick; col red"},
                    headers=alice)
    finally:
        logger.removeHandler(caplog.handler)
    assert "runscript" in denied["error"]["message"]
    audit = [r.getMessage() for r in caplog.records if r.name == "cxs.audit"]
    assert any("verdict=deny" in line and "denied=runscript" in line and "user=alice" in line for line in audit)
    assert any("verdict=allow" in line and "verbs=style,col*" in line for line in audit)
    assert not any("evil.py" in line for line in audit)      # arguments are not logged


def test_admin_profile_is_unrestricted(app, client, session):
    _, _, session_id, _ = session
    admin = token_header(app, "boss", "admin")
    reply = client.post("/api/sessions/%s/commands" % session_id, json={"command": "usage runscript"},
                        headers=admin).get_json()
    assert reply["ok"] is True
    # even trusted commands cannot carry control characters
    response = client.post("/api/sessions/%s/commands" % session_id, json={"command": "pwd\nexit"},
                           headers=admin)
    assert response.status_code == 403


ALLOWED = ["style stick", "sty stick", "color red", "col byelement", "cartoon", "~cartoon", "show atoms",
           "~show atoms", "hide atoms", "select /?:1-3", "~select", "view", "turn y 30", "zoom 0.9",
           "open x.pdb", "open x.pdb format pdb", "open 'x.pdb'", "save out.cif", "save out.png width 40 height 30",
           "save out.pdb models #1", "info models", "measure center #1", "pwd", "  pwd", "pwd; view",
           "surface", "transparency 50", "label"]


@pytest.mark.parametrize("command", ALLOWED)
def test_viewer_commands_are_allowed(tmp_path, command):
    verdict = policy.check(command, policy.default_profiles()["viewer"], str(tmp_path))
    assert verdict.allowed, verdict.reason


def test_profiles_are_configurable(tmp_path):
    profiles = policy.default_profiles(extra_viewer=["hbonds"], denied_viewer=["surface"])
    assert policy.check("hbonds", profiles["viewer"], str(tmp_path)).allowed
    assert not policy.check("surface", profiles["viewer"], str(tmp_path)).allowed
    fetching = policy.default_profiles(allow_fetch=True)["viewer"]
    assert policy.check("open 1abc", fetching, str(tmp_path)).allowed
    assert not policy.check("open http://127.0.0.1/x.pdb", fetching, str(tmp_path)).allowed
