"""The node side of a session on Slurm, run by the job's batch script:
`python -m app.services.launchers.slurm_job SPEC`.

On the node it starts ChimeraX exactly as the local launcher does on the
service's host — same sandbox (bubblewrap where the node has it), same
limits, same agent — with the secret the service chose, read from SPEC (a
file only the service account can read, removed at once: the secret never
passes through slurmctld, the batch script or a command line).

A sandboxed ChimeraX has no network; its agent listens on a Unix socket. So
that the service on another host can reach it, a relay outside the sandbox
listens on the node's own address (its Slurm NodeAddr, never an assumed
loopback) and forwards bytes to that socket; the agent still checks the
secret of every request. The relay's address is reported on stdout (the
job's output file, on the shared file system) as one line the service reads:

    CXS job ready: {"host": ..., "port": ..., "node": ..., "sandbox": ...}

The job ends when ChimeraX does; SIGTERM (scancel, the time limit) stops
ChimeraX and everything it started first.
"""
import json
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading

READY = "CXS job ready: "
FAILED = "CXS job failed: "


class Relay(socketserver.ThreadingTCPServer):
    """TCP on the node's address -> the agent's Unix socket, byte for byte."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, target):
        super().__init__(address, _Pipe)
        self.target = target


class _Pipe(socketserver.BaseRequestHandler):
    def handle(self):
        from ..chimerax_client import unix_address
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with unix_address(self.server.target) as address:
                upstream.connect(address)
        except OSError:
            upstream.close()
            return
        back = threading.Thread(target=_copy, args=(upstream, self.request), daemon=True)
        back.start()
        _copy(self.request, upstream)
        back.join()
        upstream.close()


def _copy(source, target):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def node_address(name=None):
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


def _say(prefix, data):
    print(prefix + json.dumps(data), flush=True)


def run(spec):
    from . import local_launcher
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *args: stop.set())
    address = spec["bind"] or node_address()
    launcher = local_launcher(spec["config"], spec["service_id"])
    launcher.host = address         # an unsandboxed agent listens on the node's address itself
    launcher.port_range = None
    state, relay = {}, None
    try:
        state = launcher.start(spec["marker"], spec["workspace"], None, secret=spec["secret"])
        state = launcher.wait_ready(state, spec["startup_timeout"])
        where = state["channel"]
        if where.get("path"):
            relay = Relay((address, 0), where["path"])
            threading.Thread(target=relay.serve_forever, name="relay", daemon=True).start()
            host, port = relay.server_address[:2]
        else:
            host, port = where["host"], where["port"]
        _say(READY, {"host": host, "port": port, "node": socket.gethostname().split(".")[0],
                     "sandbox": state["sandbox"], "pid": state["pid"]})
        while not stop.wait(0.5):
            ended = launcher.poll(state)
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
            launcher.stop(state, spec["stop_grace"])


def main(argv):
    path = argv[1]
    with open(path) as text:
        spec = json.load(text)
    os.unlink(path)
    return run(spec)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
