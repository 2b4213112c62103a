"""The command policy, decided inside ChimeraX on ChimeraX's own parse (real runtime).

Every line of the bypass corpus must be refused (403 `command_denied`) or be
one ChimeraX itself rejects (200, `ok: false`, UserError); either way nothing
of it may reach a ChimeraX command function. A spy, installed inside ChimeraX
by an admin, wraps every registered command function and records each call:
the proof comes from inside ChimeraX, not from our reading of the line.
"""
import json
import logging
import os
import subprocess

import pytest

from app.services.policy import profiles as policy
from app.services.processes.locate import TEST_RUNTIME

from .conftest import alanin_pdb, token_header
from .helpers import CORPUS, OUTSIDE

pytestmark = pytest.mark.slow



SPY = """
from chimerax.core.commands import cli

def wrap(name, desc):
    inner = desc.function
    if isinstance(inner, cli.Alias) or getattr(inner, "cxs_spy", False):
        return
    def spy(*args, **kw):
        with open("/session/.spy.log", "a") as log:
            log.write(name + "\\n")
        return inner(*args, **kw)
    spy.cxs_spy = True
    desc._function = spy       # the setter refuses a second function; a spy may

def walk(info, prefix):
    for word, sub in list(info.subcommands.items()):
        name = (prefix + " " + word).strip()
        if sub.is_deferred():       # registered lazily, as the toolshed does: register it now
            try:
                sub.lazy_register(name)
            except Exception:
                pass
        if getattr(sub.cmd_desc, "function", None) is not None:
            wrap(name, sub.cmd_desc)
        walk(sub, name)

walk(cli._command_info.commands, "")

# `open` and `save` parse their own options (format, from, ...) and then call
# a provider: what reads or writes a file. The spy sees the providers too.
from chimerax.open_command import cmd as open_cmd
from chimerax.save_command import cmd as save_cmd

def spy_module(module, attribute, name):
    inner = getattr(module, attribute)
    if getattr(inner, "cxs_spy", False):
        return
    def spy(*args, **kw):
        with open("/session/.spy.log", "a") as log:
            log.write(name + "\\n")
        return inner(*args, **kw)
    spy.cxs_spy = True
    import functools
    setattr(module, attribute, functools.wraps(inner)(spy))    # register() reads its signature

spy_module(open_cmd, "provider_open", "open:provider")
spy_module(save_cmd, "provider_save", "save:provider")
"""
# ChimeraX's UserError and its subclass for "not possible here" (no saver for a format...).
USER_ERRORS = ("UserError", "LimitationError")
# The dispatchers only parse their options before a provider runs: what counts
# as "ran" for them is their provider (a refusal or an error while they parse
# comes before anything is opened or written).
DISPATCHERS = ("open", "save")


@pytest.fixture
def session(app, client):
    """alice's session with a structure, and a spy in its ChimeraX (installed by an admin)."""
    alice, admin = token_header(app, "alice"), token_header(app, "boss", "admin")
    with open(alanin_pdb(), "rb") as pdb:
        created = client.post("/api/sessions", headers=alice, content_type="multipart/form-data",
                              data={"file": (pdb, "x.pdb")}).get_json()
    record = app.extensions["chimerax_sessions"].new_store().get_session(created["id"])
    with open(os.path.join(record.workspace, "spy.py"), "w") as out:
        out.write(SPY)
    os.chmod(os.path.join(record.workspace, "spy.py"), 0o644)
    installed = run(client, admin, created["id"], "runscript spy.py").get_json()
    assert installed["ok"], installed
    return client, alice, admin, created["id"], record.workspace


def run(client, headers, session_id, command):
    return client.post("/api/sessions/%s/commands" % session_id, json={"command": command}, headers=headers)


def spied(workspace):
    try:
        with open(os.path.join(workspace, ".spy.log")) as log:
            return log.read().split()
    except FileNotFoundError:
        return []


