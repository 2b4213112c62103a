"""LAUNCHER=slurm against a real single-node Slurm (tests/slurm.py): sessions
as jobs, the scheduler's states, a controller that stops answering, restarts.

The node's address is 127.0.0.2: every channel must be reached there."""
import dataclasses
import os
import socket
import time
import uuid

import pytest
import requests

from app.context import EXTENSION
from app.services.errors import ChimeraXDied
from app.services.processes import chimerax_client
from app.store.models import ProcessHandle

from . import slurm
from .conftest import alanin_pdb, token_header, wait_until
from .fetch_mirror import Mirror, layout

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    if not slurm.available():
        pytest.skip("Slurm is not installed (make test-deps installs slurm-wlm and munge)")
    if os.geteuid() != 0:
        pytest.skip("the test cluster runs its daemons as root")
    running = slurm.SlurmCluster().start()
    yield running
    running.stop()


def slurm_settings(cluster, **overrides):
    settings = dict(LAUNCHER="slurm", SLURM_CONF=cluster.conf, SLURM_POLL_INTERVAL=0.5,
                    SLURM_PENDING_TIMEOUT=60.0, SESSION_MEMORY_MB=3072)
    settings.update(overrides)
    return settings


@pytest.fixture
def slurm_app(app_factory, cluster):
    def build(**overrides):
        return app_factory(**slurm_settings(cluster, **overrides))
    return build


def runtime(app):
    return app.extensions[EXTENSION]


def record(app, session_id):
    sweeper, close = runtime(app).make_sweeper()
    try:
        return sweeper.store.get_session(session_id)
    finally:
        close()


def sweep(app):
    sweeper, close = runtime(app).make_sweeper()
    try:
        return sweeper.sweep()
    finally:
        close()


def job_of(app, session_id):
    return record(app, session_id).process.details["job"]


def test_session_is_a_job_reached_at_the_nodes_address(slurm_app, cluster):
    app = slurm_app()
    client, alice, admin = app.test_client(), token_header(app, "alice"), token_header(app, "root", "admin")
    created = client.post("/api/sessions", json={"label": "on slurm"}, headers=alice)
    assert created.status_code == 201, created.get_json()
    sid = created.get_json()["id"]
    state = record(app, sid).process.details
    assert state["channel"]["host"] == slurm.NODE_ADDRESS       # reported by the job, not assumed
    assert cluster.live_jobs()[state["job"]] == ("cxs-" + sid, "RUNNING")
    assert client.get("/api/sessions/" + sid, headers=admin).get_json()["process"] == "job " + state["job"]
    with open(alanin_pdb(), "rb") as pdb:
        assert client.post("/api/sessions/%s/files" % sid, headers=alice, content_type="multipart/form-data",
                           data={"file": (pdb, "a.pdb")}).status_code == 201
    opened = client.post("/api/sessions/%s/commands" % sid, json={"command": "open a.pdb"}, headers=alice)
    assert opened.get_json()["ok"], opened.get_json()
    saved = client.post("/api/sessions/%s/commands" % sid, json={"command": "save out.pdb"}, headers=alice)
    assert saved.get_json()["ok"], saved.get_json()
    names = {f["name"] for f in client.get("/api/sessions/%s/files" % sid, headers=alice).get_json()["files"]}
    assert names == {"a.pdb", "out.pdb"}
    assert b"ATOM" in client.get("/api/sessions/%s/files/out.pdb" % sid, headers=alice).data
    png = client.get("/api/sessions/%s/snapshot?width=64&height=48" % sid, headers=alice)
    assert png.status_code == 200 and png.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.delete("/api/sessions/" + sid, headers=alice).status_code == 204
    assert state["job"] not in cluster.live_jobs()               # scancel waited for the job's end
    assert not os.path.exists(record(app, sid).workspace)


