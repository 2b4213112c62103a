"""gunicorn settings; every value can be overridden on the command line.

No preload: each worker builds its own app after fork, so no database
connection, thread or scheduler is ever shared across a fork (the master's
own, from recovery, are disposed before it forks). Each worker then
schedules the sweeper; a leader lock (a file lock with SQLite, an advisory
lock with PostgreSQL) lets exactly one process sweep, across instances too.
"""
import os

from config import server_setting

bind = server_setting("BIND")
workers = server_setting("WORKERS")
# Threads, not processes, carry requests (app/gunicorn_worker.py): gthread
# with a read timeout on client sockets. With `sync`, four slow clients or
# four long commands held all four workers and nothing else was answered;
# here each holds one of THREADS threads of a worker, a client that stalls
# mid-request is dropped after CLIENT_READ_TIMEOUT, and a worker whose
# threads are all busy stops accepting (worker_connections = threads), so
# new connections go to a worker that can serve them. Async workers
# (gevent) would need every blocking call (SQLite, psutil, subprocess) to
# cooperate; threads need nothing of the code.
worker_class = server_setting("WORKER_CLASS")
# An event stream (GET /events) holds its thread for as long as it is open:
# each worker has EVENT_STREAMS_PER_WORKER threads more than THREADS, and
# the app serves at most that many streams per worker (503 beyond), so
# however many streams are open, THREADS threads stay for everything else.
threads = server_setting("THREADS") + server_setting("EVENT_STREAMS_PER_WORKER")
worker_connections = (server_setting("WORKER_CONNECTIONS") or server_setting("THREADS")) + \
    server_setting("EVENT_STREAMS_PER_WORKER")
# No keep-alive: gthread keeps at most worker_connections - threads idle
# connections, none here, and an idle connection held by a worker would be a
# connection it accepted without a thread free to serve it. (With a value
# here gunicorn warned at start that it could not honour it.)
keepalive = 0
# The heartbeat: every turn of a worker's loop (several per request) touches
# a file's mtime; on a disk-backed /tmp that is a journaled metadata write
# (~0.07 ms of figure 3 here). gunicorn's docs advise a tmpfs.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
# Workers are recycled after this many requests (sessions are not tied to a
# worker, and the sweeper's lock moves on): a bound on the slow growth of
# worker memory `make soak` measured (RELIABILITY.md). 0 disables.
max_requests = server_setting("MAX_REQUESTS")
max_requests_jitter = max_requests // 10
# The worker timeout is the worker's own heartbeat (its main thread), not a
# request's: a create waiting STARTUP_TIMEOUT on a thread does not trip it.
# It must still exceed STARTUP_TIMEOUT for WORKER_CLASS=sync.
timeout = server_setting("GUNICORN_TIMEOUT")
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


def _fresh_metrics_dir():
    import shutil
    path = _metrics_dir()
    shutil.rmtree(path, ignore_errors=True)     # samples of a previous run are stale
    os.makedirs(path, exist_ok=True)
    return path


# When this file is read, not in on_starting: the worker class lives in the
# app package, whose import (by the master, to load the class) already
# brings in prometheus_client.
METRICS_DIR = _fresh_metrics_dir()


def on_starting(server):
    # Once per start, in the master, before any worker: adopt the sessions
    # whose ChimeraX survived (pid, create_time and environment marker all
    # match), end the others, kill marked processes the store does not know.
    from app import create_app
    create_app().extensions["chimerax_sessions"].recover()


def child_exit(server, worker):
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)


def post_fork(server, worker):
    # glibc gives each thread that allocates its own malloc arena (up to 8 per
    # core), and freed memory in them is rarely returned: with 16 request
    # threads plus reapers the soak's RSS grew about twice as fast as with two
    # (the growth left is fragmentation inside those two, RELIABILITY.md).
    # MALLOC_ARENA_MAX in the environment wins.
    arenas = int(os.environ.get("MALLOC_ARENA_MAX", "2"))
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)      # M_ARENA_MAX
    except (OSError, AttributeError):
        pass                                                # not glibc


def post_worker_init(worker):
    worker.wsgi.extensions["chimerax_sessions"].start_sweeper()


def worker_exit(server, worker):
    # A stopping worker (a restart, MAX_REQUESTS) lets the commands it runs in
    # the background (wait false) end first, within the graceful timeout, so
    # that their replies are recorded; past it their commands read `lost`.
    from app.services.sessions.running import finish_background
    left = finish_background(graceful_timeout - 5)
    if left:
        server.log.warning("worker %s exits with %d background command(s) still running", worker.pid, left)


def on_exit(server):
    # After the workers stopped. Sessions keep running for the next start to
    # adopt, unless SHUTDOWN_TERMINATES_SESSIONS=true.
    from app import create_app
    create_app().extensions["chimerax_sessions"].shutdown()