def test_every_bypass_attempt_is_refused_before_any_of_it_runs(session):
    client, alice, _, session_id, workspace = session
    assert run(client, alice, session_id, "version").get_json()["ok"]
    assert spied(workspace) == ["version"]          # the spy sees what runs
    listing = sorted(os.listdir(workspace))
    wrong = {}
    for attempt in CORPUS:
        before = len(spied(workspace))
        response = run(client, alice, session_id, attempt)
        body = response.get_json()
        refused = response.status_code == 403 and body["error"]["code"] == "command_denied"
        ran = [name for name in spied(workspace)[before:] if name not in DISPATCHERS]
        # ChimeraX's own answer: an error, or nothing at all (a line that is one comment)
        chimerax_answer = response.status_code == 200 and (
            not body["ok"] and body["error"]["type"] in USER_ERRORS or body["ok"] and not ran)
        if not (refused or chimerax_answer) or ran:
            wrong[attempt] = (response.status_code, body, ran)
    assert wrong == {}
    assert sorted(os.listdir(workspace)) == listing
    assert not os.path.exists(OUTSIDE)


def test_unknown_words_are_answered_as_chimerax_answers_them(session):
    client, alice, admin, session_id, workspace = session
    foo = run(client, alice, session_id, "foo")
    assert foo.status_code == 200 and foo.get_json()["ok"] is False
    assert foo.get_json()["error"] == {"type": "UserError", "message": "Unknown command: foo"}
    # `pwd; foo` as a viewer is exactly `pwd; foo` with no policy at all (admin)
    viewer, unchecked = run(client, alice, session_id, "pwd; foo"), run(client, admin, session_id, "pwd; foo")
    assert viewer.status_code == unchecked.status_code == 200
    for key in ("ok", "error", "log"):
        assert viewer.get_json()[key] == unchecked.get_json()[key]
    assert "/session" in "".join(viewer.get_json()["log"]["note"])


def test_denial_names_the_command_and_is_audited(session, caplog):
    client, alice, _, session_id, _ = session
    logger = logging.getLogger("cxs")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="cxs.audit")
    try:
        denied = run(client, alice, session_id, "runsc evil.py").get_json()
        run(client, alice, session_id, "style stick; col red")
    finally:
        logger.removeHandler(caplog.handler)
    assert "runscript" in denied["error"]["message"]
    audit = [r.getMessage() for r in caplog.records if r.name == "cxs.audit"]
    assert any("verdict=deny" in line and "denied=runscript" in line and "user=alice" in line for line in audit)
    assert any("verdict=allow" in line and "commands=style,color" in line for line in audit)
    assert not any("evil.py" in line for line in audit)      # arguments are not logged


def test_admin_profile_is_unrestricted_but_control_characters_are_not(app, client, session):
    _, _, admin, session_id, _ = session
    assert run(client, admin, session_id, "usage runscript").get_json()["ok"] is True
    assert run(client, admin, session_id, "pwd\nexit").status_code == 403


ALLOWED = ["style stick", "sty stick", "color red", "col byelement", "cartoon", "~cartoon", "show atoms",
           "~show atoms", "hide atoms", "select /?:1-3", "~select", "view", "turn y 30", "turn y 3 frames 10",
           "zoom 0.9", "open x.pdb", "open x.pdb format pdb", "open 'x.pdb'", "save out.cif",
           "save out.png width 40 height 30", "save out.pdb models #1", "save out.bmp width 20 height 20",
           "info models", "measure center #1", "pwd", "  pwd", "pwd; view", "surface", "transparency 50",
           "label", "windowsize 300 200", "dssp"]

# Analysis commands a portal needs; each is registered and allowed, and its file
# keywords are refused.
ANALYSIS = {"hbonds": "hbonds saveFile /tmp/x.txt", "contacts": "contacts saveFile /tmp/x.txt",
            "clashes": "clashes saveFile /tmp/x.txt", "interfaces": None,      # no file keyword in 1.7
            "addh": None, "matchmaker": "matchmaker #1 to #1", "sequence": None,
            "measure sasa": "measure sasa #1", "measure convexity": "measure convexity #1 writeSurfaceData x.txt",
            "info": "info models saveFile /tmp/x.txt", "volume": None, "2dlabels": None}


@pytest.mark.parametrize("command", ALLOWED)
def test_viewer_commands_run(session, command):
    client, alice, _, session_id, workspace = session
    before = len(spied(workspace))
    response = run(client, alice, session_id, command)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["ok"], response.get_json()
    assert spied(workspace)[before:]                     # it really ran
    if command.startswith("save out."):                  # what a viewer saves, it can download
        name = command.split()[1]
        assert client.get("/api/sessions/%s/files/%s" % (session_id, name), headers=alice).status_code == 200


