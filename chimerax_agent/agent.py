"""The service's control channel, run inside ChimeraX: `ChimeraX --script agent.py`.

It replaces `remotecontrol rest` (unauthenticated, loopback TCP only) with the
same protocol and the same JSON replies, on a channel the service chooses:

- CXS_AGENT_FD=N: a listening Unix-domain socket the launcher bound before the
  start, in a directory only the service account can open (sandboxed sessions:
  the sandbox has no network at all, and no path to the socket file);
- otherwise TCP on CXS_AGENT_HOST (127.0.0.1) : CXS_AGENT_PORT (0: any port).

`GET /run?command=...` runs commands, one request at a time: while one runs,
another gets 409 with what is running and since when. `GET /health` answers
from the agent's own thread: busy (with what, for how long) or idle and
responsive. `POST /interrupt?id=` interrupts the running command (that one,
if an id is given) as Ctrl-C would: a KeyboardInterrupt in its Python on the
main thread, which ends that command only. `GET /events?after=N` gives what
happened since event N (cxs_events.py): log messages, commands started and
ended (ids from the service's `X-CXS-Command-Id`).

Every request must carry `Authorization: Bearer <CXS_AGENT_SECRET>`, compared
in constant time; without it the reply is 401 and nothing runs. A request
with `X-CXS-Profile` (the caller's command policy, JSON) runs only if every
command of it is allowed (cxs_policy.py); otherwise 403 naming the command. The secret and
the fd are removed from the environment at once, so nothing ChimeraX starts
inherits them. One line on stdout says the channel is ready (and, for TCP, the
port): the launcher waits for it.

Before it serves, it proves on this ChimeraX that the policy's hooks fire
(cxs_selftest.py): otherwise it prints `CXS agent failed: <why>` and ends
ChimeraX's start. It says ready (`CXS agent ready: <channel> chimerax
<version>`) only once ChimeraX's event loop runs its calls on the main thread.

Runs in ChimeraX's own Python (3.9 in ChimeraX 1.6 up to 3.11) with the
standard library and the ChimeraX internals hooks.py lists, each read at the
tags v1.6 to v1.11 (docs/runtime.md). Its replies are its own shape, the
same whatever the release (docs/runtime.md).
"""
import hmac
from http.server import BaseHTTPRequestHandler
import json
import os
import queue
import signal
import socket
import socketserver
import sys
import threading
import time
from urllib.parse import parse_qs, urlparse

if "__file__" in globals():         # run as a script: its folder holds the policy
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cxs_events  # noqa: E402
import cxs_fetch  # noqa: E402
import cxs_policy  # noqa: E402
import cxs_rendering  # noqa: E402
import cxs_selftest as selftest  # noqa: E402

READY_PREFIX = "CXS agent ready:"
FAILED_PREFIX = "CXS agent failed:"


def _collecting_log(logger, events=None):
    """A log that collects messages by level for one request, as ChimeraX's REST
    server does (and publishes each as it comes: it is the one log that sees them)."""
    from chimerax.core.logger import StringPlainTextLog

    class ByLevel(StringPlainTextLog):
        def __init__(self, logger):
            super().__init__(logger)
            self.messages = {name: [] for name in self.LEVEL_DESCRIPTS}

        def log(self, level, msg):
            self.messages[self.LEVEL_DESCRIPTS[level]].append(msg)
            if events is not None:
                events.publish("log", {"level": self.LEVEL_DESCRIPTS[level], "text": msg})
            return True

    return ByLevel(logger)


class Interrupted(Exception):
    """The command was interrupted on request (POST /interrupt)."""


# While True the main thread runs a command, and only then does SIGINT
# interrupt it (`_on_interrupt`): never ChimeraX's loop or the agent's own code.
INTERRUPTIBLE = {"on": False}


def _on_interrupt(signum, frame):
    if INTERRUPTIBLE["on"]:
        raise KeyboardInterrupt


