"""Process failure modes, through the fake ChimeraX (real ChimeraX cannot fail
like this on demand): death during start-up, no readiness, ignoring SIGTERM."""
import os
import subprocess
import sys

import psutil
import pytest

from app.services.errors import StartupFailed
from app.services.processes.launchers import LocalLauncher, NoSandbox, local, spawn
from app.services.processes.locate import Executable
from app.store.models import ProcessHandle

from .conftest import FAKE_CHIMERAX, token_header, workspaces


def fake_executable(tmp_path, mode):
    path = tmp_path / ("fake-chimerax-" + mode)
    path.write_text("#!/bin/sh\nexec %s %s --mode %s \"$@\"\n" % (sys.executable, FAKE_CHIMERAX, mode))
    path.chmod(0o755)
    return str(path)


def fake_launcher(tmp_path, mode):
    return LocalLauncher(Executable(fake_executable(tmp_path, mode), "configured"), NoSandbox("agent.py"),
                         str(tmp_path / "control"))


def live_fakes():
    return [p for p in psutil.process_iter(["cmdline", "status"])
            if "fake_chimerax" in " ".join(p.info["cmdline"] or [])
            and p.info["status"] != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("mode, timeout", [("exit-at-start", 10.0), ("never-ready", 1.0)])
def test_failed_startup_is_503_and_leaves_nothing(app_factory, tmp_path, mode, timeout):
    # SANDBOX=none: the fake speaks the agent's TCP channel, the unsandboxed one (tests/fake_chimerax.py).
    app = app_factory(CHIMERAX_PATH=fake_executable(tmp_path, mode), STARTUP_TIMEOUT=timeout, SANDBOX="none")
    client = app.test_client()
    alice = token_header(app, "alice")
    response = client.post("/api/sessions", json={}, headers=alice)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "startup_failed"
    assert "Traceback" not in response.get_data(as_text=True)
    sessions = client.get("/api/sessions", headers=alice).get_json()["sessions"]
    assert [(s["status"], s["end_reason"]) for s in sessions] == [("failed", "startup_failed")]
    assert workspaces(app) == []
    assert os.listdir(os.path.join(app.config["WORKSPACE_ROOT"], ".control")) == []
    assert live_fakes() == []


def test_stop_escalates_to_sigkill_for_the_whole_group(tmp_path):
    launcher = fake_launcher(tmp_path, "stubborn")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    state = launcher.wait_ready(launcher.start("s1", str(workspace), None), 10)
    leader = psutil.Process(state.details["pid"])
    # the grandchild joins the leader's group
    group = [p for p in psutil.process_iter() if _pgid(p) == leader.pid]
    assert len(group) >= 2
    launcher.stop(state, grace=0.5)
    assert all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in group)
    assert launcher.poll(state) is not None


def test_identity_is_pid_and_create_time(tmp_path):
    launcher = fake_launcher(tmp_path, "serve")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    state = launcher.wait_ready(launcher.start("s2", str(workspace), None), 10)
    try:
        assert launcher.poll(state) is None
        impostor = ProcessHandle(dict(state.details, create_time=state.details["create_time"] - 1000,
                                      leader_create_time=state.details["leader_create_time"] - 1000))
        assert launcher.poll(impostor) is not None       # same pid, other process: not ours
        launcher.stop(impostor, grace=0.5)               # and never signalled
        assert launcher.poll(state) is None
    finally:
        launcher.stop(state, grace=2)
    assert launcher.poll(state) is not None


def test_launcher_reports_startup_failure_reason(tmp_path):
    launcher = fake_launcher(tmp_path, "exit-at-start")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with pytest.raises(StartupFailed, match="exited during start-up"):
        launcher.wait_ready(launcher.start("s3", str(workspace), None), 10)


def _pgid(proc):
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return None


def test_a_process_gone_before_it_is_identified_failed_its_start_up():
    # The race the Slurm job test met once: ChimeraX exits at once and its reaping
    # thread waits for it before start() reads its identity. Played here in order.
    proc = subprocess.Popen(["false"])
    proc.wait()
    with pytest.raises(StartupFailed, match=r"exited during start-up \(exit status 1\)"):
        spawn.identify(proc)
