"""The README's curl walkthrough, run verbatim (but for the address) against real gunicorn."""
import os
import re
import subprocess

import pytest

from app.services.locate import PROJECT_ROOT

pytestmark = pytest.mark.slow


def walkthrough():
    readme = open(os.path.join(PROJECT_ROOT, "README.md")).read()
    section = readme.split("### Walkthrough with curl", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_readme_walkthrough_works(gunicorn_server, tmp_path):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60)
    script = walkthrough().replace("http://127.0.0.1:8000", server.url)
    # the walkthrough's flask command must reach the same store as the server
    env = dict(server.env, PATH=os.path.dirname(os.path.abspath(os.sys.executable)) + ":" + os.environ["PATH"])
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=PROJECT_ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert '"status":"active"' in out.stdout.replace(" ", "")
    assert '"ok":true' in out.stdout.replace(" ", "")
    assert "Current working directory is" in out.stdout
    assert '"expires_at"' in out.stdout
    assert out.stdout.strip().endswith("204")
    assert not os.path.exists(os.path.join(PROJECT_ROOT, "session.json"))
