"""Figure 7: sessions on a real single-node Slurm (tests/slurm.py).

7a. cold create through the API vs the same batch script submitted straight
    with sbatch, timed until the job reports its channel (what the service
    adds to the scheduler's own start), interleaved run by run;
7b. warm create from pooled jobs.
"""
import os
import secrets
import statistics
import subprocess
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


def raw_start(launcher, slurm_env, root):
    """sbatch of the service's own batch script and spec, then poll its output for the report."""
    from app.services.processes.launchers.slurm_job import READY
    workspace = os.path.join(root, "raw-" + uuid.uuid4().hex)
    launcher.make_workspace(workspace)
    token = uuid.uuid4().hex
    paths = launcher.paths(token)
    os.makedirs(launcher.control_dir, mode=0o700, exist_ok=True)
    launcher.write_spec("raw:" + token, workspace, secrets.token_urlsafe(32), paths)
    started = time.perf_counter()
    job = subprocess.run(["sbatch", "--parsable"] + launcher.sbatch_args("cxs-raw-" + token, paths["output"], workspace),
                         input=launcher.batch_script(paths["spec"]), env=slurm_env, capture_output=True,
                         text=True, check=True).stdout.strip()
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
    launcher.stop({"job": job, "token": token}, 2)
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
            cold, raw = [], []
            for _ in range(runs):
                raw.append(raw_start(launcher, cluster.env, server.env["WORKSPACE_ROOT"]))
                started = time.perf_counter()
                created = requests.post(server.url + "/api/sessions", json={}, headers=user, timeout=300)
                cold.append(time.perf_counter() - started)
                assert created.status_code == 201, created.text
                requests.delete(server.url + "/api/sessions/" + created.json()["id"], headers=user, timeout=120)
        finally:
            server.stop()
        ratio = statistics.median(cold) / statistics.median(raw)
        rows.append((workers, "7a. Slurm cold create vs raw sbatch->ready of the same script (median)",
                     "%.0f ms vs %.0f ms" % (statistics.median(cold) * 1e3, statistics.median(raw) * 1e3),
                     "ratio %.3f" % ratio, "<= 1.05", ratio <= 1.05))

        warm = warm_create(os.path.join(workdir, "slurm-warm"), workers, runs * 2, **env)
        rows.append((workers, "7b. Slurm warm-pool create p50 / p95", "%.1f / %.1f ms" % (
            pct(warm, 50) * 1e3, pct(warm, 95) * 1e3), "vs cold x%.0f faster" % (
            statistics.median(cold) / pct(warm, 50)), "p50 <= 50 ms", pct(warm, 50) <= 0.050))
    finally:
        cluster.stop()
    return rows

