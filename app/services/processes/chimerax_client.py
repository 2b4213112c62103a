"""Talking to one ChimeraX through its agent (chimerax_agent/agent.py).

The agent speaks the protocol of ChimeraX's `remotecontrol rest ... json
true`: GET /run?command=..., HTTP 200 with a JSON body even when a command
fails (the outcome is in the body's `error`). Unlike that server it listens
where the launcher said (a Unix-domain socket or TCP) and answers only
requests that carry the session's secret.
"""
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
import hashlib
import hmac
import http.client
import json
import os
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from ..errors import ChimeraXDied, CommandDenied, CommandTimeout, SessionBusy

if TYPE_CHECKING:
    from ..policy.profiles import Profile

_LOG_LEVELS = ("note", "warning", "error", "bug")


@dataclass(frozen=True)
class Channel:
    """Where a session's agent listens, and the secret it expects."""
    secret: str
    path: str | None = None      # a Unix-domain socket, or
    host: str | None = None      # TCP host and port
    port: int | None = None
    # Across hosts: TLS to a certificate the job made for itself, pinned by
    # its SHA-256 (reported through the shared file system, not the network).
    fingerprint: str | None = None

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self.path:
            conn = _UnixConnection(self.path, timeout)
        elif self.fingerprint:
            conn = _PinnedConnection(self.host, self.port, self.fingerprint, timeout)
        else:
            assert self.host is not None, "a channel has a socket path or a TCP host"
            conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        conn.connect()
        return conn


class CertificateMismatch(ConnectionError):
    """The peer is not the process that reported the channel: nothing was sent to it."""


class _PinnedConnection(http.client.HTTPSConnection):
    def __init__(self, host, port, fingerprint, timeout):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # No CA can vouch for a certificate made a second ago: it is pinned instead.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        super().__init__(host, port, timeout=timeout, context=context)
        self.fingerprint = fingerprint

    def connect(self) -> None:
        super().connect()
        # Checked before a single byte of the request (and its secret) is sent.
        offered = hashlib.sha256(self.sock.getpeercert(binary_form=True) or b"").hexdigest()
        if not hmac.compare_digest(offered, self.fingerprint):
            self.close()
            raise CertificateMismatch("the channel's TLS certificate is not the one its job reported")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            with unix_address(self.path) as address:
                sock.connect(address)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@contextmanager
def unix_address(path: str) -> Iterator[str]:
    """`path`, or a short alias of it: socket addresses hold at most 107 bytes,
    and a deep WORKSPACE_ROOT would not fit. The alias goes through an open
    descriptor of the folder, so it names the very same file."""
    if len(os.fsencode(path)) < 100:
        yield path
        return
    folder = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY)
    try:
        yield "/proc/self/fd/%d/%s" % (folder, os.path.basename(path))
    finally:
        os.close(folder)


@dataclass
class CommandResult:
    command: str
    ok: bool
    log: dict
    json_values: list
    error: dict | None = None
    duration_ms: float = 0.0
    commands: tuple = ()        # as ChimeraX parsed them (requests with a profile)
    id: str | None = None       # the command's id (the service's, for its resource and interrupts)


def parse_reply(command: str, body: bytes, duration_ms: float) -> CommandResult:
    data = json.loads(body)
    messages = data.get("log messages") or {}
    log = {level: list(messages.get(level) or []) for level in _LOG_LEVELS}
    error = data.get("error")
    if error is not None:
        error = {"type": str(error.get("type", "Error")), "message": str(error.get("message", ""))}
    return CommandResult(command=command, ok=error is None, log=log,
                         json_values=list(data.get("json values") or []),
                         error=error, duration_ms=round(duration_ms, 3),
                         commands=tuple(data.get("commands") or ()))


Fetcher = Callable[[dict[str, Any]], dict[str, Any]]


