"""Checks of the configuration as a whole, at start: a value that cannot be
used stops the service with a message naming its variable (config.py checks
the types of values read from the environment)."""
import os
import shlex
from urllib.parse import urlsplit

import sqlalchemy as sa

from config import SETTINGS, ConfigError

from .services.processes import versions
from .services.processes.launchers import LAUNCHERS
from .services.processes.launchers.ports import parse_port_range
from .store.models import ROLES

BACKENDS = ("sqlite", "postgresql")
# Bounds and choices come from each setting's declaration (config.SETTINGS).
CHOICES = {s.name: s.choices for s in SETTINGS if s.choices and not s.server}
POSITIVE = tuple(s.name for s in SETTINGS if s.positive and not s.server)
NOT_NEGATIVE = tuple(s.name for s in SETTINGS if s.not_negative and not s.server)


def check_settings(config, profiles):
    if set(LAUNCHERS) != set(CHOICES["LAUNCHER"]):
        raise ConfigError("LAUNCHER's declared choices %s are not the launchers %s" % (CHOICES["LAUNCHER"],
                                                                                      sorted(LAUNCHERS)))
    for name, allowed in CHOICES.items():
        if config[name] not in allowed:
            raise ConfigError("%s=%r: use one of %s" % (name, config[name], ", ".join(allowed)))
    for name in POSITIVE:
        if not config[name] > 0:
            raise ConfigError("%s=%r must be greater than 0" % (name, config[name]))
    for name in NOT_NEGATIVE:
        if config[name] < 0:
            raise ConfigError("%s=%r must not be negative" % (name, config[name]))
    for role, profile in config["ROLE_PROFILES"].items():
        if role not in ROLES:
            raise ConfigError("ROLE_PROFILES: unknown role %r (roles: %s)" % (role, ", ".join(ROLES)))
        if profile not in profiles:
            raise ConfigError("ROLE_PROFILES: unknown profile %r for role %s (profiles: %s)"
                              % (profile, role, ", ".join(sorted(profiles))))
    try:
        parse_port_range(config["CHIMERAX_PORT_RANGE"])
    except ValueError as err:
        raise ConfigError("CHIMERAX_PORT_RANGE=%r: %s" % (config["CHIMERAX_PORT_RANGE"], err)) from None
    try:
        versions.parse_range(config["SUPPORTED_CHIMERAX"])
    except ValueError as err:
        raise ConfigError("SUPPORTED_CHIMERAX=%r: %s" % (config["SUPPORTED_CHIMERAX"], err)) from None
    if config.get("DATABASE_URL"):
        try:
            backend = sa.engine.make_url(config["DATABASE_URL"]).get_backend_name()
        except sa.exc.ArgumentError:
            raise ConfigError("DATABASE_URL is not a SQLAlchemy URL (e.g. "
                              "postgresql+psycopg://user@host/db)") from None
        if backend not in BACKENDS:
            raise ConfigError("DATABASE_URL: backend %r is not supported (use %s)"
                              % (backend, " or ".join(BACKENDS)))
    if not str(config["HOST_ID"]).strip():
        raise ConfigError("HOST_ID must not be empty")
    if config["LAUNCHER"] == "slurm":
        _check_slurm(config)
    _check_webhooks(config)


def _check_webhooks(config):
    for url in config["WEBHOOK_URLS"]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("WEBHOOK_URLS: %r is not an http(s) URL" % url)
    # Unsigned events would let anyone who reaches a receiver forge them.
    if config["WEBHOOK_URLS"] and not config["WEBHOOK_SECRET"]:
        raise ConfigError("WEBHOOK_SECRET must be set with WEBHOOK_URLS (it signs every event)")


def _check_slurm(config):
    for name in ("SLURM_PENDING_TIMEOUT", "SLURM_POLL_INTERVAL"):
        if not config[name] > 0:
            raise ConfigError("%s=%r must be greater than 0" % (name, config[name]))
    try:
        shlex.split(config["SLURM_EXTRA_ARGS"])
    except ValueError as err:
        raise ConfigError("SLURM_EXTRA_ARGS=%r: %s" % (config["SLURM_EXTRA_ARGS"], err)) from None
    template = config["SLURM_SCRIPT_TEMPLATE"]
    if template and not os.path.isfile(template):
        raise ConfigError("SLURM_SCRIPT_TEMPLATE=%r is not a file" % template)
