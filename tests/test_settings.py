"""A setting that cannot be used stops the start with a message naming it."""
import os
import re
import subprocess
import sys

import pytest

from app.services.policy import profiles as policy
from app.services.processes.locate import PROJECT_ROOT
from app.settings import check_settings
import config


@pytest.mark.parametrize("name, value, message", [
    ("MAX_SESSIONS", "ten", "MAX_SESSIONS='ten' is not an integer"),
    ("SWEEP_INTERVAL", "1s", "SWEEP_INTERVAL='1s' is not a number"),
    ("ADOPT_ON_START", "ture", "ADOPT_ON_START='ture' is not a boolean"),
])
def test_values_of_the_wrong_type_name_their_variable(name, value, message):
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        config.values({name: value})


@pytest.mark.parametrize("overrides, message", [
    ({"ROLE_PROFILES": {"user": "viewr"}}, "ROLE_PROFILES: unknown profile 'viewr' for role user"),
    ({"ROLE_PROFILES": {"boss": "trusted"}}, "ROLE_PROFILES: unknown role 'boss'"),
    ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL: backend 'mysql' is not supported"),
    ({"DATABASE_URL": "not a url"}, "DATABASE_URL is not a SQLAlchemy URL"),
    ({"LAUNCHER": "slurm", "SLURM_PENDING_TIMEOUT": 0}, "SLURM_PENDING_TIMEOUT=0 must be greater than 0"),
    ({"LAUNCHER": "slurm", "SLURM_EXTRA_ARGS": "--qos 'x"}, "SLURM_EXTRA_ARGS="),
    ({"LAUNCHER": "slurm", "SLURM_SCRIPT_TEMPLATE": "/nonexistent"}, "SLURM_SCRIPT_TEMPLATE='/nonexistent' is not"),
    ({"LAUNCHER": "kubernetes"}, "LAUNCHER='kubernetes': use one of local, slurm"),
    ({"SANDBOX": "bwrapp"}, "SANDBOX='bwrapp': use one of auto, bwrap, none"),
    ({"CHIMERAX_PORT_RANGE": "80-90"}, "CHIMERAX_PORT_RANGE='80-90'"),
    ({"MAX_SESSIONS": 0}, "MAX_SESSIONS=0 must be greater than 0"),
    ({"HOST_ID": " "}, "HOST_ID must not be empty"),
])
def test_unusable_combinations_name_their_variable(overrides, message):
    settings = {k: v for k, v in vars(config.Config).items() if k.isupper()}
    settings.update(overrides)
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        check_settings(settings, policy.default_profiles())


def test_the_default_configuration_passes():
    check_settings({k: v for k, v in vars(config.Config).items() if k.isupper()}, policy.default_profiles())


def test_a_bad_value_in_the_environment_stops_the_start(tmp_path):
    env = dict(os.environ, APP_ENV="testing", DATABASE_PATH=str(tmp_path / "s.sqlite3"),
               WORKSPACE_ROOT=str(tmp_path / "w"), ROLE_PROFILES="user")
    started = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "current"],
                             cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode != 0
    assert "ConfigError: ROLE_PROFILES: 'user' is not of the form name=value" in started.stderr
