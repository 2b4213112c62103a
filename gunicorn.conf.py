"""gunicorn settings; every value can be overridden on the command line.

No preload: each worker builds its own app after fork, so no SQLite
connection, thread or scheduler is ever shared across a fork. Each worker
then schedules the sweeper; a file lock lets exactly one of them sweep.
"""
import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WORKERS", "4"))
worker_class = os.environ.get("WORKER_CLASS", "sync")
threads = int(os.environ.get("THREADS", "1"))
# Creating a session waits for ChimeraX to be ready (STARTUP_TIMEOUT, 60 s by
# default): the worker timeout must exceed it.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = 30
preload_app = False
accesslog = None          # the app logs one line per request itself
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


def _metrics_dir():
    # prometheus_client's multiprocess mode: each process writes its samples
    # here and a scrape sums them. Must be set before any worker imports it.
    path = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", os.path.join(
        os.environ.get("WORKSPACE_ROOT", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "instance", "workspaces")), ".metrics"))
    return path


def on_starting(server):
    import shutil
    path = _metrics_dir()
    shutil.rmtree(path, ignore_errors=True)     # samples of a previous run are stale
    os.makedirs(path, exist_ok=True)
    # Once per start, in the master, before any worker: adopt the sessions
    # whose ChimeraX survived (pid, create_time and environment marker all
    # match), end the others, kill marked processes the store does not know.
    from app import create_app
    create_app().extensions["chimerax_sessions"].recover()


def child_exit(server, worker):
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    worker.wsgi.extensions["chimerax_sessions"].start_sweeper()


def on_exit(server):
    # After the workers stopped. Sessions keep running for the next start to
    # adopt, unless SHUTDOWN_TERMINATES_SESSIONS=true.
    from app import create_app
    create_app().extensions["chimerax_sessions"].shutdown()
