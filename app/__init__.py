"""ChimeraX session service: the application factory."""
import hashlib
import logging
import os
import sys
import threading
from dataclasses import dataclass, field

from flask import Flask

from . import logs
from .services import policy, recovery
from .services.launchers import Launcher, LocalLauncher, choose_sandbox
from .services.launchers.local import Limits
from .services.locate import Executable, find_chimerax
from .services.pool import WarmPool
from .services.sessions import SessionService, parse_port_range
from .services.sweeper import Sweeper, SweeperSchedule
from .store import Store

log = logging.getLogger("cxs")


@dataclass
class Runtime:
    """What the app builds once and every request shares."""
    config: dict
    executable: Executable
    launcher: Launcher
    profiles: dict
    schedule: SweeperSchedule = None
    _local: threading.local = field(default_factory=threading.local)

    def session_service(self, store):
        return SessionService(store, self.launcher, self.config, store_factory=self.new_store,
                              profiles=self.profiles)

    def new_store(self):
        return Store(self.config["DATABASE_PATH"], self.config["STORE_BUSY_TIMEOUT"])

    def thread_store(self):
        """One connection per thread for request handling (a thread never shares it)."""
        store = getattr(self._local, "store", None)
        if store is not None and store.broken:
            store.close()
            store = None
        if store is None or store.pid != os.getpid():
            store = self._local.store = self.new_store()
        return store

    def make_sweeper(self):
        store = self.new_store()
        return Sweeper(self.session_service(store), self.config), store.close

    def make_pool(self):
        store = self.new_store()
        return WarmPool(store, self.launcher, self.config), store.close

    def _with_service(self, action, *args):
        store = self.new_store()
        try:
            return action(self.session_service(store), *args)
        finally:
            store.close()

    def recover(self):
        """Once per server start (gunicorn master, before workers): adopt or reap."""
        return self._with_service(recovery.recover, self.config["ADOPT_ON_START"])

    def shutdown(self):
        """Once per server stop: drain the pool; end every session if
        SHUTDOWN_TERMINATES_SESSIONS (else they wait to be adopted)."""
        return self._with_service(recovery.shutdown, self.config["SHUTDOWN_TERMINATES_SESSIONS"])

    def start_sweeper(self):
        """Called in each gunicorn worker after fork (gunicorn.conf.py); one of them leads."""
        if self.schedule is None and self.config["SWEEPER_ENABLED"]:
            self.schedule = SweeperSchedule(self.make_sweeper, self.config, self.make_pool)
            self.schedule.start()
        return self.schedule


def _configure_logging(level, fmt):
    root = logging.getLogger("cxs")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(logs.RequestIdFilter())
    handler.setFormatter(logs.JsonFormatter() if fmt == "json" else logs.TextFormatter(
        "%(asctime)s %(levelname)s [%(process)d] %(name)s %(request_id)s: %(message)s"))
    root.addHandler(handler)
    root.propagate = False
    root.setLevel(level)


def service_id(database_path):
    """One service = one store: its processes carry this id in their environment."""
    return hashlib.sha256(os.path.realpath(database_path).encode()).hexdigest()[:16]


AGENT_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "chimerax_agent", "agent.py")


def make_launcher(config, executable):
    path = executable.path if executable else None
    sandbox = choose_sandbox(config["SANDBOX"], path, AGENT_SCRIPT, config["SANDBOX_USER"],
                             config["SANDBOX_READONLY_PATHS"], config["SANDBOX_TMP_MB"])
    # RLIMIT_NPROC counts every process of a uid: only set for a uid of ChimeraX's own.
    limits = Limits(memory_mb=config["SESSION_MEMORY_MB"], file_mb=config["WORKSPACE_QUOTA_MB"],
                    open_files=config["SESSION_MAX_OPEN_FILES"],
                    processes=config["SANDBOX_MAX_PROCESSES"] if sandbox.owner else None)
    control = config["CONTROL_DIR"] or os.path.join(config["WORKSPACE_ROOT"], ".control")
    return LocalLauncher(path, sandbox, control, offscreen=config["CHIMERAX_OFFSCREEN"],
                         service_id=service_id(config["DATABASE_PATH"]), limits=limits)


def create_app(config=None, config_name=None):
    """Build the app. `config` is a mapping of overrides (tests pass one)."""
    import config as config_module
    app = Flask(__name__)
    app.config.from_object(config_module.config_class(config_name))
    if config:
        app.config.update(config)
    _configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    parse_port_range(app.config["CHIMERAX_PORT_RANGE"])   # fail at start, not at first create

    os.makedirs(app.config["WORKSPACE_ROOT"], mode=0o700, exist_ok=True)
    store = Store(app.config["DATABASE_PATH"])
    store.init_schema()
    store.close()

    executable = find_chimerax(app.config["CHIMERAX_PATH"])
    if executable is None:
        log.warning("no ChimeraX executable found: sessions cannot start "
                    "(set CHIMERAX_PATH or run `make chimerax`)")
    else:
        log.info("ChimeraX: %s (%s)", executable.path, executable.kind)
    launcher = make_launcher(app.config, executable)
    log.info("launcher: %s", launcher.describe())
    profiles = policy.default_profiles(app.config["VIEWER_ALLOW_EXTRA"], app.config["VIEWER_DENY"],
                                       app.config["ALLOW_FETCH"], app.config["SNAPSHOT_MAX_PIXELS"],
                                       app.config["SNAPSHOT_MAX_SUPERSAMPLE"])
    app.extensions["chimerax_sessions"] = Runtime(app.config, executable, launcher, profiles)

    from . import cli
    from .middleware import auth, errors, request_log
    from .routes import docs, health, metrics, sessions
    request_log.init_app(app)
    auth.init_app(app)
    errors.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(sessions.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(docs.docs_blueprint())
    cli.init_app(app)
    return app
