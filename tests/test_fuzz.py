"""The API contract, tried as a portal developer would: schemathesis against
the live document of a gunicorn server running the real runtime, with every
check it has (schema-valid requests accepted, invalid ones rejected, every
status, header and body as documented, use after delete...), its stateful
phase on, as a user and as an admin: no failure of any kind."""
import os
import random
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
EXAMPLES = 100
# Each run draws its seed (printed, and named in a failure); CXS_FUZZ_SEED replays one.
SEED = int(os.environ.get("CXS_FUZZ_SEED") or random.SystemRandom().randrange(2**31))


@pytest.mark.parametrize("role", ["user", "admin"])
def test_schemathesis_all_checks_pass(gunicorn_server, tmp_path, role, capsys):
    # The per-user limit (429, documented) binds long before the host's
    # capacity (503, a server error to schemathesis): generated creates stay cheap.
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=5, MAX_SESSIONS=12, MAX_SESSIONS_PER_USER=4)
    token = server.token("fuzz-" + role, role)["Authorization"]
    cli = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    config = os.path.join(os.path.dirname(__file__), "schemathesis.toml")
    out = subprocess.run([cli, "--config-file", config, "run", server.url + "/api/openapi.json", "-H", "Authorization: " + token,
                          "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
                          "--max-examples", str(EXAMPLES), "--seed", str(SEED), "--request-timeout", "60",
                          "--report", "junit", "--report-dir", str(tmp_path), "--output-truncate", "false"],
                         capture_output=True, text=True, timeout=1200, cwd=tmp_path,
                         env=dict(os.environ, NO_COLOR="1"))
    summary = out.stdout.split("SUMMARY")[-1]
    # Shown in every run's output, passed or failed, so a run can be replayed.
    with capsys.disabled():
        print("\nschemathesis seed %d as %s (CXS_FUZZ_SEED=%d replays it)" % (SEED, role, SEED))
    print(out.stdout[-4000:])
    assert out.returncode == 0, "seed %d: %s" % (SEED, out.stdout[-8000:] + out.stderr[-2000:])
    assert "Stateful" in out.stdout and "Failures:" not in summary
    assert "Traceback" not in server.log_text()
