"""The application factory: builds the app, its runtime and its scheduler."""
from dataclasses import dataclass, field
import logging
import os
import sys
import threading

from flask import Flask

from . import logs
from .services.policy import profiles as policy
from .services.processes.launchers import Launcher, build_launcher, launcher_domain
from .services.processes.pool import WarmPool
from .services.sessions.service import SessionService
from .services.upkeep import recovery
from .services.upkeep.sweeper import Sweeper, SweeperSchedule
from .services.webhooks.delivery import WEBHOOK_INTERVAL, Sender
from .settings import check_settings
from .store import Store, database, database_url, leader_lock, schema
from .store.database import dispose_all
from .store.leader import webhook_lock

log = logging.getLogger("cxs")


@dataclass
class Runtime:
    """What the app builds once and every request shares."""
    config: dict
    launcher: Launcher
    profiles: dict
    url: str
    schema_problem: str | None = None       # set when the database is not at this code's revision
    schedule: SweeperSchedule | None = None
    _local: threading.local = field(default_factory=threading.local)

    def session_service(self, store):
        return SessionService(store, self.launcher, self.config, store_factory=self.new_store,
                              profiles=self.profiles)

    def new_store(self):
        return Store(self.url, self.config["STORE_BUSY_TIMEOUT"], self.config["SESSION_VIEW_CACHE_SECONDS"])

    def thread_store(self):
        """This thread's store handle (see Store.end_request for its connection)."""
        store = getattr(self._local, "store", None)
        if store is None or store.pid != os.getpid():
            store = self._local.store = self.new_store()
        return store

    def release_thread_store(self):
        store = getattr(self._local, "store", None)
        if store is not None:
            store.end_request()

    def require_schema(self):
        """Refuse to serve a database this code was not written for (gunicorn's start)."""
        if self.schema_problem:
            raise schema.SchemaMismatch(self.schema_problem)

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
        self.require_schema()
        try:
            return self._with_service(recovery.recover, self.config["ADOPT_ON_START"])
        finally:
            dispose_all()       # no pooled connection may cross the fork into the workers

    def shutdown(self):
        """Once per server stop: drain the pool; end every session if
        SHUTDOWN_TERMINATES_SESSIONS (else they wait to be adopted)."""
        return self._with_service(recovery.shutdown, self.config["SHUTDOWN_TERMINATES_SESSIONS"])

    def start_sweeper(self):
        """Called in each gunicorn worker after fork (gunicorn.conf.py); one process
        per launcher domain leads, across every instance sharing the store, and
        one sends the webhooks."""
        if self.schedule is None and self.config["SWEEPER_ENABLED"]:
            webhooks = (Sender(self.new_store, self.config), webhook_lock(self.url), WEBHOOK_INTERVAL)
            self.schedule = SweeperSchedule(self.make_sweeper, self.config,
                                            leader_lock(self.url, self.launcher.domain), self.make_pool, webhooks)
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


def _open_database(url, host_id, domain, busy_timeout):
    """Create the schema on an empty database; anything but the head is
    reported (and refused at server start), so `flask db upgrade` still runs."""
    schema.prepare(url, host_id=host_id, domain=domain)
    try:
        schema.check(url)
    except schema.SchemaMismatch as err:
        log.error("%s", err)
        return str(err), None
    store = Store(url, busy_timeout)
    try:
        return None, store.service_id()
    finally:
        store.close()


class App(Flask):
    """Flask, remembering which hooks and views are plain functions: Flask asks
    `inspect` again for each of them on every request. Being a coroutine
    function is a flag of a function's code, so its code object is the key
    (bounded by the program's code, however many functions a request makes)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._plain_code = {}

    def ensure_sync(self, func):
        code = getattr(func, "__code__", None)
        plain = self._plain_code.get(code)
        if plain:
            return func
        synced = super().ensure_sync(func)
        if code is not None:
            self._plain_code[code] = synced is func
        return synced


def create_app(config=None, config_name=None):
    """Build the app. `config` is a mapping of overrides (tests pass one)."""
    import config as config_module
    app = App(__name__)
    app.config.from_object(config_module.config_class(config_name))
    if config:
        app.config.update(config)
    _configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    profiles = policy.default_profiles(app.config["VIEWER_ALLOW_EXTRA"], app.config["VIEWER_DENY"],
                                       app.config["ALLOW_FETCH"], app.config["SNAPSHOT_MAX_PIXELS"],
                                       app.config["SNAPSHOT_MAX_SUPERSAMPLE"], app.config["RENDER_MAX_PIXELS"])
    check_settings(app.config, profiles)     # fail at start, naming the setting

    os.makedirs(app.config["WORKSPACE_ROOT"], mode=0o700, exist_ok=True)
    # Read-only to every sandbox, but readable: 0755, beside the workspaces unless set.
    app.config["FETCH_CACHE_DIR"] = app.config["FETCH_CACHE_DIR"] or os.path.join(app.config["WORKSPACE_ROOT"],
                                                                                  ".fetch-cache")
    os.makedirs(app.config["FETCH_CACHE_DIR"], mode=0o755, exist_ok=True)
    url = database_url(app.config)
    schema_problem, service_id = _open_database(url, app.config["HOST_ID"], launcher_domain(app.config),
                                                 app.config["STORE_BUSY_TIMEOUT"])

    launcher = build_launcher(app.config, service_id)
    if not launcher.available:
        log.warning("no ChimeraX executable found: sessions cannot start "
                    "(set CHIMERAX_PATH or run `make chimerax`)")
    log.info("launcher %s; host id %s; store %s", launcher.describe(), app.config["HOST_ID"],
             database.describe(url))
    runtime = Runtime(app.config, launcher, profiles, url, schema_problem)
    app.extensions["chimerax_sessions"] = runtime
    app.teardown_appcontext(lambda _exc: runtime.release_thread_store())

    from . import cli
    from .middleware import auth, errors, request_log
    from .routes import docs
    request_log.init_app(app)
    auth.init_app(app)
    errors.init_app(app)
    docs.init_app(app)
    cli.init_app(app)
    return app
