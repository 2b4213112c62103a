"""The README's curl walkthrough, run verbatim (but for the address) against real
gunicorn at the defaults `make run` serves: four gthread workers, the warm pool
(POOL_SIZE=2) filling from the server's start, IDLE_ACTION=suspend, the bwrap
sandbox, the sweeper on."""
import os
import re
import subprocess
import threading

import pytest
import requests

from app.services.processes.locate import PROJECT_ROOT

from .conftest import wait_until

pytestmark = pytest.mark.slow


def walkthrough():
    readme = open(os.path.join(PROJECT_ROOT, "README.md")).read()
    section = readme.split("### Walkthrough with curl", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_readme_walkthrough_works(gunicorn_server, tmp_path):
    server = gunicorn_server()
    script = walkthrough().replace("http://127.0.0.1:8000", server.url)
    # the walkthrough's flask command must reach the same store as the server
    env = dict(server.env, PATH=os.path.dirname(os.path.abspath(os.sys.executable)) + ":" + os.environ["PATH"])
    # It runs while the pool fills: what the store's pool held meanwhile, sampled.
    pool_seen, walking = set(), threading.Event()

    def sample():
        while not walking.wait(0.05):
            pool_seen.update(entry.status.value for entry in server.pool())
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=PROJECT_ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    finally:
        walking.set()
        sampler.join(10)
    assert out.returncode == 0, out.stdout + out.stderr
    assert pool_seen, "the pool had no entries while the walkthrough ran"
    assert '"status":"active"' in out.stdout.replace(" ", "")
    assert '"ok":true' in out.stdout.replace(" ", "")
    assert "Current working directory is" in out.stdout
    assert '"expires_at"' in out.stdout
    assert out.stdout.strip().endswith("204")
    assert not os.path.exists(os.path.join(PROJECT_ROOT, "session.json"))
    # An operator's look afterwards: the overview counts the pool, full again.
    admin = server.token("boss", "admin")

    def pool_full():
        reply = requests.get(server.url + "/api/admin/overview", headers=admin, timeout=10)
        assert reply.status_code == 200, reply.text
        return reply.json()["pool"] == {"ready": 2}
    wait_until(pool_full, 60, message="the overview to count the pool full again")
