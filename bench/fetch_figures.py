"""Figure 10: what fetching through the service costs (docs/fetching.md).

10a. `open` of a cached database entry vs `open` of the same file from the
     session's workspace (medians): the cache path must cost no more than 10 %.
10c. A session's first `open` of an entry another session had fetched (the
     agent asks the service once per entry and session).
10b. A first fetch's own cost: `open` of a new entry minus `open` of a cached
     one, minus a plain HTTP GET of the same file from the mirror (medians).

A loopback mirror serves the entries; the service runs at its defaults
(sandbox, gthread) with FETCH_MIRRORS pointing at it."""
import os
import statistics
import time

import requests

from tests.fetch_mirror import Mirror

PDB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".chimerax", "venv", "lib",
                   "python3.11", "site-packages", "chimerax", "md_crds", "dcd", "MDToolsMarch97", "data",
                   "alanin.pdb")


class _Everywhere(dict):
    """Mirror files: the same body under every path (each new id a new entry)."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def get(self, key, default=None):
        return self.body


def fetch_figures(server_class, workdir, workers, runs):
    body = open(PDB, "rb").read()
    mirror = Mirror(_Everywhere(body))      # the tests' loopback mirror (tests/fetch_mirror.py)
    server = server_class(workdir, workers, POOL_SIZE=0, FETCH_MIRRORS=mirror.mirrors(),
                          FETCH_PER_USER_PER_MIN=100000).start()
    try:
        user = server.token("bench")
        sid = requests.post(server.url + "/api/sessions", json={}, headers=user, timeout=120).json()["id"]
        url = server.url + "/api/sessions/" + sid

        def timed(command):
            started = time.perf_counter()
            reply = requests.post(url + "/commands", json={"command": command}, headers=user, timeout=120)
            elapsed = time.perf_counter() - started
            assert reply.status_code == 200 and reply.json()["ok"], reply.text
            requests.post(url + "/commands", json={"command": "close"}, headers=user, timeout=60)
            return elapsed
        requests.post(url + "/files", files={"file": ("alanin.pdb", body)}, headers=user, timeout=60)
        timed("open 9zzz format pdb")       # warms both paths once
        cached, local, first, get = [], [], [], []
        for i in range(runs):
            # Each in turn goes first: whichever follows a new fetch (the
            # broker's writes, the download's page cache) would pay for it.
            pair = [(cached, "open 9zzz format pdb"), (local, "open alanin.pdb")]
            for times, command in pair[::1 if i % 2 else -1]:
                times.append(timed(command))
            first.append(timed("open %d%03d format pdb" % (1 + i // 1000, i % 1000)))
            started = time.perf_counter()
            assert requests.get(mirror.base + "files.rcsb.org/download/x.pdb", timeout=30).content
            get.append(time.perf_counter() - started)
        requests.delete(url, headers=user, timeout=60)
        other = []          # a session's first open of an entry another session had fetched
        for _ in range(max(3, runs // 4)):
            sid = requests.post(server.url + "/api/sessions", json={}, headers=user, timeout=120).json()["id"]
            url = server.url + "/api/sessions/" + sid
            other.append(timed("open 9zzz format pdb"))
            requests.delete(url, headers=user, timeout=60)
    finally:
        server.stop()
        mirror.close()
    ratio = statistics.median(cached) / statistics.median(local)
    extra = statistics.median(first) - statistics.median(cached) - statistics.median(get)
    return [
        (workers, "10a. open of a cached entry vs the same file from the workspace (median)",
         "%.1f ms vs %.1f ms" % (statistics.median(cached) * 1e3, statistics.median(local) * 1e3),
         "ratio %.3f" % ratio, "<= 1.10", ratio <= 1.10),
        (workers, "10c. a session's first open of an entry cached by another (median)",
         "%.1f ms" % (statistics.median(other) * 1e3), "vs workspace x%.2f" % (
             statistics.median(other) / statistics.median(local)), "informational", True),
        (workers, "10b. first fetch minus cached open minus plain GET (median)",
         "%.1f ms (GET %.1f ms)" % (extra * 1e3, statistics.median(get) * 1e3), "", "<= 50 ms", extra <= 0.050),
    ]