@pytest.mark.parametrize("command", sorted(ANALYSIS))
def test_analysis_commands_are_allowed_and_their_file_keywords_refused(session, command):
    client, alice, admin, session_id, _ = session
    text = {"info": "info", "sequence": "sequence chain #1"}.get(command, command + " #1")
    response = run(client, alice, session_id, text)
    assert response.status_code == 200, response.get_json()       # allowed (ChimeraX may still say no)
    assert "Unknown command" not in ((response.get_json()["error"] or {}).get("message") or "")
    writes = ANALYSIS[command]
    if writes and ("saveFile" in writes or "writeSurfaceData" in writes):
        refused = run(client, alice, session_id, writes)
        assert refused.status_code == 403, refused.get_json()


# Every registered command's argument names, as ChimeraX's parser hands them to
# the policy (kw_args keys), from the runtime itself. `save` and `open` parse
# their options again with the keywords of the chosen format: those count too.
# A command the runtime only stands in for (2dlabels: no Qt here) is registered
# by its own ChimeraX code first.
KEYWORDS = """
import json
from chimerax.core.commands import cli

def desc_of(info):
    return getattr(info, "cmd_desc", None)

def walk(info, prefix, found):
    for word, sub in list(info.subcommands.items()):
        name = (prefix + " " + word).strip()
        if sub.is_deferred():
            try:
                sub.lazy_register(name)
            except Exception:
                continue
        desc = desc_of(sub)
        if desc is not None and getattr(desc, "function", None) is not None:
            stand_in = (desc.synopsis or "").startswith("not available")
            found[name] = None if stand_in else sorted(set(desc._required) | set(desc._optional)
                                                       | set(desc._keyword))
        walk(sub, name, found)

found = {}
walk(cli._command_info.commands, "", found)        # registers what the toolshed defers (stand-ins too)
from chimerax.label import label2d
label2d.register_label_command(session.logger)     # ChimeraX's own 2dlabels over the stand-in
walk(cli._command_info.commands, "", found)
for name, manager, formats, args in (("save", session.save_command, "save_data_formats", "save_args"),
                                     ("open", session.open_command, "open_data_formats", "open_args")):
    for data_format in getattr(manager, formats):
        try:
            found[name] = sorted(set(found[name]) | set(getattr(manager, args)(data_format)))
        except Exception:
            pass
with open(OUT, "w") as out:
    json.dump(found, out)
"""


@pytest.fixture(scope="module")
def runtime_keywords(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keywords")
    script, out = folder / "keywords.py", folder / "keywords.json"
    script.write_text("OUT = %r\n" % str(out) + KEYWORDS)
    done = subprocess.run([TEST_RUNTIME, "--nogui", "--offscreen", "--silent", "--script", str(script), "--exit"],
                          capture_output=True, text=True, timeout=120, cwd=folder, stdin=subprocess.DEVNULL)
    assert out.exists(), done.stdout + done.stderr
    return json.loads(out.read_text())


def test_every_bounded_keyword_is_a_keyword_of_its_command_in_the_runtime(runtime_keywords):
    """A bound on a misspelt keyword (`msMapSize` bounded as `multi_shadow_map_size`)
    bounds nothing: every keyword the profile names must be one ChimeraX parses."""
    viewer = policy.default_profiles()["viewer"]
    named = {}
    for table in (viewer.bounds, viewer.texts, viewer.data_values):
        for command, keywords in table.items():
            named.setdefault(command, set()).update(keywords)
    wrong = {}
    for command, keywords in sorted(named.items()):
        if command == "*":
            everywhere = {k for name, known in runtime_keywords.items() if known
                          and name.lstrip("~").split()[0] in viewer.commands for k in known}
            missing = keywords - everywhere
        elif runtime_keywords.get(command) is None:
            missing = {"(no such command in the runtime)"}
        else:
            missing = keywords - set(runtime_keywords[command])
        if missing:
            wrong[command] = sorted(missing)
    assert wrong == {}
    # the table was read from the runtime, not from nothing
    assert "ms_map_size" in runtime_keywords["lighting"] and "supersample" in runtime_keywords["save"]
    assert "size" in runtime_keywords["2dlabels"]


def test_the_keyword_check_catches_a_misspelt_bound(runtime_keywords):
    assert "multi_shadow_map_size" not in runtime_keywords["lighting"]      # the old, silent bound
    assert "shadow_map_size" not in runtime_keywords["lighting"]
