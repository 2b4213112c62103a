"""What must hold of a service once traffic (or chaos) stops: shared by the
chaos test and `make soak`. Reads the store and the host's processes directly."""
import socket


def broken_invariants(runtime, pool_size, max_sessions=None):
    """A list of what does not hold (empty: all is well).

    - no session stuck in `starting` or `terminating`;
    - every active session's ChimeraX alive, and no process of this service
      that neither a session nor the pool accounts for;
    - the warm pool at its size, every entry ready and alive (or as large as
      the capacity left by live sessions allows, MAX_SESSIONS counting both).
    """
    launcher = runtime.launcher
    store = runtime.new_store()
    try:
        live = store.live_sessions()
        pool = store.pool_entries()
    finally:
        store.close()
    broken = ["%s stuck %s" % (r.id, r.status) for r in live if r.status != "active"]
    broken += ["%s active without its process" % r.id for r in live
               if r.status == "active" and launcher.poll(r.process)]
    known = [r.process for r in live if r.process] + [e.process for e in pool if e.process]
    broken += ["process %s without a session (%s)" % (s.details["pid"], _described(s.details["pid"], live, pool))
               for s in launcher.orphans(known)]
    ready = [e for e in pool if e.status == "ready" and not launcher.poll(e.process)]
    want = pool_size if max_sessions is None else max(0, min(pool_size, max_sessions - len(live)))
    if len(ready) != want:
        broken.append("pool has %d ready of %d" % (len(ready), want))
    return broken


def runtime_for(env):
    """The service's own runtime (store, launcher) for a server started with `env`."""
    from app import create_app
    app = create_app({"DATABASE_PATH": env["DATABASE_PATH"], "DATABASE_URL": env.get("DATABASE_URL", ""),
                      "WORKSPACE_ROOT": env["WORKSPACE_ROOT"], "CHIMERAX_PATH": env["CHIMERAX_PATH"],
                      "HOST_ID": env.get("HOST_ID") or socket.gethostname()}, config_name="testing")
    return app.extensions["chimerax_sessions"]


def _described(pid, live, pool):
    """What an unaccounted process says of itself, and what the store has under its marker."""
    import psutil
    try:
        env = psutil.Process(pid).environ()
    except psutil.Error:
        return "gone"
    marker = env.get("CXS_SESSION_ID")
    rows = [("session %s %s process %s" % (r.id[:8], r.status, r.process.details if r.process else None))
            for r in live if r.id == marker]
    rows += ["pool %s %s" % (e.id[:8], e.status) for e in pool if e.id == marker]
    return "marker %s, started by %s; store: %s" % (marker, env.get("CXS_STARTED_BY"), rows or "nothing")