def run_commands(session, commands, profile=None, events=None):
    """Run command lines on ChimeraX's main thread: (HTTP status, JSON text of the reply).
    With a `profile`, every command is checked on ChimeraX's own parse first."""
    from chimerax.core.commands import JSONResult, run
    from chimerax.core.errors import NotABug
    values, error, parsed = [], None, []
    with _collecting_log(session.logger, events) as log:
        try:
            INTERRUPTIBLE["on"] = True
            for text in commands:
                if profile is None:
                    values = run(session, text, log=False, return_json=True, return_list=True)
                else:
                    values, parsed = cxs_policy.run_checked(session, text, profile)
            INTERRUPTIBLE["on"] = False
        except KeyboardInterrupt:
            INTERRUPTIBLE["on"] = False
            values, error = [], Interrupted("the command was interrupted")
            session.logger.info("Interrupted")
        except cxs_policy.Refused as refusal:
            return 403, json.dumps({"refused": {"command": refusal.command, "reason": refusal.reason},
                                    "ran": getattr(refusal, "ran", [])})
        except NotABug as err:
            values, error = [], err
            session.logger.info(str(err))
        except MemoryError as err:
            # An allocation the session's memory limit refused (Python's, or a
            # C++ extension's std::bad_alloc as ChimeraX raises it): the command
            # failed, the session did not. Free what the command left behind.
            values, error = [], _out_of_memory(err)
        except Exception as err:        # a ChimeraX bug: reported, not fatal to the agent
            values, error = [], err
        finally:
            INTERRUPTIBLE["on"] = False
        reply = {
            "json values": [v.json_value if isinstance(v, JSONResult) else None for v in values],
            "python values": [v.python_value if isinstance(v, JSONResult) else v for v in values],
            "log messages": log.messages,
            "error": None if error is None else {"type": type(error).__name__, "message": str(error)},
            "commands": parsed,
        }
    try:
        return 200, json.dumps(reply, default=lambda value: None)
    except (TypeError, ValueError):
        # A command's Python value that JSON cannot hold at all (`contacts`
        # returns a dict keyed by atoms): drop the Python values, keep the rest.
        # ChimeraX's own REST server (1.7) never answers such a command.
        reply["python values"] = [None] * len(reply["python values"])
        return 200, json.dumps(reply, default=lambda value: None)


def _out_of_memory(err):
    import gc
    gc.collect()
    detail = str(err).strip() or "an allocation failed"
    return MemoryError("out of memory: %s (the session's memory limit; the session keeps running: "
                       "ask for less, or close models)" % detail)


