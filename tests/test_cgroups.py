"""Each session's share of the host, judged by outcomes on real cgroups
(docs/limits.md): the memory limit ends only the session that crossed it, as
`memory_limit`; a fork bomb leaves the others able to start processes; a
busy loop is held to SESSION_CPUS; usage is what was used; nothing is left
behind. Skipped, with the reason, where the host gives no cgroups."""
import os
import re
import threading
import time

import psutil
import pytest
import requests

from app.services.processes.launchers import cgroups

from .cgroup_check import cgroups_here
from .conftest import sandbox_tree, wait_until
from .test_sandbox import api, command, new_session, place, workspace

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not cgroups_here(), reason="this host gives the service no cgroups")]

NAME = re.compile(r"cxs-[0-9a-f]{16}-[0-9a-f]{32}$")


def session_cgroups():
    """Every session cgroup (of any service) where this test run's services make them."""
    probe = cgroups.choose("auto", "", "probe", cgroups.SessionLimits())
    found = set()
    for base in probe.bases.values():
        found.update(os.path.join(base, entry) for entry in os.listdir(base) if NAME.match(entry))
    return found


def available_memory():
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemAvailable")


class Watch(threading.Thread):
    """The lowest MemAvailable seen while it runs (polled every 10 ms)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.low, self.done = available_memory(), threading.Event()

    def run(self):
        while not self.done.wait(0.01):
            self.low = min(self.low, available_memory())

    def stop(self):
        self.done.set()
        self.join()
        return self.low


def view(server, headers, session_id):
    return api(server, headers, "GET", "/" + session_id).json()


def test_crossing_the_memory_limit_ends_that_session_as_memory_limit_and_no_other(gunicorn_server):
    limit_mb = 600
    # The address space well above it: the cgroup, not RLIMIT_AS, must be what stops the growth.
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, SESSION_MEMORY_MB=limit_mb,
                             SESSION_ADDRESS_SPACE_MB=16384)
    admin, bob = server.token("boss", "admin"), server.token("bob")
    hog, other = new_session(server, admin), new_session(server, bob)
    # Grows 50 MB at a time, each page touched: resident, not just reserved.
    place(workspace(server, hog), "grow.py", "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 2**20))\n")
    before = available_memory()
    watch = Watch()
    watch.start()
    try:
        reply = command(server, admin, hog, "runscript grow.py", timeout=120)
    finally:
        low = watch.stop()
    assert reply.status_code == 502, reply.text
    assert "memory limit" in reply.json()["error"]["message"] and "SESSION_MEMORY_MB" in reply.json()["error"]["message"]
    ended = view(server, admin, hog)
    assert ended["status"] not in ("active", "starting") and ended["end_reason"] == "memory_limit", ended
    assert command(server, bob, other, "version").json()["ok"]
    # The host gave at most the limit (and what else ran meanwhile: 128 MB of slack).
    assert before - low <= (limit_mb + 128) * 2**20, (before - low) / 2**20


def test_a_fork_bomb_in_one_session_leaves_another_able_to_start_processes(gunicorn_server):
    limit = 96
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, SESSION_MAX_PROCESSES=limit)
    admin = server.token("boss", "admin")
    bomb, other = new_session(server, admin), new_session(server, admin)
    # Bounded, so that a broken limit costs the shared machine little: each child sleeps, then ends.
    place(workspace(server, bomb), "bomb.py", (
        "import os, time\nstarted = failed = 0\n"
        "for _ in range(2000):\n"
        "    try:\n        pid = os.fork()\n    except OSError:\n        failed += 1\n        continue\n"
        "    if pid == 0:\n        time.sleep(20)\n        os._exit(0)\n    started += 1\n"
        "open('bomb.txt', 'w').write('%d %d' % (started, failed))\n"))
    place(workspace(server, other), "spawn.py", (
        "import subprocess\nprocs = [subprocess.Popen(['true']) for _ in range(20)]\n"
        "open('spawn.txt', 'w').write(str(sum(p.wait() == 0 for p in procs)))\n"))
    assert command(server, admin, bomb, "runscript bomb.py", timeout=120).json()["ok"]
    started, failed = map(int, open(os.path.join(workspace(server, bomb), "bomb.txt")).read().split())
    assert failed > 0 and started < limit, (started, failed)
    pid = view(server, admin, bomb)["pid"]
    assert len([t for p in sandbox_tree(pid) for t in _threads(p)]) <= limit
    # Its neighbour, and the host, still start processes.
    assert command(server, admin, other, "runscript spawn.py", timeout=60).json()["ok"]
    assert open(os.path.join(workspace(server, other), "spawn.txt")).read() == "20"
    assert psutil.Popen(["true"]).wait() == 0


def _threads(proc):
    try:
        return proc.threads()
    except psutil.Error:
        return []


def test_a_busy_loop_is_held_to_session_cpus(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, SESSION_CPUS=0.5)
    admin = server.token("boss", "admin")
    busy = new_session(server, admin)
    # Two spinning threads in ChimeraX: unlimited they would take both cores.
    place(workspace(server, busy), "spin.py", (
        "import threading, time\nend = time.time() + 8\n"
        "def spin():\n    while time.time() < end:\n        pass\n"
        "for _ in range(2):\n    threading.Thread(target=spin, daemon=True).start()\n"))
    tree = sandbox_tree(view(server, admin, busy)["pid"])
    assert command(server, admin, busy, "runscript spin.py").json()["ok"]

    def cpu():
        total = 0.0
        for proc in tree:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        return total
    start, began = cpu(), time.monotonic()
    time.sleep(5)       # the measuring window itself, not a wait for a condition
    cores = (cpu() - start) / (time.monotonic() - began)
    print("measured: %.2f cores over 5 s with SESSION_CPUS=0.5" % cores)
    assert 0.3 <= cores <= 0.6, cores


def test_usage_shows_a_known_allocation(gunicorn_server):
    # Every GET reads the cgroup (not a reading up to USAGE_VIEW_SECONDS old): before and after are apart.
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, USAGE_VIEW_SECONDS=0)
    admin = server.token("boss", "admin")
    session = new_session(server, admin)
    size = 400 * 2**20
    place(workspace(server, session), "hold.py", "import builtins\nbuiltins.held = bytearray(%d)\n" % size)
    before = view(server, admin, session)
    assert before["limits"]["enforced_by"].startswith("cgroup v") and before["limits"]["memory_mb"] == 4096
    before = before["usage"]
    assert before["memory_bytes"] and before["processes"] >= 1, before
    assert command(server, admin, session, "runscript hold.py").json()["ok"]
    after = view(server, admin, session)["usage"]
    grown = after["memory_peak_bytes"] - before["memory_bytes"]
    assert abs(grown - size) <= 0.2 * size, (grown / 2**20, after)
    assert after["cpu_seconds"] > before["cpu_seconds"] > 0


def store_service_id(server):
    store = server.store()
    try:
        return store.service_id()
    finally:
        store.close()


def test_fifty_sessions_created_and_ended_leave_no_cgroup(gunicorn_server):
    before = session_cgroups()
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, MAX_SESSIONS=12, MAX_SESSIONS_PER_USER=12)
    admin = server.token("boss", "admin")
    service = store_service_id(server)
    made = set()
    for _ in range(10):
        batch = [new_session(server, admin) for _ in range(5)]
        made |= {path for path in session_cgroups() if service in path}
        for session in batch:
            assert api(server, admin, "DELETE", "/" + session).status_code in (200, 202, 204)
    assert len(made) >= 5 * 4        # each of a batch's sessions had its own (in each controller)
    server.stop()                   # the warm pool's processes go too
    wait_until(lambda: session_cgroups() <= before, 10, message="every session cgroup to be removed")


def test_leftover_cgroups_of_processes_that_are_gone_are_removed_and_live_ones_kept(gunicorn_server, tmp_path):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, POOL_SIZE=0)
    admin = server.token("boss", "admin")
    live = new_session(server, admin)
    service = store_service_id(server)
    probe = cgroups.choose("auto", "", service, cgroups.SessionLimits())
    stray = "0" * 32            # as a worker killed between making a cgroup and starting the process leaves one
    probe.create(stray)
    os.utime(probe.paths(stray)["memory"], (time.time() - 3600, time.time() - 3600))
    for path in probe.paths(stray).values():
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    server.kill_hard()
    restarted = gunicorn_server(workers=2, SWEEP_INTERVAL=60, POOL_SIZE=0, DATABASE_PATH=server.env["DATABASE_PATH"],
                                WORKSPACE_ROOT=server.env["WORKSPACE_ROOT"])
    assert stray not in probe.names()
    assert view(restarted, admin, live)["status"] == "active"       # adopted, its cgroup kept
    assert len(probe.names()) == 1
    assert command(restarted, admin, live, "version").json()["ok"]
    health = requests.get(restarted.url + "/api/health", headers=admin, timeout=5).json()
    assert health["checks"]["chimerax"]["limits"]["enforced_by"].startswith("cgroup v"), health
    assert "limits" not in requests.get(restarted.url + "/api/health", timeout=5).json()["checks"]["chimerax"]
