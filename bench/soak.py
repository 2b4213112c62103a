"""`make soak`: 20 clients of mixed traffic for SOAK_MINUTES (default 10), then the invariants.

Real gunicorn with `make run`'s configuration (4 workers, gunicorn.conf.py's
worker class), the real runtime, a warm pool; loopback only. Reports the
responses by status (every 5xx must be a 502/503/504 with a reason), the
invariants after two sweeps, and each worker's resident memory at the start
and the end. Exits non-zero if anything failed. Everything it starts is
stopped before it exits.
"""
import argparse
import collections
import os
import random
import shutil
import sys
import tempfile
import threading
import time

import psutil
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.invariants import broken_invariants, runtime_for  # noqa: E402
from bench.run import Server, end_all  # noqa: E402

POOL_SIZE, SWEEP_INTERVAL, MAX_SESSIONS = 2, 5, 30
# A worker's resident memory climbs for the first minutes of traffic (its
# threads' stacks and malloc arenas are touched, pools of connections and
# caches fill) and then stays: flat means no growth after that warm-up.
# tracemalloc in a worker showed the Python heap flat from the first minute
# (RELIABILITY.md).
WARMUP_FRACTION, FLAT_TOLERANCE = 0.3, 0.05


def _workers(server):
    return psutil.Process(server.proc.pid).children()


def worker_rss(server):
    return {p.pid: round(p.memory_info().rss / 2**20, 1) for p in _workers(server)}


def rss_by_kind(server):
    """All workers' resident memory by kind of mapping (MiB): where growth is.
    `heap` is the main malloc arena, `anonymous` the other, Python's object
    arenas, thread stacks and large allocations, `files` libraries and mapped files (the metrics'
    files, SQLite's shared memory)."""
    kinds = collections.Counter()
    for worker in _workers(server):
        try:
            maps = worker.memory_maps(grouped=True)
        except psutil.Error:
            continue
        for m in maps:
            kinds[_mapping_kind(m.path)] += m.rss
    return {kind: round(size / 2**20, 1) for kind, size in sorted(kinds.items())}


def _mapping_kind(path):
    if path == "[heap]":
        return "heap"
    if path == "" or path.startswith("[anon"):
        return "anonymous"
    if path.startswith("[stack"):
        return "stack"
    if path.startswith("["):
        return "other"
    return "files"


def client(server, headers, seed, stop_at, counts, bad):
    rng, mine = random.Random(seed), []
    api = server.url + "/api/sessions"
    while time.monotonic() < stop_at:
        try:
            if not mine or (len(mine) < 2 and rng.random() < 0.1):
                reply = requests.post(api, json={"idle_timeout": 120}, headers=headers, timeout=120)
                if reply.status_code == 201:
                    mine.append(reply.json()["id"])
            else:
                sid = rng.choice(mine)
                kind = rng.choice(["command", "command", "command", "get", "list", "beat", "snapshot", "delete"])
                if kind == "command":
                    text = rng.choice(["pwd", "version", "view", "turn y 10", "foo", "cd /"])
                    reply = requests.post(api + "/%s/commands" % sid, json={"command": text}, headers=headers,
                                          timeout=60)
                elif kind == "get":
                    reply = requests.get(api + "/" + sid, headers=headers, timeout=30)
                elif kind == "list":
                    reply = requests.get(api, headers=headers, timeout=30)
                elif kind == "beat":
                    reply = requests.put(api + "/%s/heartbeat" % sid, headers=headers, timeout=30)
                elif kind == "snapshot":
                    reply = requests.get(api + "/%s/snapshot?width=64&height=48" % sid, headers=headers, timeout=60)
                else:
                    reply = requests.delete(api + "/" + sid, headers=headers, timeout=60)
                    mine.remove(sid)
            counts[reply.status_code] += 1
            if reply.status_code >= 500:
                reason = reply.json().get("error", {}).get("code") if reply.content else None
                if reply.status_code not in (502, 503, 504) or not reason:
                    bad.append((reply.status_code, reply.text[:200]))
                time.sleep(0.2)
        except requests.RequestException as err:
            bad.append(("connection", repr(err)[:200]))
            time.sleep(0.2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "10")))
    parser.add_argument("--clients", type=int, default=20)
    opts = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="cxs-soak-")
    server = Server(workdir, 4, POOL_SIZE=POOL_SIZE, SWEEP_INTERVAL=SWEEP_INTERVAL, MAX_SESSIONS=MAX_SESSIONS,
                    MAX_SESSIONS_PER_USER=3)
    failed = False
    try:
        server.start()
        users = [server.token("soak%d" % i) for i in range(opts.clients)]
        admin = server.token("root", "admin")
        rss_start = worker_rss(server)
        counts, bad = collections.Counter(), []
        stop_at = time.monotonic() + opts.minutes * 60
        threads = [threading.Thread(target=client, args=(server, users[i], i, stop_at, counts, bad))
                   for i in range(opts.clients)]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        samples = []            # total worker RSS once a minute: flat, or growing?
        rss_warm, kinds_warm = None, {}
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=max(0.1, 60 / len(threads)))
            if rss_warm is None and time.monotonic() - began >= WARMUP_FRACTION * opts.minutes * 60:
                rss_warm, kinds_warm = worker_rss(server), rss_by_kind(server)
            if time.monotonic() - began >= 60 * (len(samples) + 1):
                samples.append(round(sum(worker_rss(server).values()), 1))
        rss_end, kinds_end = worker_rss(server), rss_by_kind(server)
        # Workers recycled by MAX_REQUESTS have new pids: compare the ones present at both times.
        common = set(rss_warm or {}) & set(rss_end)
        warm_total, end_total = sum(rss_warm[p] for p in common), sum(rss_end[p] for p in common)
        flat = not common or end_total <= warm_total * (1 + FLAT_TOLERANCE)
        time.sleep(2 * SWEEP_INTERVAL + 1)       # two sweeps: the invariants are theirs to restore
        runtime = runtime_for(server.env)
        broken = broken_invariants(runtime, POOL_SIZE, MAX_SESSIONS)
        total = sum(counts.values())
        print("\nChimeraX session service soak: %d clients, %.1f min, %d requests (%.1f/s)\n"
              % (opts.clients, (time.monotonic() - began) / 60, total, total / max(1, time.monotonic() - began)))
        print("| status | responses |\n|---|---|")
        for status, count in sorted(counts.items(), key=lambda item: str(item[0])):
            print("| %s | %d |" % (status, count))
        print("\n| check | result |\n|---|---|")
        print("| 5xx without a reason, 500s, dropped connections | %d %s |" % (len(bad), bad[:3] if bad else ""))
        print("| invariants after two sweeps | %s |" % ("hold" if not broken else "BROKEN: %s" % broken))
        print("| worker RSS at start, idle (MiB) | %s |" % sorted(rss_start.values()))
        print("| worker RSS after the warm-up (%d%% of the run) (MiB) | %s |"
              % (WARMUP_FRACTION * 100, sorted((rss_warm or {}).values())))
        print("| worker RSS at end (MiB) | %s |" % sorted(rss_end.values()))
        print("| all workers' RSS, once a minute (MiB) | %s |" % samples)
        print("| all workers' RSS by kind after the warm-up, at end (MiB) | %s; %s |" % (kinds_warm, kinds_end))
        print("| memory after the warm-up | %s (%.1f -> %.1f MiB, tolerance %d%%) |" % (
            "flat" if flat else "GROWING", warm_total, end_total, FLAT_TOLERANCE * 100))
        failed = bool(bad or broken or not flat)
        end_all(server, admin)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