def test_channel_across_hosts_is_tls_to_the_reported_certificate(slurm_app):
    app = slurm_app()
    client, alice = app.test_client(), token_header(app, "alice")
    sid = client.post("/api/sessions", json={}, headers=alice).get_json()["id"]
    state = record(app, sid).process.details
    where = state["channel"]
    # Plain HTTP to the job's port gets nothing: only TLS is spoken there.
    with socket.create_connection((where["host"], where["port"]), timeout=10) as plain:
        plain.sendall(b"GET /health HTTP/1.0\r\nAuthorization: Bearer %s\r\n\r\n" % state["secret"].encode())
        try:
            answer = plain.recv(65536)
        except ConnectionResetError:
            answer = b""
        assert b"HTTP/" not in answer
    pinned = runtime(app).launcher.channel(ProcessHandle(state))
    assert chimerax_client.health(pinned, 10)["busy"] is False
    # Another certificate (another process on that port) is refused before the secret is sent.
    impostor = dataclasses.replace(pinned, fingerprint="0" * 64)
    with pytest.raises(ChimeraXDied) as refused:
        chimerax_client.run_command(impostor, "version", 10)
    assert isinstance(refused.value.__cause__, chimerax_client.CertificateMismatch)


def test_a_job_whose_chimerax_dies_at_start_fails_the_create_at_once(slurm_app, cluster):
    # The job reports the failure itself: the create does not wait for a timeout
    # and no session stays `starting` (batchspawner's "job died before the server started").
    app = slurm_app(CHIMERAX_PATH="/bin/false", SANDBOX="none", STARTUP_TIMEOUT=60.0)
    client, alice = app.test_client(), token_header(app, "alice")
    started = time.monotonic()
    created = client.post("/api/sessions", json={}, headers=alice)
    assert created.status_code == 503 and created.get_json()["error"]["code"] == "startup_failed"
    assert "exited during start-up" in created.get_json()["error"]["message"]
    assert time.monotonic() - started < 30
    (session,) = client.get("/api/sessions", headers=alice).get_json()["sessions"]
    assert (session["status"], session["end_reason"]) == ("failed", "startup_failed")
    assert not [job for job, (name, _) in cluster.live_jobs().items() if name == "cxs-" + session["id"]]


def test_the_batch_script_template_can_be_replaced(slurm_app, tmp_path):
    from app.services.processes.launchers.slurm import TEMPLATE
    custom = tmp_path / "site.sbatch"
    with open(TEMPLATE) as shipped:
        custom.write_text(shipped.read().replace("exec ", "echo site template ran\nexec ", 1))
    app = slurm_app(SLURM_SCRIPT_TEMPLATE=str(custom))
    client, alice = app.test_client(), token_header(app, "alice")
    created = client.post("/api/sessions", json={}, headers=alice)
    assert created.status_code == 201, created.get_json()
    launcher, state = runtime(app).launcher, record(app, created.get_json()["id"]).process.details
    with open(launcher.paths(state["token"])["output"]) as output:
        assert output.readline() == "site template ran\n"


def test_the_job_gets_none_of_the_services_environment(slurm_app, tmp_path, monkeypatch):
    # sbatch exports only what the service chose (slurm_cli.job_environment): the
    # service's secrets stay out of the job, and slurmd loads no login environment
    # (`--export NONE` made it run `su - user -c env` first: 0.1-1.1 s a start).
    from app.services.processes.launchers.slurm import TEMPLATE
    monkeypatch.setenv("CXS_TEST_SERVICE_SECRET", "never-in-the-job")
    custom = tmp_path / "env.sbatch"
    with open(TEMPLATE) as shipped:
        custom.write_text(shipped.read().replace("exec ", "env | sed 's/^/ENV /'\nexec ", 1))
    app = slurm_app(SLURM_SCRIPT_TEMPLATE=str(custom))
    client, alice = app.test_client(), token_header(app, "alice")
    created = client.post("/api/sessions", json={}, headers=alice)
    assert created.status_code == 201, created.get_json()
    launcher, state = runtime(app).launcher, record(app, created.get_json()["id"]).process.details
    with open(launcher.paths(state["token"])["output"]) as output:
        names = {line[4:].split("=", 1)[0] for line in output if line.startswith("ENV ")}
    assert "PATH" in names and "SLURM_JOB_ID" in names
    assert "CXS_TEST_SERVICE_SECRET" not in names and "SLURM_GET_USER_ENV" not in names
    assert not names - {"PATH", "HOME", "USER", "LOGNAME", "LANG", "PYTHONPATH", "PWD", "TMPDIR", "HOSTNAME",
                        "ENVIRONMENT", "SHLVL", "_"} - {name for name in names if name.startswith("SLURM")}


