import glob
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import psutil
import pytest
import requests

from app import create_app
from app.context import EXTENSION
from app.services.identity.tokens import TokenService
from app.services.processes.locate import PROJECT_ROOT, TEST_RUNTIME
from app.store import SessionRecord, Store
from cxs_client import Client

from .fake_launcher import FakeLauncher

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_CHIMERAX = os.path.join(HERE, "fake_chimerax.py")


def alanin_pdb():
    found = glob.glob(os.path.join(PROJECT_ROOT, ".chimerax", "venv", "lib", "python*", "site-packages",
                                   "chimerax", "md_crds", "dcd", "MDToolsMarch97", "data", "alanin.pdb"))
    assert found, "the ChimeraX test runtime is not installed: run `make chimerax`"
    return found[0]


def wait_until(predicate, timeout, interval=0.05, message="condition"):
    """Poll `predicate` until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %gs waiting for %s" % (timeout, message))
        time.sleep(interval)


def started_processes():
    """Live processes this test run started: this process's descendants. The test
    process is a child subreaper (see pytest_configure), so what our servers
    started stays ours even after a test kills the server; nothing else on the
    machine is ever looked at, let alone killed."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def describe(proc):
    try:
        env = proc.environ()
        return {"pid": proc.pid, "ppid": proc.ppid(), "status": proc.status(), "age_s": round(
            time.time() - proc.create_time(), 1), "cmdline": " ".join(proc.cmdline())[:200],
            "session": env.get("CXS_SESSION_ID"), "service": env.get("CXS_SERVICE_ID"),
            "cwd": proc.cwd()}
    except psutil.Error as err:
        return {"pid": proc.pid, "error": repr(err)}


def temp_entries():
    # pytest's own base directory is removed by pytest (retention policy none)
    return {name for name in os.listdir(tempfile.gettempdir()) if not name.startswith("pytest-of-")}


PR_SET_CHILD_SUBREAPER = 36


def pytest_configure(config):
    # Temporary files of the run (ours, pytest's, the servers' and ChimeraX's
    # when unsandboxed) go to a private folder, removed at the end.
    private = tempfile.mkdtemp(prefix="cxs-tests-")
    os.environ["TMPDIR"] = tempfile.tempdir = private
    config.cxs_tmpdir = private
    # Orphans of the servers we start re-parent to us, not to init.
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


