"""One declaration per setting (config.SETTINGS): loading, the error naming the
variable, the whole-configuration checks and the docs' table all come from it."""
import os
import re

import pytest

from app.services.processes.launchers import LAUNCHERS
from app.settings import CHOICES, NOT_NEGATIVE, POSITIVE
import config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_docs_configuration_table_is_the_generated_one():
    readme = open(os.path.join(ROOT, "docs", "configuration.md")).read()
    block = re.search(r"<!-- configuration:begin.*?-->\n(.*?)\n<!-- configuration:end -->", readme, re.S)
    assert block, "docs/configuration.md lacks the generated table"
    assert block.group(1) == config.markdown()


def test_every_app_setting_is_declared_once_and_loaded():
    names = [s.name for s in config.SETTINGS]
    assert len(names) == len(set(names))
    declared = {s.name for s in config.SETTINGS if not s.server}
    loaded = {name for name in dir(config.Config) if name.isupper() and name != "TESTING"}
    assert loaded == declared
    assert all(s.doc for s in config.SETTINGS)


def test_checks_come_from_the_declarations():
    assert set(CHOICES["LAUNCHER"]) == set(LAUNCHERS)
    assert "MAX_SESSIONS" in POSITIVE and "POOL_SIZE" in NOT_NEGATIVE and CHOICES["IDLE_ACTION"]


@pytest.mark.parametrize("name,raw,message", [
    ("MAX_SESSIONS", "ten", "MAX_SESSIONS='ten' is not an integer"),
    ("ADOPT_ON_START", "ture", "ADOPT_ON_START='ture' is not a boolean"),
    ("STARTUP_TIMEOUT", "soon", "STARTUP_TIMEOUT='soon' is not a number"),
    ("ROLE_PROFILES", "user", "ROLE_PROFILES: 'user' is not of the form name=value"),
])
def test_a_value_that_cannot_be_read_names_its_variable(name, raw, message):
    setting = next(s for s in config.SETTINGS if s.name == name)
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        setting.read({name: raw})


def test_values_read_from_the_environment():
    read = config.values({"MAX_SESSIONS": "7", "ALLOW_FETCH": "yes", "TRUSTED_PROXIES": "10.0.0.1, 10.0.0.2"})
    assert read["MAX_SESSIONS"] == 7 and read["ALLOW_FETCH"] is True
    assert read["TRUSTED_PROXIES"] == ["10.0.0.1", "10.0.0.2"] and read["POOL_SIZE"] == 2
    assert config.server_setting("WORKERS", {"WORKERS": "3"}) == 3
