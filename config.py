"""Configuration: every setting has a default here and an environment override.

`create_app()` takes one of the classes below (chosen by APP_ENV, default
production) and then a mapping of overrides; tests pass a mapping.
"""
import os
import socket

HERE = os.path.dirname(os.path.abspath(__file__))
BOOLEANS = {"1": True, "true": True, "yes": True, "on": True,
            "0": False, "false": False, "no": False, "off": False}


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable."""


def _env(name, default, cast=str):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if cast is bool:
        value = BOOLEANS.get(raw.strip().lower())
        if value is None:
            raise ConfigError("%s=%r is not a boolean (use one of: %s)" % (name, raw, ", ".join(BOOLEANS)))
        return value
    try:
        return cast(raw.strip())
    except ValueError:
        raise ConfigError("%s=%r is not %s" % (name, raw, "an integer" if cast is int else "a number")) \
            from None


def _pairs(name, default):
    raw = _env(name, default)
    pairs = {}
    for part in _list(raw):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError("%s: %r is not of the form name=value" % (name, part))
        pairs[key.strip()] = value.strip()
    return pairs


def _list(raw):
    return [part.strip() for part in raw.split(",") if part.strip()]


class Config:
    # Store and files (README "Operating"): a SQLAlchemy URL; DATABASE_PATH is
    # the shorthand for a SQLite file, used when DATABASE_URL is empty.
    DATABASE_URL = _env("DATABASE_URL", "")
    DATABASE_PATH = _env("DATABASE_PATH", os.path.join(HERE, "instance", "sessions.sqlite3"))
    HOST_ID = _env("HOST_ID", socket.gethostname())    # this instance, among those sharing the store
    WORKSPACE_ROOT = _env("WORKSPACE_ROOT", os.path.join(HERE, "instance", "workspaces"))

    # ChimeraX processes
    LAUNCHER = _env("LAUNCHER", "local")               # where they run: local (this machine) | slurm
    CHIMERAX_PATH = _env("CHIMERAX_PATH", "")          # empty: search the usual places
    CHIMERAX_PORT_RANGE = _env("CHIMERAX_PORT_RANGE", "6100-6199")  # or "0": ChimeraX picks
    CHIMERAX_OFFSCREEN = _env("CHIMERAX_OFFSCREEN", True, bool)
    STARTUP_TIMEOUT = _env("STARTUP_TIMEOUT", 60.0, float)
    COMMAND_TIMEOUT = _env("COMMAND_TIMEOUT", 30.0, float)          # s the API waits for a reply
    COMMAND_MAX_RUNTIME = _env("COMMAND_MAX_RUNTIME", 600.0, float)  # s a command may run at all
    STOP_GRACE_PERIOD = _env("STOP_GRACE_PERIOD", 5.0, float)

    # The OS sandbox around each ChimeraX (README "Threat model")
    SANDBOX = _env("SANDBOX", "auto")                  # auto (bwrap where it works) | bwrap | none
    SANDBOX_USER = _env("SANDBOX_USER", "cxs-sandbox")  # ChimeraX's own uid when the service is root
    SANDBOX_READONLY_PATHS = _list(_env("SANDBOX_READONLY_PATHS", ""))
    SANDBOX_TMP_MB = _env("SANDBOX_TMP_MB", 64, int)   # private /tmp (and $HOME) inside
    SANDBOX_MAX_PROCESSES = _env("SANDBOX_MAX_PROCESSES", 4096, int)  # all processes of SANDBOX_USER
    SESSION_MEMORY_MB = _env("SESSION_MEMORY_MB", 4096, int)   # address space of each ChimeraX process
    SESSION_MAX_OPEN_FILES = _env("SESSION_MAX_OPEN_FILES", 1024, int)
    CONTROL_DIR = _env("CONTROL_DIR", "")      # empty: <WORKSPACE_ROOT>/.control

    # LAUNCHER=slurm (docs/scaling.md): one job per session; WORKSPACE_ROOT
    # and CONTROL_DIR on a file system the nodes share.
    SLURM_PARTITION = _env("SLURM_PARTITION", "")      # empty: the cluster's default
    SLURM_ACCOUNT = _env("SLURM_ACCOUNT", "")
    SLURM_EXTRA_ARGS = _env("SLURM_EXTRA_ARGS", "")    # more sbatch options, shell-quoted
    SLURM_PENDING_TIMEOUT = _env("SLURM_PENDING_TIMEOUT", 300.0, float)  # s a job may wait in the queue
    SLURM_POLL_INTERVAL = _env("SLURM_POLL_INTERVAL", 5.0, float)  # s between squeue calls of a process
    SLURM_SCRIPT_TEMPLATE = _env("SLURM_SCRIPT_TEMPLATE", "")   # empty: the shipped session.sbatch
    SLURM_CONF = _env("SLURM_CONF", "")                # empty: Slurm's own default
    SLURM_CLUSTER = _env("SLURM_CLUSTER", "default")   # names the cluster's sessions in the store
    SLURM_BIND_ADDRESS = _env("SLURM_BIND_ADDRESS", "")  # empty: each node's NodeAddr

    # Sessions and limits
    MAX_SESSIONS = _env("MAX_SESSIONS", 10, int)
    MAX_SESSIONS_PER_USER = _env("MAX_SESSIONS_PER_USER", 3, int)
    SESSION_IDLE_TIMEOUT = _env("SESSION_IDLE_TIMEOUT", 1800, int)
    SESSION_IDLE_TIMEOUT_MIN = _env("SESSION_IDLE_TIMEOUT_MIN", 1, int)
    SESSION_IDLE_TIMEOUT_MAX = _env("SESSION_IDLE_TIMEOUT_MAX", 86400, int)
    SESSION_MAX_LIFETIME = _env("SESSION_MAX_LIFETIME", 86400, int)
    ACTIVITY_WRITE_INTERVAL = _env("ACTIVITY_WRITE_INTERVAL", 5.0, float)
    MAX_CONTENT_LENGTH = _env("MAX_CONTENT_LENGTH", 1024 * 1024, int)
    MAX_COMMAND_LENGTH = _env("MAX_COMMAND_LENGTH", 10000, int)
    MAX_UPLOAD_BYTES = _env("MAX_UPLOAD_BYTES", 50 * 1024 * 1024, int)
    WORKSPACE_QUOTA_MB = _env("WORKSPACE_QUOTA_MB", 200, int)
    SNAPSHOT_MAX_PIXELS = _env("SNAPSHOT_MAX_PIXELS", 4096, int)       # per side
    SNAPSHOT_MAX_SUPERSAMPLE = _env("SNAPSHOT_MAX_SUPERSAMPLE", 4, int)
    # What one render draws, width x height x supersample² pixels, for the snapshot
    # route and every image `save`: ChimeraX draws the width x height image
    # supersample² times (its time), in about 28 bytes of address space a pixel
    # of width x height (measured; README "Configuration").
    RENDER_MAX_PIXELS = _env("RENDER_MAX_PIXELS", 4096 * 4096, int)
    SCENE_MAX_BYTES = _env("SCENE_MAX_BYTES", 50 * 1024 * 1024, int)   # a scene.glb larger: 413
    HISTORY_MAX = _env("HISTORY_MAX", 1000, int)       # commands kept per session (oldest go first)

    # Warm pool: ready processes waiting for sessions (0 disables)
    POOL_SIZE = _env("POOL_SIZE", 2, int)
    POOL_MAX_AGE = _env("POOL_MAX_AGE", 3600, int)            # s before a pooled process is recycled
    POOL_CHECK_INTERVAL = _env("POOL_CHECK_INTERVAL", 1.0, float)

    # Suspend and resume: a suspended session keeps its workspace and a saved
    # ChimeraX session file, and no process.
    IDLE_ACTION = _env("IDLE_ACTION", "suspend")           # at the idle timeout: suspend | terminate
    AUTO_RESUME = _env("AUTO_RESUME", True, bool)          # a command or heartbeat resumes it
    MAX_SUSPENDED_PER_USER = _env("MAX_SUSPENDED_PER_USER", 10, int)
    SUSPENDED_RETENTION = _env("SUSPENDED_RETENTION", 7 * 86400, int)   # s, then deleted
    SUSPEND_DIR = _env("SUSPEND_DIR", "")      # empty: <WORKSPACE_ROOT>/.suspended (the service's only)

    # Reliability
    FAILED_RETENTION = _env("FAILED_RETENTION", 3600, int)   # s a failed session's files stay
    MAX_RSS_MB = _env("MAX_RSS_MB", 0, int)                   # per ChimeraX; 0 = no limit
    ADOPT_ON_START = _env("ADOPT_ON_START", True, bool)
    SHUTDOWN_TERMINATES_SESSIONS = _env("SHUTDOWN_TERMINATES_SESSIONS", False, bool)
    STORE_BUSY_TIMEOUT = _env("STORE_BUSY_TIMEOUT", 5.0, float)

    # Sweeper
    SWEEPER_ENABLED = _env("SWEEPER_ENABLED", True, bool)
    SWEEP_INTERVAL = _env("SWEEP_INTERVAL", 30.0, float)
    HEALTH_CHECK_TIMEOUT = _env("HEALTH_CHECK_TIMEOUT", 5.0, float)
    HEALTH_CHECK_FAILURES = _env("HEALTH_CHECK_FAILURES", 3, int)

    # Auth
    TRUSTED_PROXIES = _list(_env("TRUSTED_PROXIES", ""))
    ADMIN_USERS = _list(_env("ADMIN_USERS", ""))   # trusted-proxy users with the admin role

    # Command policy (see README "Command policy"): role -> profile; the
    # viewer profile's allowlist can be widened or narrowed by name.
    ROLE_PROFILES = _pairs("ROLE_PROFILES", "user=viewer,admin=trusted")
    VIEWER_ALLOW_EXTRA = _list(_env("VIEWER_ALLOW_EXTRA", ""))
    VIEWER_DENY = _list(_env("VIEWER_DENY", ""))
    ALLOW_FETCH = _env("ALLOW_FETCH", False, bool)

    METRICS_TOKEN = _env("METRICS_TOKEN", "")     # bearer token for /metrics besides admin tokens

    LOG_LEVEL = _env("LOG_LEVEL", "INFO")
    LOG_FORMAT = _env("LOG_FORMAT", "text")        # "text" or "json"
    TESTING = False


class DevelopmentConfig(Config):
    LOG_LEVEL = _env("LOG_LEVEL", "DEBUG")


class TestingConfig(Config):
    TESTING = True
    # The tests of idle sessions ending predate suspend; those of suspend ask for it.
    IDLE_ACTION = _env("IDLE_ACTION", "terminate")
    SWEEPER_ENABLED = _env("SWEEPER_ENABLED", False, bool)
    STOP_GRACE_PERIOD = _env("STOP_GRACE_PERIOD", 2.0, float)


class ProductionConfig(Config):
    pass


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_class(name=None):
    return CONFIGS[(name or os.environ.get("APP_ENV") or "production").lower()]
