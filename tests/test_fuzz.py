"""schemathesis against the OpenAPI document of a live server: no server errors."""
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_schemathesis_finds_no_server_errors(gunicorn_server):
    # Small limits so generated creates hit 429/503 fast instead of spawning dozens.
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, MAX_SESSIONS=3, MAX_SESSIONS_PER_USER=2)
    token = server.token("fuzz")["Authorization"]
    cli = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    out = subprocess.run([cli, "run", server.url + "/api/openapi.json", "-H", "Authorization: " + token,
                          "--checks", "not_a_server_error", "-n", "25", "--request-timeout", "60"],
                         capture_output=True, text=True, timeout=900, env=dict(os.environ, NO_COLOR="1"))
    print(out.stdout[-3000:])
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "failed" not in out.stdout.split("Test cases:")[-1]
    assert "Traceback" not in server.log_text()
