"""A setting that cannot be used stops the start with a message naming it."""
import os
import subprocess
import sys

import pytest

from app.services.locate import PROJECT_ROOT


@pytest.mark.parametrize("name, value, message", [
    ("MAX_SESSIONS", "ten", "MAX_SESSIONS='ten' is not an integer"),
    ("SWEEP_INTERVAL", "1s", "SWEEP_INTERVAL='1s' is not a number"),
    ("ADOPT_ON_START", "ture", "ADOPT_ON_START='ture' is not a boolean"),
    ("ROLE_PROFILES", "user=viewr", "ROLE_PROFILES: unknown profile 'viewr' for role user"),
    ("ROLE_PROFILES", "boss=trusted", "ROLE_PROFILES: unknown role 'boss'"),
    ("ROLE_PROFILES", "user", "ROLE_PROFILES: 'user' is not of the form name=value"),
    ("DATABASE_URL", "mysql://x/y", "DATABASE_URL: backend 'mysql' is not supported"),
    ("DATABASE_URL", "not a url", "DATABASE_URL is not a SQLAlchemy URL"),
    ("SANDBOX", "bwrapp", "SANDBOX='bwrapp': use one of auto, bwrap, none"),
    ("CHIMERAX_PORT_RANGE", "80-90", "CHIMERAX_PORT_RANGE='80-90'"),
    ("MAX_SESSIONS", "0", "MAX_SESSIONS=0 must be greater than 0"),
])
def test_bad_settings_stop_the_start_naming_the_variable(tmp_path, name, value, message):
    env = dict(os.environ, APP_ENV="testing", DATABASE_PATH=str(tmp_path / "s.sqlite3"),
               WORKSPACE_ROOT=str(tmp_path / "w"), **{name: value})
    started = subprocess.run([sys.executable, "-c", "from app import create_app; create_app()"],
                             cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode != 0
    assert "ConfigError: " + message in started.stderr, started.stderr[-2000:]
