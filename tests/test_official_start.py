"""A session's ChimeraX as the official app would run it, through the service at
its defaults (sandbox, warm pool): nothing reaches ChimeraX through its stdin,
the agent serves only from the running event loop and only once its policy
hooks fired, and the release is declared, shown and checked.

The hook-skipping and late-loop ChimeraX are the runtime's own variants
(cxs_runtime/variants.py), switched on by a wrapper executable: a real
ChimeraX cannot be made to skip a hook or start its loop late on demand."""
import os
import shutil
import tempfile

import pytest

from app.context import EXTENSION
from app.services.processes import chimerax_client
from app.services.processes.launchers import AGENT_SCRIPT, LocalLauncher, NoSandbox
from app.services.processes.launchers.sandbox import installation_paths
from app.services.processes.locate import TEST_RUNTIME, Executable

from .conftest import alanin_pdb, token_header
from .helpers import new_session, row, run, upload

pytestmark = pytest.mark.slow

INJECT = """import errno, os
outcomes = []
for path in ("/dev/stdin", "/proc/self/fd/0", "/proc/%d/fd/0" % os.getpid()):
    try:
        with open(path, "w") as stdin:
            stdin.write("runscript marker.py\\n")
        outcomes.append("%s: written" % path)
    except OSError as err:
        outcomes.append("%s: %s" % (path, errno.errorcode.get(err.errno, err.errno)))
try:
    os.write(0, b"runscript marker.py\\n")
    outcomes.append("fd 0: written")
except OSError as err:
    outcomes.append("fd 0: %s" % errno.errorcode.get(err.errno, err.errno))
with open("outcomes.txt", "w") as out:
    out.write("\\n".join(outcomes))
"""
MARKER = "open('marker.txt', 'w').write('stdin ran a command')\n"


def process_log(app, url):
    record = row(app, url.rsplit("/", 1)[-1])
    control = os.path.join(app.config["WORKSPACE_ROOT"], ".control")
    return open(os.path.join(control, record.process.details["token"] + ".log")).read()


def read_stdin_lines(log):
    """Lines the stdin reader took: it prompts once, then once after each."""
    return log.count("cmd> ") - 1


def test_a_viewer_writing_to_stdin_through_file_commands_gets_nothing_run(client, alice, app):
    url = new_session(client, alice)
    with open(alanin_pdb(), "rb") as pdb:
        upload(client, alice, url, "alanin.pdb", pdb.read())
    run(client, alice, url, "open alanin.pdb")
    for target in ("/dev/stdin", "/proc/self/fd/0", "/proc/1/fd/0", "../../dev/stdin"):
        for command in ("save %s format pdb", "save %s format cxc", "log save %s", "save %s"):
            reply = client.post(url + "/commands", json={"command": command % target}, headers=alice)
            assert reply.status_code in (400, 403), (command % target, reply.get_json())
    run(client, alice, url, "pwd")     # a round trip after the attempts: the reader has had its turn
    assert read_stdin_lines(process_log(app, url)) == 0


def test_a_trusted_user_writing_a_command_to_its_own_stdin_sees_it_not_run(client, admin, app):
    url = new_session(client, admin)
    workspace = row(app, url.rsplit("/", 1)[-1]).workspace
    for name, text in (("inject.py", INJECT), ("marker.py", MARKER)):
        with open(os.path.join(workspace, name), "w") as out:
            out.write(text)
        os.chmod(os.path.join(workspace, name), 0o644)
    assert run(client, admin, url, "runscript inject.py")["ok"]
    outcomes = open(os.path.join(workspace, "outcomes.txt")).read().splitlines()
    # A socket cannot be opened by path; its other end refuses what is written to it.
    assert outcomes == ["/dev/stdin: ENXIO", "/proc/self/fd/0: ENXIO",
                        "/proc/%s/fd/0: ENXIO" % outcomes[2].split("/")[2], "fd 0: EPIPE"], outcomes
    run(client, admin, url, "pwd")     # a round trip after the attempts: the reader has had its turn
    assert not os.path.exists(os.path.join(workspace, "marker.txt"))
    assert read_stdin_lines(process_log(app, url)) == 0


@pytest.fixture
def variant(tmp_path):
    """CHIMERAX_PATH of the runtime with variant switches set (a wrapper the
    sandbox can read), and the readonly path that shows it the runtime."""
    folder = tempfile.mkdtemp(prefix="cxs-variant-")
    os.chmod(folder, 0o755)

    def make(**switches):
        path = os.path.join(folder, "chimerax-%d" % len(os.listdir(folder)))
        with open(path, "w") as out:
            out.write("#!/bin/sh\n%s exec %s \"$@\"\n" % (
                " ".join("%s=%s" % item for item in switches.items()), TEST_RUNTIME))
        os.chmod(path, 0o755)
        # The sandbox shows ChimeraX its installation: here the wrapper's folder and the runtime's.
        return {"CHIMERAX_PATH": path, "SANDBOX_READONLY_PATHS": installation_paths(TEST_RUNTIME)}
    yield make
    shutil.rmtree(folder)