# Markers by what a test needs, from the fixtures it uses (so a developer runs
# the slice they touch: `pytest -m gunicorn`, `-m "not slurm"`); `chimerax`:
# every slow test that is not one of the others' alone starts real ChimeraX.
NEEDS = {"gunicorn_server": "gunicorn", "postgres_server": "postgres", "postgres_url": "postgres",
         "cluster": "slurm", "browser": "browser"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture, marker in NEEDS.items():
            if fixture in item.fixturenames:
                item.add_marker(marker)
        if fixture_param(item) == "postgresql":
            item.add_marker("postgres")
        if item.get_closest_marker("slow") and ("app_factory" in item.fixturenames
                                                 or "gunicorn_server" in item.fixturenames
                                                 or "rest" in item.fixturenames):
            item.add_marker("chimerax")


def fixture_param(item):
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("database_url") if callspec else None


def pytest_unconfigure(config):
    import shutil
    shutil.rmtree(getattr(config, "cxs_tmpdir", ""), ignore_errors=True)
    _reap_zombies()


def _reap_zombies():
    for proc in psutil.Process().children():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(proc.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            continue


def alive(pid):
    """Running and not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def runtime_children():
    """Live (non-zombie) ChimeraX runtime processes started by this test process."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and "cxs_runtime" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.fixture(scope="session", autouse=True)
def no_leaked_processes_or_files():
    """No test may leave a process it started (ChimeraX, bwrap, gunicorn, ...) or a temp file behind."""
    before = {p.pid for p in started_processes()}
    temp_before = temp_entries()
    yield
    left = temp_entries() - temp_before
    assert left == set(), "tests left files in %s: %s" % (tempfile.gettempdir(), sorted(left))

    def leftovers():
        return [p for p in started_processes() if p.pid not in before]
    try:
        wait_until(lambda: not leftovers(), 10, message="test processes to end")
    except AssertionError:
        left = leftovers()
        described = [describe(p) for p in left]
        for proc in left:
            try:
                proc.kill()
            except psutil.Error:
                pass
        pytest.fail("tests leaked processes: %s" % described)


def workspaces(app):
    """Session workspaces under WORKSPACE_ROOT (not the launcher's control folder)."""
    return sorted(n for n in os.listdir(app.config["WORKSPACE_ROOT"]) if n not in (".control", ".suspended", ".fetch-cache"))


def sandbox_tree(pid):
    """The sandboxed ChimeraX `pid` and every process of its sandbox (host view)."""
    proc = psutil.Process(pid)
    top = proc
    for parent in proc.parents():
        if parent.name() != "bwrap":
            break
        top = parent
    return [top] + top.children(recursive=True)


def add_ended_sessions(store, users, count):
    """`count` ended sessions per user (labelled "<user> <i>"), one second apart,
    alternately failed and terminated: lists to read, no ChimeraX needed."""
    for i in range(count):
        for user in users:
            rec = SessionRecord(id=str(uuid.uuid4()), user=user, label="%s %d" % (user, i), status="starting",
                                created_at=1000.0 + i, last_activity=1000.0 + i, idle_timeout=60, max_lifetime=600,
                                workspace="/nowhere", host_id="h", domain="elsewhere")
            store.insert_session(rec, max_total=10**6, max_per_user=10**6)
            store.transition(rec.id, ["starting"], "failed" if i % 2 == 0 else "terminated",
                             ended_at=1000.5 + i, end_reason="crashed" if i % 2 == 0 else "deleted")


def make_config(tmp_path, **overrides):
    """An in-process app at config.py's defaults (warm pool, IDLE_ACTION=suspend,
    sandbox) but for what a test process needs; a test sets anything else itself,
    with its reason. POOL_SIZE stays 2: creates claim from the pool, but nothing
    fills it here (only a sweeper does); tests of the pool fill it themselves."""
    config = {
        "DATABASE_PATH": str(tmp_path / "store.sqlite3"),     # a store and files of the test's own
        "WORKSPACE_ROOT": str(tmp_path / "workspaces"),
        "CHIMERAX_PATH": TEST_RUNTIME,
        "CHIMERAX_PORT_RANGE": "0",      # each ChimeraX picks a free port: none clashes with the machine's others
        "SWEEPER_ENABLED": False,        # tests drive sweeps themselves (make_sweeper), not a background job
        "STARTUP_TIMEOUT": 30.0,         # shorter than production's: a test fails sooner
        "COMMAND_TIMEOUT": 10.0,
        "STOP_GRACE_PERIOD": 2.0,
        "ACTIVITY_WRITE_INTERVAL": 0.0,  # every activity written at once: tests read it back
        "LOG_LEVEL": "WARNING",
    }
    config.update(overrides)
    return config


def end_all_sessions(app):
    rt = app.extensions[EXTENSION]
    sweeper, close = rt.make_sweeper()
    try:
        for record in sweeper.store.live_sessions():
            sweeper.service.end(record, "deleted")
        for record in sweeper.store.suspended_sessions():
            sweeper.service.suspension.delete(record)
        sweeper.service.remove_expired_workspaces(float("inf"))     # retained files of failed ones
        pool, close_pool = rt.make_pool()
        pool.drain()
        close_pool()
        service_id = sweeper.store.service_id()
    finally:
        close()
    # A stop waits 2 s for its processes to leave their cgroup, then leaves it to
    # the next sweep's `tidy` (30 s later): no sweep comes after a test.
    remove_session_cgroups(service_id)


def remove_session_cgroups(service_id):
    """This service's session cgroups (its own, by service id; never another's),
    each once its processes have left (a process left in one is the leak check's to report)."""
    from app.services.processes.launchers import cgroups
    found = cgroups.choose("auto", "", service_id, cgroups.SessionLimits()) if service_id else None
    if found is not None:
        for name in found.names():
            found.remove(name, wait=15)


@pytest.fixture
def app_factory(tmp_path):
    """Build apps on a fresh store; every session they start is ended afterwards."""
    apps = []

    def build(**overrides):
        app = create_app(make_config(tmp_path, **overrides), config_name="testing")
        apps.append(app)
        return app
    yield build
    for app in apps:
        end_all_sessions(app)
        root = app.config["WORKSPACE_ROOT"]
        suspended = os.path.join(root, ".suspended")
        assert not os.path.isdir(suspended) or os.listdir(suspended) == [], \
            "suspended session files left behind: %s" % os.listdir(suspended)
        left = [name for name in os.listdir(root) if name not in (".control", ".suspended", ".fetch-cache")]
        assert left == [], "workspaces left behind: %s" % left
        control = os.path.join(root, ".control")
        assert not os.path.isdir(control) or os.listdir(control) == [], \
            "control files left behind: %s" % os.listdir(control)


@pytest.fixture
def fake(tmp_path):
    """(app, launcher): an app at the defaults whose launcher is the fake (tests/fake_launcher.py)."""
    app = create_app(make_config(tmp_path, CHIMERAX_PATH="", POOL_SIZE=2, IDLE_ACTION="suspend",
                                 LAUNCHER="local"), config_name="testing")
    launcher = FakeLauncher()
    runtime = app.extensions[EXTENSION]
    runtime.launcher = launcher
    yield app, launcher
    sweeper, close = runtime.make_sweeper()
    try:
        for record in sweeper.store.live_sessions():
            sweeper.service.end(record, "deleted")
        for record in sweeper.store.suspended_sessions():
            sweeper.service.suspension.delete(record)
    finally:
        close()
    pool, close = runtime.make_pool()
    try:
        pool.drain()
    finally:
        close()
    launcher.stop_all()


@pytest.fixture
def app(app_factory):
    return app_factory()


@pytest.fixture
def client(app):
    return app.test_client()


def token_header(app, user, role="user"):
    store = Store(app.extensions[EXTENSION].url)
    try:
        _, token = TokenService(store).create(user, role)
    finally:
        store.close()
    return {"Authorization": "Bearer " + token}


@pytest.fixture
def alice(app):
    return token_header(app, "alice")


@pytest.fixture
def bob(app):
    return token_header(app, "bob")


@pytest.fixture
def admin(app):
    return token_header(app, "root", "admin")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    """A real gunicorn serving the app, with tokens made by the real CLI."""

    def __init__(self, tmp_path, workers=4, database_url=None, **env):
        self.tmp_path = tmp_path
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log_path = tmp_path / ("gunicorn-%d.log" % self.port)
        self.env = dict(os.environ, APP_ENV="testing", SWEEPER_ENABLED="true",
                        DATABASE_PATH=str(tmp_path / "store.sqlite3"),
                        WORKSPACE_ROOT=str(tmp_path / "workspaces"),
                        CHIMERAX_PATH=TEST_RUNTIME, CHIMERAX_PORT_RANGE="0",
                        STARTUP_TIMEOUT="30", LOG_LEVEL="INFO")
        if database_url:
            self.env["DATABASE_URL"] = database_url
        self.env.update({k: str(v) for k, v in env.items()})
        # What the tests open to look at the store the server uses.
        self.database = self.env.get("DATABASE_URL") or "sqlite:///" + self.env["DATABASE_PATH"]
        self.workers = workers
        self.proc = None

    def cli(self, *args):
        out = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=PROJECT_ROOT,
                             env=self.env, capture_output=True, text=True, timeout=60, check=True)
        return out.stdout

    def token(self, user, role="user"):
        args = ["tokens", "create", "--user", user] + (["--role", "admin"] if role == "admin" else [])
        token = self.cli(*args).strip().splitlines()[-1]
        return {"Authorization": "Bearer " + token}

    def store(self):
        return Store(self.database)

    def pool(self):
        """The warm pool's entries, read from the server's store."""
        store = self.store()
        try:
            return store.pool_entries()
        finally:
            store.close()

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-w", str(self.workers),
             "--bind", "127.0.0.1:%d" % self.port, "wsgi:app"],
            cwd=PROJECT_ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)

        def up():
            try:
                return requests.get(self.url + "/api/health", timeout=1).status_code == 200
            except requests.RequestException:
                assert self.proc.poll() is None, "gunicorn exited: %s" % self.log_path.read_text()
                return False
        wait_until(up, 30, message="gunicorn to answer")
        return self

    def worker_pids(self):
        return [p.pid for p in psutil.Process(self.proc.pid).children()]

    def kill_hard(self):
        """SIGKILL the master and its workers at once, as a crash or OOM would."""
        victims = [psutil.Process(self.proc.pid)] + [psutil.Process(p) for p in self.worker_pids()]
        for proc in victims:
            proc.kill()
        self.proc.wait()
        psutil.wait_procs(victims, timeout=10)
        self.log.close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()

    def log_text(self):
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def gunicorn_server(tmp_path):
    servers = []

    def start(**kw):
        server = Gunicorn(tmp_path, **kw)
        servers.append(server)
        return server.start()
    yield start
    failures = []
    for server in servers:
        try:
            _end_sessions_of(server)
        except Exception as err:        # every server is still stopped; the first failure is raised
            failures.append(err)
        finally:
            server.stop()
            _remove_session_cgroups_of(server)
    if failures:
        raise failures[0]