def test_warm_pool_jobs_are_claimed(slurm_app, cluster):
    app = slurm_app(POOL_SIZE=1)
    pool, close = runtime(app).make_pool()
    try:
        assert pool.fill() == 1
        entry = pool.store.pool_entries()[0]
        assert entry.status == "ready" and cluster.live_jobs()[entry.process.details["job"]][0].startswith("cxs-pool-")
        client, alice = app.test_client(), token_header(app, "alice")
        started = time.perf_counter()
        created = client.post("/api/sessions", json={}, headers=alice)
        print("measured: warm create on Slurm %.1f ms in-process" % ((time.perf_counter() - started) * 1000))
        sid = created.get_json()["id"]
        assert created.status_code == 201 and job_of(app, sid) == entry.process.details["job"]
        # The job works in the session's workspace (the pool's directory was
        # renamed into it): a file uploaded there opens by its relative name.
        with open(alanin_pdb(), "rb") as pdb:
            assert client.post("/api/sessions/%s/files" % sid, headers=alice, content_type="multipart/form-data",
                               data={"file": (pdb, "a.pdb")}).status_code == 201
        opened = client.post("/api/sessions/%s/commands" % sid, json={"command": "open a.pdb"}, headers=alice)
        assert opened.get_json()["ok"], opened.get_json()
    finally:
        close()


def test_job_cancelled_outside_is_crashed_within_one_sweep_of_one_squeue(slurm_app, cluster):
    app = slurm_app()
    client, alice = app.test_client(), token_header(app, "alice")
    sids = [client.post("/api/sessions", json={}, headers=alice).get_json()["id"] for _ in range(2)]
    victim = job_of(app, sids[0])
    cluster.run("scancel", victim)
    wait_until(lambda: victim not in cluster.live_jobs(), 30, message="the job to end")
    table = runtime(app).launcher.jobs
    asked = table.queries
    assert sweep(app) == {"crashed": 1}
    assert table.queries == asked + 1        # one squeue for all sessions of the sweep
    assert (record(app, sids[0]).status, record(app, sids[0]).end_reason) == ("failed", "crashed")
    assert record(app, sids[1]).status == "active"


def test_controller_down_is_unknown_not_gone(slurm_app, cluster):
    app = slurm_app()
    client, alice = app.test_client(), token_header(app, "alice")
    sid = client.post("/api/sessions", json={}, headers=alice).get_json()["id"]
    job = job_of(app, sid)
    cluster.stop_controller()
    try:
        for _ in range(3):
            assert sweep(app) == {}
            assert record(app, sid).status == "active"
            reply = client.post("/api/sessions/%s/commands" % sid, json={"command": "version"}, headers=alice)
            assert reply.status_code == 200 and reply.get_json()["ok"]      # commands need no slurmctld
    finally:
        cluster.start_controller()
    assert sweep(app) == {} and record(app, sid).status == "active"
    cluster.run("scancel", job)                  # reconciled once the controller answers again
    wait_until(lambda: job not in cluster.live_jobs(), 30, message="the job to end")
    assert sweep(app) == {"crashed": 1}


def test_pending_job_shows_its_reason_then_fails_and_is_cancelled(slurm_app, cluster):
    # The limited partition allows 1 minute; a session asks for its whole lifetime: the job
    # waits, with a reason about the partition (PartitionConfig or PartitionTimeLimit).
    app = slurm_app(SLURM_PARTITION=slurm.LIMITED_PARTITION, SESSION_MAX_LIFETIME=3600,
                    SLURM_PENDING_TIMEOUT=5.0, STARTUP_TIMEOUT=1.0)
    client, alice = app.test_client(), token_header(app, "alice")
    # Even a caller who waits is answered after STARTUP_TIMEOUT: starting, not a request held for the queue.
    created = client.post("/api/sessions", json={"wait": True}, headers=alice)
    assert created.status_code == 202 and created.get_json()["status"] == "starting"
    sid = created.get_json()["id"]

    def shown_reason():
        return client.get("/api/sessions/" + sid, headers=alice).get_json().get("pending_reason")
    assert wait_until(shown_reason, 10, message="pending_reason").startswith("Partition")
    assert client.get("/api/sessions/" + sid, headers=alice).get_json()["status"] == "starting"
    job = record(app, sid).process.details["job"]

    def ended():
        body = client.get("/api/sessions/" + sid, headers=alice).get_json()
        return body["status"] != "starting" and body
    body = wait_until(ended, 30, message="the pending session to fail")
    assert (body["status"], body["end_reason"], body["pending_reason"]) == ("failed", "startup_failed", None)
    assert job not in cluster.live_jobs()


