"""The runtime's bundles, registered by ChimeraX's own toolshed from bundles.json:
every row of the README's runtime table run for real, and the analysis a
portal needs, over the REST protocol of the service's agent (what every
session speaks: ChimeraX's own REST server in 1.7 never answers a command
whose Python value JSON cannot hold, e.g. `contacts`).

Files: structures from the wheel (alanin.pdb), maps made by the wheel's own
writers (molmap, then `save .mrc`/`.map`), a Mol2 file written by its Mol2
writer, and tests/data/ethanol.sdf (three atoms, written by hand: the wheel
has no SDF writer)."""
import os
import re
import secrets
import subprocess
import sys

import pytest

from app.services.processes import chimerax_client
from app.services.processes.launchers import AGENT_SCRIPT
from app.services.processes.locate import PROJECT_ROOT, TEST_RUNTIME

from .conftest import alanin_pdb, wait_until

sys.path.insert(0, os.path.join(PROJECT_ROOT, "chimerax_runtime"))
import runtime_table  # noqa: E402

pytestmark = pytest.mark.slow
TABLE = runtime_table.load()
ETHANOL = os.path.join(PROJECT_ROOT, "tests", "data", "ethanol.sdf")


@pytest.fixture
def rest(tmp_path):
    """The runtime started with the service's agent (TCP, a secret); yields run(command)
    returning the reply as ChimeraX's REST protocol gives it."""
    secret = secrets.token_urlsafe(16)
    log_path = tmp_path / "chimerax.log"
    env = dict(os.environ, CXS_AGENT_SECRET=secret, CXS_AGENT_HOST="127.0.0.1", CXS_AGENT_PORT="0")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([TEST_RUNTIME, "--nogui", "--offscreen", "--script", AGENT_SCRIPT],
                                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                                env=env, start_new_session=True)

    def announced():
        assert proc.poll() is None, log_path.read_text()
        return re.search(r"CXS agent ready: tcp (\S+) (\d+)", log_path.read_text())
    ready = wait_until(announced, 30, message="the agent")
    channel = chimerax_client.Channel(secret=secret, host=ready.group(1), port=int(ready.group(2)))

    def run(command):
        status, body = chimerax_client._request(channel, "/run?" + chimerax_client.urlencode({"command": command}),
                                             60, 5, {})
        while status == 200 and body.startswith(b'{"fetch"'):
            # A fetch the agent hands over: no service here to make it (tests/test_fetch.py does).
            asked = chimerax_client.json.loads(body)["fetch"]
            status, body = chimerax_client._request(channel, "/fetched", 60, 5, {}, body=chimerax_client.json.dumps(
                {"id": asked["id"], "error": "no network in this test"}).encode())
        assert status == 200, (command, status, body)
        return chimerax_client.json.loads(body)
    run.tmp = tmp_path
    yield run
    proc.kill()
    proc.wait()
    proc.stdin.close()


def atom_count(rest, spec="#1"):
    """Atoms of a model, as `measure center` reports them."""
    found = re.search(r"(\d+) atoms", ok(rest, "measure center " + spec))
    return int(found.group(1))


def opened(rest, path):
    ok(rest, "open %s" % path)
    return atom_count(rest)


def ok(rest, command):
    reply = rest(command)
    assert reply["error"] is None and not reply["log messages"]["bug"], (command, reply)
    return " ".join(reply["log messages"]["note"] + reply["log messages"]["warning"])


def user_error(rest, command):
    reply = rest(command)
    assert reply["error"] is not None and reply["error"]["type"] == "UserError", (command, reply)
    assert not reply["log messages"]["bug"], (command, reply)
    return reply["error"]["message"]


def test_the_docs_table_is_made_from_the_bundle_table():
    with open(os.path.join(PROJECT_ROOT, "docs", "runtime.md")) as readme:
        assert runtime_table.markdown(TABLE) in readme.read(), \
            "docs/runtime.md is stale: run .venv/bin/python chimerax_runtime/runtime_table.py"


