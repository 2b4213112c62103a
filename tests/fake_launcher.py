"""A launcher whose "processes" are in-process agents: for the fast tier only.

Why fake: the fast tier checks the service's own logic — HTTP in and out,
auth, validation, limits, the store, the sweeper's and the pool's decisions,
transitions and their owners — in well under a minute. Those decisions are
taken above the launcher boundary and do not depend on what answers behind
it, so a stand-in at that boundary tests them faithfully. Everything about
real processes (spawn, sandbox, ChimeraX's parse and policy, rendering,
crash and hang detection) is proven in the slow tier against the real runtime.

Each fake process is a thread serving the agent's protocol (chimerax_agent/agent.py)
on loopback TCP with its own secret: GET /run?command=... answers the same
JSON shape, GET /health answers idle. `save "<path>"` writes a small file at
the path and `open "<path>"` reads one back, enough for suspend and resume.
Tests make a process die (`kill`) or never become ready (`hold_ready`), and
say what a process uses (`set_usage`) and which limits hold (`limits`), as a
launcher reads them from a cgroup.
"""
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import json
import secrets
import threading
import time
from urllib.parse import parse_qs, urlparse
import uuid

from app.services.errors import StartupFailed
from app.services.processes.chimerax_client import Channel
from app.services.processes.launchers.base import Launcher

SAVED = b"fake ChimeraX session\n"


class _Agent(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, secret):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.secret, self.opened = secret, []
        threading.Thread(target=self.serve_forever, args=(0.02,), daemon=True).start()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") != "Bearer " + self.server.secret:
            return self._reply(401, {"error": {"type": "Unauthorized", "message": "secret"}})
        url = urlparse(self.path)
        if url.path == "/health":
            return self._reply(200, {"busy": False})
        error, notes = None, []
        for text in parse_qs(url.query).get("command", []):
            verb, _, rest = text.partition(" ")
            path = rest.split('"')[1] if '"' in rest else rest.strip()
            if verb == "save":
                with open(path, "wb") as out:
                    out.write(SAVED)
            elif verb == "open":
                try:
                    with open(path, "rb") as source:
                        source.read()
                    self.server.opened.append(path)
                except OSError as err:
                    error = {"type": "UserError", "message": str(err)}
            elif verb == "fail":
                error = {"type": "UserError", "message": "failed as asked"}
            notes.append(text)
        self._reply(200, {"json values": [None], "python values": [None],
                          "log messages": {"note": notes, "warning": [], "error": [], "bug": []},
                          "error": error, "commands": []})

    do_POST = do_GET

    def _reply(self, status, data):
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class FakeLauncher(Launcher):
    domain = "fake:test"

    def __init__(self):
        self.agents = {}        # fake pid -> _Agent, while "running"
        self.markers, self.created = {}, {}
        self.started = 0
        self.ready_gate = None  # a threading.Event: wait_ready waits for it
        self.usage_of = {}      # fake pid -> what `usage` answers for it (absent: unknown)
        self.limits = {}        # what `limits_in_force` answers for every process
        self._lock = threading.Lock()

    def describe(self):
        return "fake launcher (tests/fake_launcher.py)"

    def _start(self, marker, workspace, port):
        secret = secrets.token_urlsafe(16)
        agent = _Agent(secret)
        with self._lock:
            self.started += 1
            pid = "fake-%s" % uuid.uuid4().hex[:12]
            self.agents[pid], self.markers[pid], self.created[pid] = agent, marker, time.time()
        return {"pid": pid, "marker": marker, "secret": secret, "port": agent.server_address[1],
                "create_time": time.time()}

    def _wait_ready(self, state, timeout, progress=None):
        if self.ready_gate is not None and not self.ready_gate.wait(timeout):
            raise StartupFailed("ChimeraX was not ready within %g s" % timeout)
        if self._poll(state):
            raise StartupFailed("ChimeraX exited during start-up")
        return dict(state, ready=True)

    def _poll(self, state):
        return None if state and state.get("pid") in self.agents else "process %s is gone" % state.get("pid")

    def _stop(self, state, grace):
        self.kill(state)

    def kill(self, handle):
        """The process dies (a crash). `handle`: a ProcessHandle or its state."""
        state = getattr(handle, "details", handle)
        with self._lock:
            agent = self.agents.pop(state.get("pid"), None)
        if agent is not None:
            agent.shutdown()
            agent.server_close()

    def set_usage(self, handle, **figures):
        """What `usage` answers for this process from now on (a ProcessHandle or its state)."""
        self.usage_of[getattr(handle, "details", handle).get("pid")] = figures

    def _usage(self, state):
        figures = self.usage_of.get(state.get("pid"))
        if figures is None or state.get("pid") not in self.agents:
            return None
        return dict(dict.fromkeys(("cpu_seconds", "memory_bytes", "memory_peak_bytes", "processes")), **figures)

    def _limits_in_force(self, state):
        return dict(self.limits)

    def _channel(self, state):
        return Channel(secret=state.get("secret", ""), path=None, host="127.0.0.1", port=state.get("port"),
                       fingerprint=None)

    def _adoptable(self, state, marker):
        return state.get("pid") in self.agents and self.markers.get(state.get("pid")) == state.get("marker", marker)

    def _orphans(self, known_states, host_id=None):
        known = {s.get("pid") for s in known_states}
        return [{"pid": pid, "create_time": self.created[pid]} for pid in list(self.agents) if pid not in known]

    def running(self):
        return len(self.agents)

    def stop_all(self):
        for pid in list(self.agents):
            self.kill({"pid": pid})
