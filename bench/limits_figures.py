"""Figure 9: what a session's own cgroups cost its start (docs/limits.md).

9. Cold create (POOL_SIZE=0) with CGROUPS=auto vs CGROUPS=off, interleaved,
   at the defaults otherwise (the sandbox, gthread); the ratio of medians.
   Skipped, saying so, where the host gives no cgroups."""
import os
import statistics
import time

import requests

from app.services.processes.launchers import cgroups


def limits_figures(server_class, workdir, workers, runs):
    if cgroups.choose("auto", "", "probe", cgroups.SessionLimits()) is None:
        return [(workers, "9. cold create, cgroups on vs off (median)", "no cgroups on this host", "", "<= 1.05",
                 True)]
    servers = {name: server_class(os.path.join(workdir, name), workers, POOL_SIZE=0, CGROUPS=name).start()
               for name in ("auto", "off")}
    created = {name: [] for name in servers}
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
    on, off = statistics.median(created["auto"]), statistics.median(created["off"])
    return [(workers, "9. cold create, cgroups on vs off (median)", "%.0f ms vs %.0f ms" % (on * 1e3, off * 1e3),
             "ratio %.3f" % (on / off), "<= 1.05", on / off <= 1.05)]