class Handler(BaseHTTPRequestHandler):
    server_version = "cxs-agent"

    def do_GET(self):
        expected = "Bearer " + self.server.secret
        offered = self.headers.get("Authorization", "")
        if not self.server.secret or not hmac.compare_digest(offered.encode(), expected.encode()):
            return self._reply(401, {"error": {"type": "Unauthorized",
                                               "message": "a valid channel secret is required"}})
        url = urlparse(self.path)
        if url.path == "/health":
            return self._health()
        if url.path == "/fetched":
            return self._fetched()
        if url.path == "/events":
            query = parse_qs(url.query)
            return self._reply(200, self.server.events.after(int((query.get("after") or ["0"])[0] or 0),
                                                             min(25.0, float((query.get("timeout") or ["0"])[0]))))
        if url.path == "/interrupt":
            return self._interrupt((parse_qs(url.query).get("id") or [None])[0])
        if url.path != "/run":
            return self._reply(404, {"error": {"type": "NotFound", "message":
                                               "only /run, /fetched, /interrupt, /events and /health are served"}})
        commands = parse_qs(url.query).get("command", [])
        try:
            profile = json.loads(self.headers["X-CXS-Profile"]) if "X-CXS-Profile" in self.headers else None
        except ValueError:
            return self._reply(400, {"error": {"type": "BadRequest", "message": "X-CXS-Profile is not JSON"}})
        # One command at a time, said at once: a second caller is not queued
        # behind the first (it would wait invisibly, holding a service worker).
        if not self.server.busy.acquire(blocking=False):
            return self._reply(409, {"busy": self.server.doing()})
        exchange = self.server.exchange = cxs_fetch.Exchange()
        command_id = self.headers.get("X-CXS-Command-Id")
        self.server.current = ("; ".join(commands)[:120], time.time(), time.monotonic(), command_id)
        self._start(commands, profile, exchange, command_id)
        self._forward(exchange)

    def _interrupt(self, command_id):
        """Interrupt the running command (`command_id`'s, if given), as Ctrl-C would."""
        current = self.server.current
        if current is None or (command_id and current[3] != command_id):
            return self._reply(409, {"interrupting": None, "busy": current is not None})
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        return self._reply(202, {"interrupting": current[3], "command": current[0]})

    def _start(self, commands, profile, exchange, command_id):
        server = self.server

        def on_main_thread():
            if len(server.command_threads) < 8:     # where the first commands ran, for /health
                server.command_threads.append(threading.current_thread().name)
            server.events.publish("command.started", {"id": command_id, "command": "; ".join(commands)})
            # Whatever happens, the waiting request gets an answer: never a hang.
            try:
                outcome = run_commands(server.session, commands, profile, server.events)
            except KeyboardInterrupt:       # in the instant between the command and its reply
                outcome = (200, json.dumps({"json values": [], "python values": [], "commands": [],
                                            "log messages": {}, "error": {"type": "Interrupted",
                                                                          "message": "the command was interrupted"}}))
            except BaseException as err:
                _finish(server, exchange, (500, json.dumps({"error": {"type": type(err).__name__,
                                                                      "message": str(err)}})))
                if not isinstance(err, Exception):
                    raise
                return
            _finish(server, exchange, outcome)
        server.session.ui.thread_safe(on_main_thread)

    def _forward(self, exchange):
        """Answer with the command's next step: a fetch for the service to make,
        or its final reply."""
        kind, payload = exchange.events.get()
        if kind == "fetch":
            return self._reply(200, {"fetch": payload})
        status, body = payload
        self._send(status, body.encode("utf-8"))

    def _fetched(self):
        """The service's answer to a fetch (cxs_fetch.py), then the next step."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
            answer = json.loads(self.rfile.read(min(length, 1 << 20)) or b"{}")
        except ValueError:
            return self._reply(400, {"error": {"type": "BadRequest", "message": "the answer is not JSON"}})
        exchange = self.server.exchange
        if exchange is None or not isinstance(answer, dict) or exchange.pending != answer.get("id"):
            return self._reply(409, {"error": {"type": "NoFetch", "message": "no fetch is waiting with that id"}})
        exchange.replies.put(answer)
        self._forward(exchange)

    do_POST = do_GET

    def _health(self):
        """Answered from this thread: a busy main thread is reported as busy (with
        what, since when), never mistaken for a hung one. An idle main thread
        must run a no-op within 10 s, or the reply is 503."""
        doing = self.server.doing()
        threads = {"command_threads": list(self.server.command_threads)}
        if doing:
            return self._reply(200, {"busy": True, **doing, **threads})
        answered = queue.Queue()
        self.server.session.ui.thread_safe(lambda: answered.put(True))
        try:
            answered.get(timeout=10)
        except queue.Empty:
            return self._reply(503, {"busy": False, "main_thread": "not responding", **threads})
        return self._reply(200, {"busy": False, **threads})

    def _reply(self, status, data):
        self._send(status, json.dumps(data).encode("utf-8"))

    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self):
        return "unix" if not self.client_address else str(self.client_address[0])

    def log_message(self, *args):
        pass        # ChimeraX's log is for the user's commands, not for transport


class _Serving(socketserver.ThreadingMixIn):
    daemon_threads = True       # never keep ChimeraX from exiting


class UnixAgent(_Serving, socketserver.UnixStreamServer):
    def __init__(self, fd):
        socketserver.UnixStreamServer.__init__(self, None, Handler, bind_and_activate=False)
        self.socket = socket.socket(fileno=fd)


class TcpAgent(_Serving, socketserver.TCPServer):
    allow_reuse_address = True

    def __init__(self, host, port):
        socketserver.TCPServer.__init__(self, (host, port), Handler)


def _finish(server, exchange, outcome):
    if server.current is not None:
        status, body = outcome
        server.events.publish("command.ended", {"id": server.current[3], "status": status,
                                                "interrupted": '"type": "Interrupted"' in body})
    # Free before replying: the caller's next command may arrive the moment it has this reply.
    server.current = server.exchange = None
    server.busy.release()
    exchange.events.put(("done", outcome))


def _where(answer):
    answer.put(threading.current_thread())


def _doing(current):
    if current is None:
        return None
    text, since, started, command_id = current
    return {"command": text, "since": since, "seconds": round(time.monotonic() - started, 3), "id": command_id}


def complete_offscreen_context():
    """ChimeraX's glTF writer reads each 2D texture back and then calls
    done_current() on the OpenGL context; the offscreen (OSMesa) context has
    none, official builds included, so a map shown as planes could not be
    exported headless. Releasing the context is nothing to do offscreen: a no-op."""
    try:
        from chimerax.graphics.opengl import OffScreenRenderingContext
    except ImportError:
        return
    if not hasattr(OffScreenRenderingContext, "done_current"):
        OffScreenRenderingContext.done_current = lambda self: None


def start(session, environ=os.environ):
    """Prove the policy hooks fire (selftest.py), bind the channel, then serve
    and say ready once ChimeraX's event loop runs: before it, `thread_safe`
    calls a command in place, on whichever thread asks, beside a main thread
    still starting up (ChimeraX's __main__.py starts the loop after the start-up
    scripts, the version log and the data files)."""
    complete_offscreen_context()
    if environ.pop("CXS_RENDERING", "") == "lazy" and session.main_view.render is None:
        cxs_rendering.install(session)
    secret = environ.pop("CXS_AGENT_SECRET", "")
    fd = environ.pop("CXS_AGENT_FD", "")
    failed = selftest.failure(session)
    if failed:
        print("%s %s" % (FAILED_PREFIX, failed), file=sys.__stdout__, flush=True)
        # ChimeraX ends with a failed --script's exit status: nothing is served.
        raise SystemExit(os.EX_SOFTWARE)
    if fd:
        server, where = UnixAgent(int(fd)), "unix"
    else:
        server = TcpAgent(environ.get("CXS_AGENT_HOST", "127.0.0.1"), int(environ.get("CXS_AGENT_PORT", "0")))
        where = "tcp %s %d" % server.server_address[:2]
    server.session, server.secret = session, secret
    server.busy, server.current, server.command_threads = threading.Lock(), None, []
    server.exchange = None          # the running command's, while one runs (cxs_fetch.py)
    cxs_fetch.install(server)
    server.events = cxs_events.Events()
    session.logger.add_log(cxs_events.log_to(server.events))     # what is logged outside commands
    # Here, on the main thread (the script runs there): SIGINT interrupts a running command only.
    signal.signal(signal.SIGINT, _on_interrupt)
    server.doing = lambda: _doing(server.current)
    threading.Thread(target=_serve_once_looping, args=(server, where), name="cxs-agent", daemon=True).start()
    return server


def _serve_once_looping(server, where):
    """Wait until `thread_safe` runs a call on the main thread (the loop serves),
    then serve and print the ready line (the launcher waits for it)."""
    main = threading.main_thread()
    while True:
        ran_on = queue.Queue()
        server.session.ui.thread_safe(_where, ran_on)
        if ran_on.get() is main:
            break
        time.sleep(0.001)       # called in place: the loop has not started yet (it will in a few ms)
    print("%s %s chimerax %s" % (READY_PREFIX, where, selftest.version()), file=sys.__stdout__, flush=True)
    server.serve_forever()


if "session" in globals():      # run by ChimeraX as a script, with its session
    start(globals()["session"])