def _remove_session_cgroups_of(server):
    """A server killed hard (kill_hard, a crash test) leaves its sessions'
    cgroups, emptied by the cleanup's deletes, for a successor to remove: no
    successor comes here. Only this server's own (its store's service id).
    The sessions' processes are ending: each is waited for a while."""
    store = server.store()
    try:
        service_id = store.service_id()
    finally:
        store.close()
    remove_session_cgroups(service_id)


def _end_sessions_of(server):
    if server.proc.poll() is not None:
        server.start()      # a test that stopped it: start again to clean up
    admin = server.token("cleanup", "admin")
    client = Client(server.url, admin["Authorization"].split(" ", 1)[1], timeout=30)
    for s in client.list(status=["starting", "active", "suspended"]):       # every page of them
        client.delete(s["id"])      # raises: a failed cleanup must not pass silently


BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_server():
    from . import postgres
    if not postgres.available():
        pytest.skip("PostgreSQL is not installed (make test-deps installs Debian's postgresql)")
    server = postgres.PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh database of its own on the run's PostgreSQL server (dropped after the
    test: request it before the fixtures that use it)."""
    from app.store import session_views
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    session_views.stop_all()        # this process's listeners on it (a test's app read a session view)
    postgres_server.drop_database(name)


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path):
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        return "sqlite:///" + str(tmp_path / "store.sqlite3")
    return request.getfixturevalue("postgres_url")
