"""The service as a package: `pip install .` into a fresh virtualenv, then gunicorn
started from another directory runs a session (the agent ships in the package)
and `bench` is not installed. The fresh environment borrows the project
virtualenv's dependencies through a path file (the registry is not asked
again), never the checkout itself."""
import glob
import os
import shutil
import subprocess
import sys

import pytest
import requests

from app.services.processes.locate import PROJECT_ROOT, TEST_RUNTIME

from .conftest import free_port, wait_until

pytestmark = pytest.mark.slow


def site_packages(prefix):
    return glob.glob(os.path.join(prefix, "lib", "python*", "site-packages"))[0]


@pytest.fixture
def installed(tmp_path):
    venv = tmp_path / "venv"
    # Its own pip (ensurepip, offline): a pip of the project virtualenv installing with --prefix
    # would uninstall the project from that virtualenv first.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    # Dependencies from the project's virtualenv; a plain path line does not run
    # that folder's own .pth files, so its editable link to the checkout stays out.
    with open(os.path.join(site_packages(str(venv)), "deps.pth"), "w") as pth:
        pth.write(site_packages(sys.prefix) + "\n")
    # From a copy of the sources: a build writes beside them (egg-info, build/).
    source = tmp_path / "source"
    shutil.copytree(PROJECT_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".chimerax", "instance", "node_modules", "*.egg-info", "build", "__pycache__"))
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                    "--no-cache-dir", str(source)], check=True, timeout=300, cwd=str(tmp_path))
    return python


def test_pip_install_then_gunicorn_elsewhere_runs_a_session(installed, tmp_path):
    from importlib import metadata
    assert metadata.distribution("chimerax-sessions")      # the project's own virtualenv keeps it
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([installed, "-c", "import app, chimerax_agent, importlib.util as u; "
                            "print(app.__file__); print(chimerax_agent.AGENT_SCRIPT); print(u.find_spec('bench'))"],
                           cwd=str(elsewhere), capture_output=True, text=True, check=True).stdout.split("\n")
    assert not where[0].startswith(PROJECT_ROOT) and "site-packages" in where[0]
    assert os.path.isfile(where[1]) and not where[1].startswith(PROJECT_ROOT)
    assert where[2] == "None"
    port = free_port()
    env = dict(os.environ, APP_ENV="production", DATABASE_PATH=str(tmp_path / "store.sqlite3"),
               WORKSPACE_ROOT=str(tmp_path / "workspaces"), CHIMERAX_PATH=TEST_RUNTIME, POOL_SIZE="0",
               SWEEPER_ENABLED="false", LOG_LEVEL="WARNING")
    token = subprocess.run([installed, "-m", "flask", "--app", "wsgi", "tokens", "create", "--user", "alice"],
                           cwd=str(elsewhere), env=env, capture_output=True, text=True, check=True, timeout=120
                           ).stdout.strip().splitlines()[-1]
    log = open(tmp_path / "gunicorn.log", "wb")
    server = subprocess.Popen([installed, "-m", "gunicorn", "-w", "1", "--worker-class", "app.gunicorn_worker.Worker",
                               "--threads", "4", "-b", "127.0.0.1:%d" % port, "wsgi:app"],
                              cwd=str(elsewhere), env=env, stdout=log, stderr=subprocess.STDOUT)
    url, headers = "http://127.0.0.1:%d" % port, {"Authorization": "Bearer " + token}
    try:
        def up():
            assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
            try:
                return requests.get(url + "/api/health", timeout=1).status_code == 200
            except requests.RequestException:
                return False
        wait_until(up, 60, message="the installed service to answer")
        created = requests.post(url + "/api/sessions", json={}, headers=headers, timeout=60)
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        ran = requests.post(url + "/api/sessions/%s/commands" % sid, json={"command": "pwd"}, headers=headers,
                            timeout=60)
        assert ran.status_code == 200 and ran.json()["ok"], ran.text
        assert requests.delete(url + "/api/sessions/" + sid, headers=headers, timeout=60).status_code == 204
    finally:
        server.terminate()
        server.wait(30)
        log.close()