def test_unknown_job_of_this_service_is_cancelled(slurm_app, cluster):
    app = slurm_app()
    launcher = runtime(app).launcher
    stray = cluster.run("sbatch", "--parsable", "--job-name", "cxs-" + str(uuid.uuid4()),
                        "--comment", launcher.comment, "--output", "/dev/null", "--wrap", "sleep 600"
                        ).stdout.strip()
    other = cluster.run("sbatch", "--parsable", "--job-name", "cxs-" + str(uuid.uuid4()),
                        "--comment", "cxs:another-service:x", "--output", "/dev/null", "--wrap", "sleep 600"
                        ).stdout.strip()
    try:
        wait_until(lambda: cluster.live_jobs().get(stray, ("", ""))[1] == "RUNNING", 30, message="stray job")
        sweeper, close = runtime(app).make_sweeper()
        try:
            sweeper.launcher.refresh()
            assert sweeper.reap_orphans(time.time() + 3600) == ["job " + stray]
        finally:
            close()
        assert stray not in cluster.live_jobs() and other in cluster.live_jobs()
    finally:
        cluster.run("scancel", stray, other, check=False)


def test_restart_adopts_jobs(gunicorn_server, cluster, tmp_path):
    server = gunicorn_server(workers=2, **{k: str(v) for k, v in slurm_settings(cluster).items()})
    alice = server.token("alice")
    created = requests.post(server.url + "/api/sessions", json={}, headers=alice, timeout=60)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    store = server.store()
    try:
        job = store.get_session(sid).process.details["job"]
    finally:
        store.close()
    server.kill_hard()
    server.start()
    body = requests.get(server.url + "/api/sessions/" + sid, headers=alice, timeout=10).json()
    assert body["status"] == "active"
    reply = requests.post(server.url + "/api/sessions/%s/commands" % sid, json={"command": "version"},
                          headers=alice, timeout=30)
    assert reply.status_code == 200 and reply.json()["ok"]
    assert cluster.live_jobs()[job][1] == "RUNNING"
    assert "adopted 1 session" in server.log_text()


def test_a_slurm_session_fetches_through_the_service_from_the_shared_cache(slurm_app, tmp_path):
    # The node's sandbox binds the same FETCH_CACHE_DIR read-only; the path comes over the channel.
    mirror = Mirror(layout(str(tmp_path)))
    try:
        app = slurm_app(FETCH_MIRRORS=mirror.mirrors())
        client, alice = app.test_client(), token_header(app, "alice")
        created = client.post("/api/sessions", json={}, headers=alice)
        assert created.status_code == 201, created.get_json()
        sid = created.get_json()["id"]
        assert record(app, sid).process.details["sandbox"] == "bwrap"
        opened = client.post("/api/sessions/%s/commands" % sid, json={"command": "open 1abc"}, headers=alice)
        assert opened.get_json()["ok"], opened.get_json()
        assert mirror.requests["files.rcsb.org/download/1abc.cif"] == 1
        assert client.delete("/api/sessions/" + sid, headers=alice).status_code == 204
    finally:
        mirror.close()


def test_the_node_side_imports_none_of_the_services_machinery():
    """Every session start on Slurm runs the job's Python: SQLAlchemy, Alembic
    and Flask cost it ~0.25 s and it uses none of them (the records it
    shares with the service are plain dataclasses)."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", "import sys, app.services.processes.launchers.slurm_job; "
                          "print(sorted({m.split('.')[0] for m in sys.modules} & "
                          "{'sqlalchemy', 'alembic', 'flask', 'apscheduler', 'marshmallow', 'psycopg'}))"],
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"