def run_command(channel: Channel, command: str, timeout: float, connect_timeout: float = 2.0,
                profile: "Profile | None" = None, fetcher: Fetcher | None = None,
                command_id: str | None = None) -> CommandResult:
    """Run one command line, under `profile` (policy.Profile) if given: CommandDenied
    if the agent refused it; CommandTimeout or ChimeraXDied on transport failure.
    A fetch ChimeraX makes meanwhile is answered by `fetcher(request)` ({"path"}
    or {"error"}; none: refused), as a step of the same exchange (agent: cxs_fetch.py)."""
    # http.client, not requests, on this hot path: the agent speaks HTTP/1.0
    # and closes every connection, so a pooling client only adds overhead
    # (~0.5 ms a call, measured: BENCHMARKS.md figure 3).
    started = time.perf_counter()
    try:
        headers = {"X-CXS-Profile": profile.wire} if profile is not None else {}
        if command_id:
            headers["X-CXS-Command-Id"] = command_id
        status, body = _request(channel, "/run?" + urlencode({"command": command}), timeout, connect_timeout, headers)
        while status == 200 and body.startswith(b'{"fetch"'):
            request = _json(body).get("fetch") or {}
            answer = fetcher(request) if fetcher else {"error": "fetching is not available for this command"}
            status, body = _request(channel, "/fetched", timeout, connect_timeout, {"Content-Type": "application/json"},
                                body=json.dumps(dict(answer, id=request.get("id"))).encode())
    except TimeoutError as err:
        raise CommandTimeout("ChimeraX did not answer within %g s" % timeout) from err
    except (OSError, http.client.HTTPException) as err:
        raise ChimeraXDied("ChimeraX closed the connection or is not listening") from err
    duration_ms = (time.perf_counter() - started) * 1000
    if status == 409:
        busy = _json(body).get("busy") or {}
        refusal = SessionBusy("the session is busy with %r for %.1f s; one command at a time"
                              % (busy.get("command", "?"), busy.get("seconds", 0)), retry_after=1)
        refusal.service_own = busy.get("id") is None     # the service's own work (a render), not a user's command
        raise refusal
    if status == 403:
        refused = _json(body).get("refused") or {}
        raise CommandDenied("command denied: %s" % refused.get("reason", "not allowed"),
                            refused.get("command", ""))
    if status not in (200, 500):
        # 500: the agent caught a failure of ChimeraX itself and says so in
        # the reply's `error`; anything else is a wrong secret: the channel is
        # not the one we started.
        raise ChimeraXDied("the session's channel refused the request (HTTP %d)" % status)
    if not body:
        # `exit` ends the process before it replies
        raise ChimeraXDied("ChimeraX ended without replying")
    try:
        result = parse_reply(command, body, duration_ms)
        result.id = command_id
        return result
    except (ValueError, AttributeError) as err:
        raise ChimeraXDied("ChimeraX sent a reply that is not its JSON format") from err


def _request(channel, path, timeout, connect_timeout, headers, body=None):
    """(status, body) of one authenticated GET (a POST with `body`) on the channel;
    transport errors propagate."""
    conn = None
    try:
        conn = channel.connect(connect_timeout)
        conn.sock.settimeout(timeout)
        conn.request("GET" if body is None else "POST", path, body=body,
                     headers=dict(headers, Authorization="Bearer " + channel.secret))
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        if conn is not None:
            conn.close()


def _json(body):
    try:
        data = json.loads(body)
        return data if isinstance(data, dict) else {}
    except ValueError:
        return {}


def health(channel: Channel, timeout: float) -> dict[str, Any] | None:
    """The agent's own report: {"busy": False} (idle, its main thread answered),
    {"busy": True, "command", "since", "seconds"}, or None (no answer: hung or gone)."""
    try:
        status, body = _request(channel, "/health", timeout, min(timeout, 2.0), {})
    except (OSError, http.client.HTTPException):
        return None
    return _json(body) if status == 200 else None


def interrupt(channel: Channel, command_id: str | None, timeout: float = 5.0) -> bool:
    """Interrupt the running command (`command_id`'s only, if given) as Ctrl-C
    would; False if it was not running (ended, or another runs)."""
    path = "/interrupt" + ("?" + urlencode({"id": command_id}) if command_id else "")
    try:
        status, _ = _request(channel, path, timeout, min(timeout, 2.0), {}, body=b"")
    except (OSError, http.client.HTTPException) as err:
        raise ChimeraXDied("ChimeraX closed the connection or is not listening") from err
    return status == 202


def events(channel: Channel, after: int, wait: float) -> dict[str, Any] | None:
    """What happened in ChimeraX since event `after` ({"events", "last",
    "missed"}, agent: cxs_events.py), waiting up to `wait` s for a first one;
    None if the agent did not answer (gone, or an agent without events)."""
    try:
        status, body = _request(channel, "/events?" + urlencode({"after": after, "timeout": wait}), wait + 5,
                                2.0, {})
    except (OSError, http.client.HTTPException):
        return None
    return _json(body) if status == 200 else None


def ping(channel: Channel, timeout: float) -> bool:
    """True if the agent answers and ChimeraX is idle and responsive, or busy."""
    return health(channel, timeout) is not None
