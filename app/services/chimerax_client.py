"""Talking to one ChimeraX REST server (`remotecontrol rest start ... json true`).

The server replies HTTP 200 with a JSON body even when a command fails; the
outcome is in the body's `error`. The command goes in the query string: the
library build cannot parse POST form bodies, and every build accepts GET.
"""
import http.client
import json
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from .errors import ChimeraXDied, CommandTimeout

_LOG_LEVELS = ("note", "warning", "error", "bug")


@dataclass
class CommandResult:
    command: str
    ok: bool
    log: dict
    json_values: list
    error: dict = None
    duration_ms: float = 0.0


def parse_reply(command, body, duration_ms):
    data = json.loads(body)
    messages = data.get("log messages") or {}
    log = {level: list(messages.get(level) or []) for level in _LOG_LEVELS}
    error = data.get("error")
    if error is not None:
        error = {"type": str(error.get("type", "Error")), "message": str(error.get("message", ""))}
    return CommandResult(command=command, ok=error is None, log=log,
                         json_values=list(data.get("json values") or []),
                         error=error, duration_ms=round(duration_ms, 3))


def run_command(host, port, command, timeout, connect_timeout=2.0):
    """Run one command line; raise CommandTimeout or ChimeraXDied on transport failure."""
    # http.client, not requests, on this hot path: ChimeraX's server speaks
    # HTTP/1.0 and closes every connection, so a pooling client only adds
    # overhead (~0.5 ms a call, measured: BENCHMARKS.md figure 3).
    path = "/run?" + urlencode({"command": command})
    started = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=connect_timeout)
    try:
        conn.connect()
        conn.sock.settimeout(timeout)
        conn.request("GET", path)
        reply = conn.getresponse()
        body = reply.read()
    except (socket.timeout, TimeoutError) as err:
        raise CommandTimeout("ChimeraX did not answer within %g s" % timeout) from err
    except (OSError, http.client.HTTPException) as err:
        raise ChimeraXDied("ChimeraX closed the connection or is not listening") from err
    finally:
        conn.close()
    duration_ms = (time.perf_counter() - started) * 1000
    if not body:
        # `exit` ends the process before it replies
        raise ChimeraXDied("ChimeraX ended without replying")
    try:
        return parse_reply(command, body, duration_ms)
    except (ValueError, AttributeError) as err:
        raise ChimeraXDied("ChimeraX sent a reply that is not its JSON format") from err


def ping(host, port, timeout):
    """A cheap command that needs ChimeraX's main thread: True if it answered."""
    try:
        run_command(host, port, "version", timeout, connect_timeout=min(timeout, 2.0))
        return True
    except (CommandTimeout, ChimeraXDied):
        return False
