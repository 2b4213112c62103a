"""The node side of a session on Slurm, run by the job's batch script:
`python -m app.services.processes.launchers.slurm_job SPEC`.

On the node it starts ChimeraX exactly as the local launcher does on the
service's host — same sandbox (bubblewrap where the node has it), same
limits, same agent — with the secret the service chose, read from SPEC (a
file only the service account can read, removed at once: the secret never
passes through slurmctld, the batch script or a command line).

Other hosts cannot reach the agent itself: sandboxed, ChimeraX has no
network (its agent listens on a Unix socket); unsandboxed, the agent listens
on the node's loopback. So that the service on
another host can reach it, a relay outside the sandbox listens on the node's
own address (its Slurm NodeAddr, never an assumed loopback) and speaks TLS
with a certificate the job makes for itself at start; the service pins that
certificate's SHA-256, read with the address from the job's output file (on
the shared file system, written by the service account), and checks it
before it sends the secret. The agent still checks the secret of every
request. The report is one line:

    CXS job ready: {"host": ..., "port": ..., "fingerprint": ..., "sandbox": ...}

The job ends when ChimeraX does; SIGTERM (scancel, the time limit) stops
ChimeraX and everything it started first.
"""
from collections.abc import Mapping, Sequence
import hashlib
import json
import os
import re
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from typing import Any

LOADED = time.time()        # the job's Python has started and imported this module

READY = "CXS job ready: "
FAILED = "CXS job failed: "


MAX_REQUEST = 1 << 20       # a command line is at most MAX_COMMAND_LENGTH, URL-encoded


class Relay(socketserver.ThreadingTCPServer):
    """TLS on the node's address -> the agent (a Unix socket or loopback TCP).

    One request per connection, as the agent serves them (HTTP/1.0, closed
    after the reply): the request is read whole from TLS and passed on, then
    the reply is passed back until the agent closes. Each TLS connection is
    used by one thread only (OpenSSL connections are not safe to read and
    write from two threads at once)."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], target: str | tuple[str, int], certificate: str, key: str) -> None:
        super().__init__(address, _Exchange)
        self.target = target
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.minimum_version = ssl.TLSVersion.TLSv1_2
        self.tls.load_cert_chain(certificate, key)

    def connect_agent(self) -> socket.socket:
        from ..chimerax_client import unix_address
        if isinstance(self.target, str):
            agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                with unix_address(self.target) as address:
                    agent.connect(address)
            except OSError:
                agent.close()
                raise
            return agent
        return socket.create_connection(self.target)


class _Exchange(socketserver.BaseRequestHandler):
    server: Relay

    def handle(self) -> None:
        self.request.settimeout(30)
        try:
            tls = self.server.tls.wrap_socket(self.request, server_side=True)
        except (OSError, ssl.SSLError):
            return      # not TLS, or a handshake that failed: nothing reaches the agent
        try:
            request = _read_request(tls)
            if request is None:
                return
            agent = self.server.connect_agent()
            try:
                agent.sendall(request)
                tls.settimeout(None)
                while True:
                    data = agent.recv(65536)
                    if not data:
                        break
                    tls.sendall(data)
            finally:
                agent.close()
        except OSError:
            pass
        finally:
            tls.close()


def _read_request(tls):
    """Headers up to the blank line, then Content-Length bytes of body; None if cut short."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        if not chunk or len(data) > MAX_REQUEST:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    wanted = int(length.group(1)) if length else 0
    if wanted > MAX_REQUEST:
        return None
    while len(body) < wanted:
        chunk = tls.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head + b"\r\n\r\n" + body


def make_certificate(directory: str) -> tuple[str, str, str]:
    """A key and self-signed certificate for this job only: (cert, key, SHA-256 of its DER)."""
    certificate, key = os.path.join(directory, "tls.crt"), os.path.join(directory, "tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", certificate, "-days", "30", "-subj", "/CN=cxs-session",
                    "-batch"], check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    with open(certificate) as pem:
        der = ssl.PEM_cert_to_DER_cert(pem.read())
    return certificate, key, hashlib.sha256(der).hexdigest()


def node_address(name: str | None = None) -> str:
    """The address other hosts reach this node by: its NodeAddr in Slurm's
    configuration (which may differ from its name), else its name resolved."""
    name = name or os.environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]
    try:
        out = subprocess.run(["scontrol", "-o", "show", "node", name], capture_output=True, text=True,
                             timeout=30).stdout
        found = re.search(r"\bNodeAddr=(\S+)", out)
        if found:
            return socket.gethostbyname(found.group(1))
    except (OSError, subprocess.SubprocessError):
        pass
    return socket.gethostbyname(name)


def _task_started():
    """When slurmstepd started the batch script (this process, exec'd by it): wall clock
    (to the kernel's clock tick)."""
    try:
        with open("/proc/self/stat") as stat:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - age
    except (OSError, ValueError, IndexError):
        return None


def _say(prefix, data):
    print(prefix + json.dumps(data), flush=True)


def run(spec: Mapping[str, Any]) -> int:
    from . import local_launcher
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *args: stop.set())
    times = {"task": _task_started(), "python": LOADED, "run": time.time()}
    launcher = local_launcher(spec["config"], spec["service_id"])
    launcher.port_range = None      # unsandboxed, the agent picks a loopback port
    state, relay = {}, None
    try:
        os.makedirs(spec["config"]["CONTROL_DIR"], mode=0o700, exist_ok=True)
        # ChimeraX first: it takes a few hundred ms to start, in which the job
        # finds its address and makes its certificate (tens of ms, openssl).
        state = launcher._start(spec["marker"], spec["workspace"], None, secret=spec["secret"])
        times["spawned"] = time.time()
        address = spec["bind"] or node_address()
        times["address"] = time.time()
        certificate, key, fingerprint = make_certificate(spec["config"]["CONTROL_DIR"])
        times["certificate"] = time.time()
        state = launcher._wait_ready(state, spec["startup_timeout"])
        times["chimerax"] = time.time()
        where = state["channel"]
        relay = Relay((address, 0), where.get("path") or (where["host"], where["port"]), certificate, key)
        threading.Thread(target=relay.serve_forever, name="relay", daemon=True).start()
        host, port = relay.server_address[:2]
        _say(READY, {"host": host, "port": port, "fingerprint": fingerprint,
                     "node": socket.gethostname().split(".")[0], "sandbox": state["sandbox"],
                     "pid": state["pid"], "chimerax_version": state.get("chimerax_version"),
                     "times": dict(times, reported=time.time())})
        while not stop.wait(0.5):
            ended = launcher._poll(state)
            if ended:
                print("CXS job: ChimeraX ended (%s)" % ended, flush=True)
                return 1
        return 0
    except Exception as err:
        _say(FAILED, {"message": str(err)})
        return 1
    finally:
        if relay is not None:
            relay.shutdown()
            relay.server_close()
        if state:
            launcher._stop(state, spec["stop_grace"])


def main(argv: Sequence[str]) -> int:
    path = argv[1]
    with open(path) as text:
        spec = json.load(text)
    os.unlink(path)
    return run(spec)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
