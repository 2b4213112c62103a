"""A protocol-faithful fake ChimeraX, only for failure modes real ChimeraX cannot
produce on demand: dying during start-up, never becoming ready, ignoring
SIGTERM with a child in its process group. Takes the real flags and speaks
the agent's TCP channel (SANDBOX=none); `--mode` picks the failure. Normal
behaviour is always tested with the real runtime.
"""
import argparse
from http.server import BaseHTTPRequestHandler, HTTPServer
import json
import os
import signal
import subprocess
import sys
import time


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") != "Bearer %s" % self.server.secret:
            self.send_response(401)
            self.end_headers()
            return
        body = json.dumps({"json values": [None], "python values": [None],
                           "log messages": {"note": ["fake\n"], "warning": [], "error": [], "bug": []},
                           "error": None}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="serve",
                        choices=["serve", "exit-at-start", "never-ready", "stubborn"])
    parser.add_argument("--cmd", action="append", default=[])
    opts, _ = parser.parse_known_args()
    if opts.mode == "exit-at-start":
        print("fake: failing on purpose", flush=True)
        sys.exit(3)
    if opts.mode == "never-ready":
        while True:
            time.sleep(1)
    if opts.mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # A grandchild in the same process group, also deaf to SIGTERM.
        subprocess.Popen([sys.executable, "-c",
                          "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                          "[time.sleep(1) for _ in iter(int, 1)]  # fake_chimerax child"])
    server = HTTPServer(("127.0.0.1", int(os.environ.get("CXS_AGENT_PORT", "0"))), Handler)
    server.secret = os.environ.get("CXS_AGENT_SECRET")
    # Says the release of the runtime it stands in for (a supported one).
    print("CXS agent ready: tcp 127.0.0.1 %d chimerax 1.7.1" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
