"""Figure 9: what a session's own cgroups cost its start (docs/limits.md).

9. Cold create (POOL_SIZE=0) with CGROUPS=auto vs CGROUPS=off, interleaved
   (at least MIN_RUNS pairs), at the defaults otherwise (the sandbox,
   gthread); the ratio of medians.
   Skipped, saying so, where the host gives no cgroups.
9b. Why 9 is near 1: one move into a new cgroup, made apart from any other
   (as session starts are). A pid written to cgroup.procs (a `sleep` of the
   benchmark's own) makes cgroup v1 wait for an RCU grace period when no
   move came lately; the spawned shell's own way (spawn.join: `0`, itself,
   to the file Cgroups.create names) is timed as a whole `sh` run less the
   same run writing to /dev/null."""
import os
import statistics
import subprocess
import time
import uuid

import requests

from app.services.processes.launchers import cgroups, spawn


MIN_RUNS = 21       # pairs: a start is ~190 ms and moves by ~10 ms between runs, the size of a 5 % target


def limits_figures(server_class, workdir, workers, runs):
    runs = max(runs, MIN_RUNS)
    if cgroups.choose("auto", "", "probe", cgroups.SessionLimits()) is None:
        return [(workers, "9. cold create, cgroups on vs off (median)", "no cgroups on this host", "", "<= 1.05",
                 True)]
    servers = {name: server_class(os.path.join(workdir, name), workers, POOL_SIZE=0, CGROUPS=name).start()
               for name in ("auto", "off")}
    created, moves = {name: [] for name in servers}, {"procs": [], "self": []}
    try:
        users = {name: server.token("bench") for name, server in servers.items()}
        for i in range(runs):
            # Each goes first in turn, so neither always follows the other's stop.
            for name in list(servers)[::1 if i % 2 else -1]:
                server = servers[name]
                started = time.perf_counter()
                reply = requests.post(server.url + "/api/sessions", json={}, headers=users[name], timeout=120)
                created[name].append(time.perf_counter() - started)
                assert reply.status_code == 201, reply.text
                requests.delete(server.url + "/api/sessions/" + reply.json()["id"], headers=users[name], timeout=60)
    finally:
        for server in servers.values():
            server.stop()
    for _ in range(runs):
        time.sleep(0.2)         # long past the last move's grace period, as between two starts
        moves["procs"].append(one_move("procs"))
        time.sleep(0.2)
        moves["self"].append(one_move("self"))
    on, off = statistics.median(created["auto"]), statistics.median(created["off"])
    return [(workers, "9. cold create, cgroups on vs off (median)", "%.0f ms vs %.0f ms" % (on * 1e3, off * 1e3),
             "ratio %.3f" % (on / off), "<= 1.05", on / off <= 1.05),
            (workers, "9b. one move into a new cgroup, p50: the spawned shell's own (spawn.join) vs a pid "
             "written to cgroup.procs", "%.2f ms vs %.2f ms" % (statistics.median(moves["self"]) * 1e3,
                                                               statistics.median(moves["procs"]) * 1e3),
             "9's on - off: %.1f ms" % ((on - off) * 1e3), "informational", True)]


def one_move(how):
    groups = cgroups.choose("auto", "", "bench-move", cgroups.SessionLimits())
    name = uuid.uuid4().hex
    joining = groups.create(name)
    try:
        if how == "self":
            started = time.perf_counter()
            subprocess.run(spawn.join(joining, ["true"]), check=True)
            moved = time.perf_counter() - started
            started = time.perf_counter()
            subprocess.run(spawn.join(["/dev/null"] * len(joining), ["true"]), check=True)
            return moved - (time.perf_counter() - started)
        sleeper = subprocess.Popen(["sleep", "60"])
        try:
            started = time.perf_counter()
            with open(os.path.join(os.path.dirname(joining[0]), "cgroup.procs"), "w") as f:
                f.write(str(sleeper.pid))
            return time.perf_counter() - started
        finally:
            sleeper.kill()
            sleeper.wait()
    finally:
        groups.remove(name, wait=10)
