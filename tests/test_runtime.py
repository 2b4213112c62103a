"""The headless ChimeraX test runtime over its real REST protocol (no service involved)."""
import re
import subprocess

import psutil
import pytest
import requests

from app.services.processes.locate import TEST_RUNTIME

from .conftest import alanin_pdb, wait_until
from .helpers import distinct_colours

pytestmark = pytest.mark.slow


@pytest.fixture
def rest(tmp_path):
    """A runtime started exactly as the service starts it; yields run(command)."""
    log_path = tmp_path / "chimerax.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([TEST_RUNTIME, "--nogui", "--offscreen", "--cmd",
                                 "remotecontrol rest start port 0 json true"],
                                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                cwd=tmp_path, start_new_session=True)

    def announced():
        assert proc.poll() is None, log_path.read_text()
        match = re.search(r"REST server started on host (\S+) port (\d+)", log_path.read_text())
        return match and int(match.group(2))
    port = wait_until(announced, 30, message="REST server line")

    def run(command):
        reply = requests.get("http://127.0.0.1:%d/run" % port, params={"command": command}, timeout=30)
        assert reply.status_code == 200
        return reply.json() if reply.content else None
    run.proc, run.tmp = proc, tmp_path
    yield run
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stdin.close()


def atom_count(rest, spec="#1"):
    """Atoms of a model, as `measure center` reports them (`info` answers JSON only over REST json)."""
    reply = rest("measure center " + spec)
    assert reply["error"] is None, reply
    found = re.search(r"(\d+) atoms", "".join(reply["log messages"]["note"]))
    return int(found.group(1))


def opened(rest, path):
    reply = rest("open %s" % path)
    assert reply["error"] is None and not reply["log messages"]["bug"], reply
    return atom_count(rest)


def test_structure_roundtrip_and_render(rest):
    tmp = rest.tmp
    assert opened(rest, alanin_pdb()) == 66

    rendered = rest("save %s width 400 height 300 supersample 3" % (tmp / "x.png"))
    assert rendered["error"] is None, rendered
    width, height, colours = distinct_colours(tmp / "x.png")
    assert (width, height) == (400, 300)
    assert colours > 200          # shaded cartoon, not a blank frame

    for style in ("style stick", "color red", "show atoms", "hide atoms", "cartoon", "view",
                  "turn y 30", "zoom 0.8", "select /?:1-3", "pwd", "version"):
        assert rest(style)["error"] is None, style

    assert rest("save %s" % (tmp / "x.cif"))["error"] is None
    assert rest("save %s" % (tmp / "x.pdb"))["error"] is None
    assert rest("close")["error"] is None
    assert opened(rest, tmp / "x.cif") == 66
    assert rest("close")["error"] is None
    assert opened(rest, tmp / "x.pdb") == 66


def test_errors_are_user_errors_and_cd_works(rest):
    for command in ("foo", "open nothing.xyz", "open %s" % (rest.tmp / "missing.pdb"), "save x.docx",
                    "open 1abc"):
        reply = rest(command)
        assert reply["error"]["type"] == "UserError", (command, reply)
    (rest.tmp / "sub").mkdir()
    assert rest("cd sub")["error"] is None
    assert str(rest.tmp / "sub") in "".join(rest("pwd")["log messages"]["note"])
    remote = rest("remotecontrol rest port")
    assert "REST server is listening" in "".join(remote["log messages"]["note"])


def test_exit_ends_the_process(rest):
    # The process ends before it replies: an empty reply or a dropped connection.
    try:
        assert rest("exit") is None
    except requests.ConnectionError:
        pass
    wait_until(lambda: rest.proc.poll() is not None, 10, message="runtime to exit")
    assert rest.proc.returncode == 0


def test_version_and_exit_flags(tmp_path):
    version = subprocess.run([TEST_RUNTIME, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and "ChimeraX version" in version.stdout
    out = subprocess.run([TEST_RUNTIME, "--nogui", "--offscreen", "--silent", "--cmd", "pwd", "--cmd",
                          "save %s width 64 height 48" % (tmp_path / "e.png"), "--exit"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stdout + out.stderr
    assert distinct_colours(tmp_path / "e.png")[:2] == (64, 48)


# The core command families every session relies on, run for real (every bundle's
# commands are checked for registration in test_runtime_bundles.py).
SUPPORTED = [
    "version", "pwd", "usage open", "alias myview view", "myview", "wait 1", "time pwd",
    "view", "turn y 30", "move x 1", "zoom 0.8", "clip near -1", "clip off", "cofr centerOfView",
    "roll frames 2", "rock frames 2", "wobble frames 2", "stop", "camera", "camera ortho", "camera mono", "lighting soft",
    "material dull", "graphics rate report true",
    "color red", "color byelement", "style stick", "style sphere", "show atoms", "hide atoms",
    "show cartoons", "cartoon", "cartoon style width 2", "transparency 30 target c",
    "select /?:1-3", "select clear", "rainbow", "size stickRadius 0.3", "label", "label delete",
    "surface", "surface close", "measure center #1", "measure inertia #1", "info models", "info chains",
    "rmsd #1 to #1", "align #1@CA toAtoms #1@CA",
]
# Not available offline or not in the wheel: ChimeraX's ordinary UserError, never a bug.
UNSUPPORTED = ["toolshed list", "open 1abc", "mseries #1", "alphafold pae #1", "lookingglass"]


def test_supported_command_families(rest):
    assert opened(rest, alanin_pdb()) == 66
    failures = {}
    for command in SUPPORTED:
        reply = rest(command)
        if reply["error"] is not None or reply["log messages"]["bug"]:
            failures[command] = reply["error"] or reply["log messages"]["bug"]
    assert failures == {}, "\n".join("%s: %s" % kv for kv in failures.items())


def test_unsupported_commands_fail_cleanly(rest):
    for command in UNSUPPORTED:
        reply = rest(command)
        assert reply["error"]["type"] == "UserError", (command, reply)
        assert reply["log messages"]["bug"] == []
    assert rest("pwd")["error"] is None           # and the process carries on
