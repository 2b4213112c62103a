"""Figure 7: sessions on a real single-node Slurm (tests/slurm.py).

7a. cold create through the API vs the same batch script submitted straight
    with sbatch, timed until the job reports its channel (what the service
    adds to the scheduler's own start), interleaved run by run;
7b. warm create from pooled jobs.

slurmctld starts a queued batch job in its background loop, once a second:
a job waits from its sbatch to that loop's next turn, 0 to 1 s. Run after run
the bench's own rhythm (a start, a stop, the next start) kept each side at
about the same point of that cycle, so one side could wait ~1 s longer every
time for where it happened to fall, not for anything it did. Both sides now
start half a cycle after the loop's last turn (MID_CYCLE), the average wait,
predicted from its last turns (a loaded machine delays a turn by up to
~0.1 s: half a cycle keeps an error from putting the two sides on different
turns). What the API does before its sbatch (5-10 ms) is thereby always
absorbed by the wait; for a user at a random moment it costs the next turn
in that fraction of creates (~1 %): the median moves by nothing either way.
With a random phase per pair instead, the runs' times spread over 0.9-1.5 s
and the ratio of the two medians came down to one pair's (1.077 with every
pair within 3 % but one). Each side goes first in every other pair (what the
one before leaves behind, e.g. a job still exiting, falls on both).
"""
import os
import re
import secrets
import statistics
import sys
import time
import uuid

import requests

from bench.run import Server, pct, warm_create


def _config(server_env):
    """The service's settings as the server resolves them (for the raw baseline)."""
    from config import Config
    config = {name: getattr(Config, name) for name in dir(Config) if name.isupper()}
    for name, value in server_env.items():
        if name in config and not isinstance(config[name], (list, dict)):
            config[name] = type(config[name])(value) if not isinstance(config[name], bool) else value == "true"
    return config


ALLOCATED = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)\] sched: Allocate JobId=")


def scheduler_turns(log_path):
    """Wall-clock times of slurmctld's last two job allocations (its background loop's turns)."""
    turns = []
    with open(log_path, errors="replace") as log:
        for line in log:
            found = ALLOCATED.match(line)
            if found:
                turns = turns[-1:] + [time.mktime(time.strptime(found.group(1), "%Y-%m-%dT%H:%M:%S"))
                                      + float(found.group(2))]
    return turns


MID_CYCLE = 0.5


def at_phase(log_path, phase):
    """Sleep until `phase` (0..1) of slurmctld's scheduling cycle, predicted from its
    last two turns (the loop's period is a little over 1 s)."""
    turns = scheduler_turns(log_path)
    if not turns:
        return
    period = 1.0
    if len(turns) == 2 and round(turns[1] - turns[0]) >= 1:
        period = (turns[1] - turns[0]) / round(turns[1] - turns[0])
    time.sleep((turns[-1] + phase * period - time.time()) % period)


def raw_start(launcher, root):
    """sbatch of the service's own batch script and spec (its arguments and
    environment too), then poll its output for the report."""
    from app.services.processes.launchers.slurm_job import READY
    from app.store.models import ProcessHandle
    workspace = os.path.join(root, "raw-" + uuid.uuid4().hex)
    launcher.make_workspace(workspace)
    token = uuid.uuid4().hex
    paths = launcher.paths(token)
    os.makedirs(launcher.control_dir, mode=0o700, exist_ok=True)
    launcher.write_spec("raw:" + token, workspace, secrets.token_urlsafe(32), paths)
    started = time.perf_counter()
    job = launcher.slurm.submit(launcher.batch_script(paths["spec"]),
                                launcher.sbatch_args("cxs-raw-" + token, paths["output"], workspace))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with open(paths["output"]) as out:
                if READY in out.read():
                    break
        except FileNotFoundError:
            pass
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    launcher.stop(ProcessHandle({"job": job, "token": token}), 2)
    os.rmdir(workspace)
    return elapsed


def slurm_figures(workdir, workers, runs):
    from app.services.processes.launchers import build_launcher
    from tests.slurm import SlurmCluster
    cluster = SlurmCluster().start()
    rows = []
    try:
        env = {"LAUNCHER": "slurm", "SLURM_CONF": cluster.conf}
        server = Server(os.path.join(workdir, "slurm-cold"), workers, POOL_SIZE=0, **env).start()
        try:
            launcher = build_launcher(_config(server.env), "bench-raw")
            user = server.token("bench")
            log_path = os.path.join(cluster.base, "slurmctld.log")
            cold, raw = [], []

            def through_api():
                started = time.perf_counter()
                created = requests.post(server.url + "/api/sessions", json={}, headers=user, timeout=300)
                elapsed = time.perf_counter() - started
                assert created.status_code == 201, created.text
                requests.delete(server.url + "/api/sessions/" + created.json()["id"], headers=user, timeout=120)
                return elapsed

            sides = (lambda: raw_start(launcher, server.env["WORKSPACE_ROOT"]), through_api)
            for run in range(runs + 1):         # the first pair warms up and finds the cycle
                times = []
                for side in sides if run % 2 else reversed(sides):     # each side goes first in turn
                    at_phase(log_path, MID_CYCLE)
                    times.append(side())
                raw_time, cold_time = times if run % 2 else reversed(times)
                print("7a -w %d pair %d: raw %.0f ms, API %.0f ms%s" % (
                    workers, run, raw_time * 1e3, cold_time * 1e3, "" if run else " (warm-up)"),
                    file=sys.stderr, flush=True)
                if run:
                    raw.append(raw_time)
                    cold.append(cold_time)
        finally:
            server.stop()
        ratio = statistics.median(cold) / statistics.median(raw)
        # Beside it, the median of each pair's own ratio: the two sides of a pair run
        # seconds apart, so the machine's load drifting (it is shared) moves it less.
        paired = statistics.median([c / r for c, r in zip(cold, raw, strict=True)])
        rows.append((workers, "7a. Slurm cold create vs raw sbatch->ready of the same script (median)",
                     "%.0f ms vs %.0f ms" % (statistics.median(cold) * 1e3, statistics.median(raw) * 1e3),
                     "ratio %.3f (pairs' median %.3f)" % (ratio, paired), "<= 1.05", ratio <= 1.05))

        warm = warm_create(os.path.join(workdir, "slurm-warm"), workers, runs * 2, **env)
        rows.append((workers, "7b. Slurm warm-pool create p50 / p95", "%.1f / %.1f ms" % (
            pct(warm, 50) * 1e3, pct(warm, 95) * 1e3), "vs cold x%.0f faster" % (
            statistics.median(cold) / pct(warm, 50)), "p50 <= 50 ms", pct(warm, 50) <= 0.050))
    finally:
        cluster.stop()
    return rows