def test_every_row_of_the_table(rest):
    tmp = rest.tmp
    assert opened(rest, alanin_pdb()) == 66
    failures = []
    for kind, what, _, _, items in runtime_table.rows(TABLE):
        for item in items:
            try:
                if kind == "commands":          # registers, through its bundle's own API
                    ok(rest, "usage " + item)
                elif kind == "open":            # a provider takes the suffix: only the file is missing
                    message = user_error(rest, "open %s" % (tmp / ("missing" + item)))
                    assert "unrecognized" not in message.lower(), message
                elif kind == "save":            # a provider takes the suffix: only the folder is missing
                    message = user_error(rest, "save %s" % (tmp / "no-such-folder" / ("x" + item)))
                    assert "unrecognized" not in message.lower(), message
                elif kind == "fetch":           # nothing reaches the web: an error, or nothing opened
                    reply = rest("open %s" % ("%s://example.invalid/x.pdb" % item
                                              if item in ("http", "https", "ftp") else "1abc from " + item))
                    assert not reply["log messages"]["bug"], reply
                    assert reply["error"] is not None or reply["json values"] == ['{"model specs": []}'], reply
                elif kind == "unavailable commands":
                    assert "not available in this runtime" in user_error(rest, item)
                elif kind == "toolshed":
                    assert "Unknown command" in user_error(rest, "toolshed list")
            except AssertionError as err:
                failures.append("%s / %s: %s" % (what, item, str(err)[:300]))
    assert failures == [], "\n".join(failures)
    # Left out of the table: their formats are unknown, their headers never tried.
    assert "unrecognized" in user_error(rest, "open %s" % (tmp / "x.dcm")).lower()
    assert "Alignment identifier" in ok(rest, "sequence chain #1")


def test_analysis_commands(rest):
    assert opened(rest, alanin_pdb()) == 66
    assert re.search(r"\d+ hydrogen bonds found", ok(rest, "hbonds #1"))
    assert re.search(r"\d+ contacts", ok(rest, "contacts #1"))
    assert re.search(r"(\d+|No) clashes", ok(rest, "clashes #1"))
    assert "Solvent accessible area for #1" in ok(rest, "measure sasa #1")
    ok(rest, "dssp #1")
    ok(rest, "addh #1")
    assert atom_count(rest) > 66                            # hydrogens were added
    assert "Alignment identifier" in ok(rest, "sequence chain #1")
    ok(rest, "open %s" % alanin_pdb())
    ok(rest, "turn y 40 models #2")
    assert "RMSD between" in ok(rest, "matchmaker #2 to #1")


def test_maps_small_molecules_scenes_and_sessions(rest):
    tmp = rest.tmp
    assert opened(rest, alanin_pdb()) == 66
    assert "Opened" in ok(rest, "molmap #1 5")               # model #2
    ok(rest, "volume #2 origin 0,0,0")                       # CCP4 stores an integer grid origin
    ok(rest, "save %s models #2" % (tmp / "m.mrc"))
    ok(rest, "save %s models #2" % (tmp / "m.map"))
    assert "Opened m.mrc" in ok(rest, "open %s" % (tmp / "m.mrc"))     # #3
    assert "Opened m.map" in ok(rest, "open %s" % (tmp / "m.map"))     # #4
    ok(rest, "volume #3 level 0.05 color red")
    ok(rest, "volume #4 style surface level 0.1 transparency 0.5")
    assert re.search(r"minimum 0, maximum [0-9.]+", ok(rest, "measure mapstats #3"))

    ok(rest, "open %s" % ETHANOL)                            # #5
    assert atom_count(rest, "#5") == 3
    ok(rest, "save %s models #1" % (tmp / "x.mol2"))
    ok(rest, "open %s" % (tmp / "x.mol2"))                   # #6
    assert atom_count(rest, "#6") == 66

    ok(rest, "save %s" % (tmp / "scene.glb"))
    with open(tmp / "scene.glb", "rb") as glb:
        head = glb.read(12)
    assert head[:4] == b"glTF" and int.from_bytes(head[4:8], "little") == 2
    # Mesh lines are exported from their drawn shape: headless, only once a frame was drawn.
    ok(rest, "volume #3 style mesh")
    ok(rest, "save %s width 32 height 32" % (tmp / "frame.png"))
    ok(rest, "save %s" % (tmp / "mesh.glb"))

    assert "Qt" in user_error(rest, "2dlabels text 'hello'")      # no Qt here: said, not half-done
    ok(rest, "save %s" % (tmp / "s.cxs"))
    ok(rest, "close session")
    assert "opened ChimeraX session" in ok(rest, "open %s" % (tmp / "s.cxs"))
    assert atom_count(rest, "#1") == 66 and atom_count(rest, "#6") == 66