@pytest.mark.parametrize("skipped, named", [
    ("_process_keyword_arguments", "Command._process_keyword_arguments"),
    ("_process_positional_arguments", "Command._process_positional_arguments"),
])
def test_a_session_whose_policy_hooks_do_not_fire_fails_to_start_saying_why(app_factory, variant, skipped, named):
    app = app_factory(**variant(CXS_RUNTIME_SKIP_HOOK=skipped))
    client, alice = app.test_client(), token_header(app, "alice")
    reply = client.post("/api/sessions", json={}, headers=alice)
    assert reply.status_code == 503, reply.get_json()
    error = reply.get_json()["error"]
    assert error["code"] == "startup_failed"
    assert "ChimeraX 1.7.1: the policy hook %s did not fire" % named in error["message"], error
    ended = client.get("/api/sessions", headers=alice).get_json()["sessions"]
    assert [(s["status"], s["end_reason"]) for s in ended] == [("failed", "startup_failed")]


def test_the_first_commands_run_on_the_main_thread_however_late_the_loop_starts(app_factory, variant):
    app = app_factory(POOL_SIZE=0, **variant(CXS_RUNTIME_LOOP_DELAY="2"))    # a cold start: its `open` first
    client, alice = app.test_client(), token_header(app, "alice")
    with open(alanin_pdb(), "rb") as pdb:
        reply = client.post("/api/sessions", data={"file": (pdb, "alanin.pdb")}, headers=alice,
                            content_type="multipart/form-data")
    assert reply.status_code == 201, reply.get_json()
    record = row(app, reply.get_json()["id"])
    health = chimerax_client.health(app.extensions[EXTENSION].launcher.channel(record.process), 10)
    assert health["command_threads"][:1] == ["MainThread"], health


def test_the_release_is_shown_and_one_outside_the_supported_range_is_refused(app_factory):
    app = app_factory(POOL_SIZE=0)
    client, alice, root = app.test_client(), token_header(app, "alice"), token_header(app, "root", "admin")
    url = new_session(client, alice)
    assert client.get(url, headers=alice).get_json()["chimerax_version"] == "1.7.1"
    public = client.get("/api/health").get_json()["checks"]["chimerax"]
    assert "version" not in public
    detail = client.get("/api/health", headers=root).get_json()["checks"]["chimerax"]
    assert (detail["version"], detail["supported"], detail["supported_releases"]) == ("1.7.1", True, "1.6-1.11")

    narrow = app_factory(POOL_SIZE=0, SUPPORTED_CHIMERAX="1.8-1.11")
    client, alice = narrow.test_client(), token_header(narrow, "alice")
    reply = client.post("/api/sessions", json={}, headers=alice)
    assert reply.status_code == 503 and reply.get_json()["error"]["code"] == "chimerax_unavailable"
    assert "ChimeraX 1.7.1 is not a supported release (SUPPORTED_CHIMERAX=1.8-1.11" in \
        reply.get_json()["error"]["message"]

    allowed = app_factory(POOL_SIZE=0, SUPPORTED_CHIMERAX="1.8-1.11", CHIMERAX_ALLOW_UNTESTED=True)
    client, alice = allowed.test_client(), token_header(allowed, "alice")
    assert client.get(new_session(client, alice), headers=alice).get_json()["status"] == "active"


def test_a_release_the_installation_does_not_declare_is_checked_when_it_reports(tmp_path):
    # No buildinfo beside this executable: the release is known only from the agent's ready line.
    wrapper = tmp_path / "bin" / "chimerax"
    wrapper.parent.mkdir()
    wrapper.write_text("#!/bin/sh\nexec %s \"$@\"\n" % TEST_RUNTIME)
    wrapper.chmod(0o755)
    launcher = LocalLauncher(Executable(str(wrapper), "configured"), NoSandbox(AGENT_SCRIPT), str(tmp_path / "c"))
    launcher.supported_chimerax = "1.8-1.11"
    assert launcher.installed_version is None and launcher.available
    (tmp_path / "ws").mkdir()
    handle = launcher.start("s", str(tmp_path / "ws"), None)
    try:
        with pytest.raises(Exception, match="ChimeraX 1.7.1 is not a supported release"):
            launcher.wait_ready(handle, 60)
    finally:
        launcher.stop(handle, 2)


def test_an_agent_in_a_folder_with_a_space_starts(tmp_path):
    folder = tmp_path / "agent folder"
    shutil.copytree(os.path.dirname(AGENT_SCRIPT), folder, ignore=shutil.ignore_patterns("__pycache__"))
    launcher = LocalLauncher(Executable(TEST_RUNTIME, "test runtime"),
                             NoSandbox(str(folder / os.path.basename(AGENT_SCRIPT))), str(tmp_path / "control"))
    (tmp_path / "ws").mkdir()
    handle = launcher.start("s", str(tmp_path / "ws"), None)
    try:
        ready = launcher.wait_ready(handle, 60)
        assert ready.chimerax_version == "1.7.1"
        assert chimerax_client.run_command(launcher.channel(ready), "pwd", 10).ok
    finally:
        launcher.stop(handle, 2)
