"""A structure-database mirror on loopback, laid out under the real sources'
hosts and paths (the file names ChimeraX's own URL templates ask for), for
the fetch tests: it counts the requests per path and can misbehave on
purpose (hang, send without end, redirect elsewhere)."""
import collections
import gzip
import http.server
import os
import struct
import subprocess
import threading
import time

from app.services.processes.locate import TEST_RUNTIME

from .conftest import alanin_pdb

SOURCES = ("http://files.rcsb.org/", "https://files.rcsb.org/", "https://alphafold.ebi.ac.uk/",
           "https://www.rbvi.ucsf.edu/", "ftp://ftp.ebi.ac.uk/", "https://ftp.ebi.ac.uk/",
           "http://www.ebi.ac.uk/", "https://files.wwpdb.org/", "http://bad.example/")


def small_map(size=8):
    """An MRC map (mode 2, float32), `size` cubed."""
    header = struct.pack("<3i i 3i 3i 3f 3f 3i 3f", size, size, size, 2, 0, 0, 0, size, size, size,
                         float(size), float(size), float(size), 90.0, 90.0, 90.0, 1, 2, 3, 0.0, 1.0, 0.5)
    header += b"\0" * (208 - len(header)) + b"MAP " + b"\x44\x44\0\0" + b"\0" * (1024 - 216)
    data = struct.pack("<%df" % size ** 3, *[((i * 7) % 11) / 10.0 for i in range(size ** 3)])
    return header + data


def make_cif(folder):
    """alanin.pdb saved as mmCIF by the runtime itself."""
    out = os.path.join(folder, "alanin.cif")
    subprocess.run([TEST_RUNTIME, "--nogui", "--silent", "--exit", "--cmd", "open %s" % alanin_pdb(),
                    "--cmd", "save %s format mmcif" % out], check=True, capture_output=True, timeout=120,
                   stdin=subprocess.DEVNULL, cwd=folder)
    return open(out, "rb").read()


class Mirror(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files = files          # "host/path" -> bytes
        self.requests = collections.Counter()
        self.hang = threading.Event()
        self.behaviour = {}         # "host/path" -> "hang" | "endless" | "slow" | ("redirect", url)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self):
        return "http://127.0.0.1:%d/" % self.server_address[1]

    def mirrors(self):
        """FETCH_MIRRORS pointing every source at this server."""
        return ",".join("%s=%s%s/" % (source, self.base, source.split("://", 1)[1].rstrip("/"))
                        for source in SOURCES)

    def close(self):
        self.hang.set()
        self.shutdown()
        self.server_close()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        key = self.path.lstrip("/")
        self.server.requests[key] += 1
        behaviour = self.server.behaviour.get(key)
        if behaviour == "hang":
            self.server.hang.wait(120)
            return
        if behaviour == "endless":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            try:
                while not self.server.hang.is_set():
                    self.wfile.write(b"x" * 65536)
            except OSError:
                pass
            return
        if behaviour == "slow":
            time.sleep(0.5)         # long enough for every concurrent asker to find the download under way
        if isinstance(behaviour, tuple):
            self.send_response(302)
            self.send_header("Location", behaviour[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.server.files.get(key)
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def layout(folder):
    """The mirror's files, under the paths ChimeraX 1.7's fetchers ask for."""
    cif, pdb = make_cif(folder), open(alanin_pdb(), "rb").read()
    files = {}
    for pdb_id in ("1abc", "2abc", "3abc", "4abc", "5abc", "6abc", "7abc", "1big"):
        files["files.rcsb.org/download/%s.cif" % pdb_id] = cif
        files["files.rcsb.org/download/%s.pdb" % pdb_id] = pdb
    files["alphafold.ebi.ac.uk/files/AF-P69905-F1-model_v4.cif"] = cif
    files["www.rbvi.ucsf.edu/chimerax/data/status/alphafold_database3.json"] = b'{"database_version": "4"}'
    emdb = "ftp.ebi.ac.uk/pub/databases/emdb/structures/EMD-1080/"
    files[emdb + "map/emd_1080.map.gz"] = gzip.compress(small_map())
    files[emdb + "header/emd-1080.xml"] = b"<emdEntry/>"
    return files


