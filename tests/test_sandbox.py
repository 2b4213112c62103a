"""Containment, judged from outside: what a hostile user can make happen on the host.

Real gunicorn, the real ChimeraX runtime, the default sandbox (bubblewrap).
The bypass corpus runs twice: as a viewer (the command policy on) and as an
admin (the `trusted` profile: no policy at all), where the sandbox alone must
hold. Hostile Python is placed in the workspace as if a user had got it there
(the worst case: `runscript evil.py` in the corpus then really runs it).
"""
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
import requests

from app.services.processes.launchers.spawn import SECRET_VARIABLE

from .cgroup_check import cgroups_here
from .conftest import alive, sandbox_tree, wait_until
from .helpers import CORPUS

pytestmark = pytest.mark.slow

SANDBOX_USER = "cxs-sandbox"
SITE_PACKAGES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".chimerax",
                             "venv", "lib", "python3.11", "site-packages")


def api(server, headers, method, path, **kw):
    return requests.request(method, server.url + "/api/sessions" + path, headers=headers, timeout=60, **kw)


def new_session(server, headers):
    created = api(server, headers, "POST", "", json={})
    assert created.status_code == 201, created.text
    return created.json()["id"]


def command(server, headers, session_id, text, timeout=60):
    return requests.post(server.url + "/api/sessions/%s/commands" % session_id, json={"command": text},
                         headers=headers, timeout=timeout)


def workspace(server, session_id):
    return os.path.join(server.env["WORKSPACE_ROOT"], session_id)


def place(directory, name, text):
    """A file in a workspace, readable by the sandbox user, as an upload would be."""
    path = os.path.join(directory, name)
    with open(path, "w") as out:
        out.write(text)
    os.chmod(path, 0o644)


def fingerprint(paths):
    """What exists at each path, with size and mtime: any change shows."""
    seen = {}
    for path in paths:
        try:
            info = os.lstat(path)
            seen[path] = (info.st_size, info.st_mtime_ns)
        except FileNotFoundError:
            seen[path] = None
    return seen


def listing(directory):
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else None


class Host:
    """The host things a hostile session must not reach: files, a listener, a process."""

    def __init__(self, server, tmp_path, victim_workspace):
        self.instance = tmp_path / "instance"
        self.instance.mkdir()
        self.sentinel = self.instance / "sentinel.txt"
        self.sentinel.write_text("untouched")
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        # A process the sandbox user could signal if it could see it (same uid).
        user = pwd.getpwnam(SANDBOX_USER)
        self.sleeper = subprocess.Popen(["sleep", "600"], user=user.pw_uid, group=user.pw_gid, extra_groups=[])
        self.host_tmp = "/tmp/cxs-sandbox-escape-%d" % os.getpid()
        self.victim = victim_workspace
        self.store = server.env["DATABASE_PATH"]      # written by the service itself: checked by content
        self.files = [str(self.sentinel), self.host_tmp,
                      os.path.join(SITE_PACKAGES, "cxs_evil.pth"), os.path.join(victim_workspace, "pwned.pdb"),
                      "/tmp/cxs-policy-escape", "/tmp/x.pdb", "/root/x.pdb", "/etc/cxs-evil",
                      os.path.join(os.path.dirname(self.store), "evil.txt")]
        self.folders = [str(self.instance), SITE_PACKAGES, victim_workspace, os.path.dirname(
            server.env["DATABASE_PATH"])]

    def targets(self):
        return {"write": [self.store] + self.files + [os.path.join(d, "evil.txt") for d in self.folders],
                "connect": [["127.0.0.1", self.port], ["::1", self.port]], "kill": [self.sleeper.pid]}

    def state(self):
        store = b"".join(open(p, "rb").read() for p in (self.store, self.store + "-wal") if os.path.exists(p))
        return (fingerprint(self.files), {d: listing(d) for d in self.folders if d != os.path.dirname(self.store)},
                PAYLOAD_MARK in store)

    def connections(self):
        self.listener.setblocking(False)
        accepted = 0
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return accepted
            conn.close()
            accepted += 1

    def close(self):
        self.listener.close()
        self.sleeper.kill()
        self.sleeper.wait()


PAYLOAD_MARK = b"touch /tmp/owned"
EVIL = """
import json, os, signal, socket
targets = json.loads(%r)
report = {"wrote": [], "connected": [], "killed": [], "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
for path in targets["write"]:
    try:
        with open(path, "a") as out:
            out.write("import os; os.system('touch /tmp/owned')\\n")
        report["wrote"].append(path)
    except OSError:
        pass
for host, port in targets["connect"]:
    try:
        socket.create_connection((host, port), timeout=1).close()
        report["connected"].append(port)
    except OSError:
        pass
for pid in targets["kill"]:
    try:
        os.kill(pid, signal.SIGKILL)
        report["killed"].append(pid)
    except OSError:
        pass
with open("/session/evil-report.json", "w") as out:
    json.dump(report, out)
"""


def hostile_corpus(host):
    extra = [
        'info models #1 attribute "x"" saveFile "%s"' % os.path.join(SITE_PACKAGES, "cxs_evil.pth"),
        'info models #1 attribute "x"" saveFile "%s"' % host.sentinel,
        "info notify start models url http://127.0.0.1:%d/x" % host.port,
        "open http://127.0.0.1:%d/x.pdb" % host.port,
        "save %s/pwned.pdb" % host.victim, "save %s" % host.host_tmp,
        "remotecontrol rest start port %d" % host.port, "open evil.cxc",
    ]
    return extra + [c for c in CORPUS if c not in ("exit", "ex", "quit", "q")] + ["exit"]


@pytest.mark.parametrize("role", ["user", "admin"])      # viewer profile / trusted (no policy)
def test_bypass_corpus_is_contained(gunicorn_server, tmp_path, role):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, MAX_SESSIONS_PER_USER=10)
    attacker, bob = server.token("mallory", role), server.token("bob")
    victim = new_session(server, bob)
    host = Host(server, tmp_path, workspace(server, victim))
    tokens_before = server.cli("tokens", "list")
    before = host.state()
    try:
        session = None
        ran = 0
        for attempt in hostile_corpus(host):
            if session is None or api(server, attacker, "GET", "/" + session).json()["status"] != "active":
                session = new_session(server, attacker)
                place(workspace(server, session), "evil.py", EVIL % json.dumps(host.targets()))
                place(workspace(server, session), "evil.cxc",
                      "save %s/pwned.pdb\nrunscript evil.py\n" % host.victim)
            reply = command(server, attacker, session, attempt)
            assert reply.status_code in (200, 403, 409, 502), (attempt, reply.text)
            ran += reply.status_code == 200
        report_path = os.path.join(workspace(server, session), "evil-report.json")
        if role == "admin":
            assert ran > 50                 # the policy let these through: only the sandbox stood
            command(server, attacker, session, "runscript evil.py")
            report = json.load(open(report_path))
            # Only its private /tmp took writes; nothing answered; nothing outside could be signalled.
            assert all(path.startswith("/tmp/") for path in report["wrote"]), report["wrote"]
            assert report["connected"] == [] and report["killed"] == []
            assert len(report["pids"]) <= 3          # bwrap's pid 1, ChimeraX, nothing of the host
        assert host.state() == before
        assert host.connections() == 0
        assert alive(host.sleeper.pid)
        assert server.cli("tokens", "list") == tokens_before
        assert command(server, bob, victim, "version").json()["ok"]     # the neighbour is untouched
        assert not os.path.exists("/tmp/owned")
    finally:
        host.close()


def test_sandboxed_chimerax_has_no_rights_network_or_view_of_the_host(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60)
    alice, admin = server.token("alice"), server.token("boss", "admin")
    session = new_session(server, alice)
    pid = api(server, admin, "GET", "/" + session).json()["pid"]
    chimerax = psutil.Process(pid)
    status = dict(line.split(":", 1) for line in open("/proc/%d/status" % pid).read().splitlines())
    user = pwd.getpwnam(SANDBOX_USER)
    assert chimerax.uids().real == chimerax.uids().effective == user.pw_uid
    assert status["CapEff"].strip() == status["CapPrm"].strip() == status["CapBnd"].strip() == "0" * 16
    assert status["NoNewPrivs"].strip() == "1"
    for namespace in ("net", "pid", "mnt", "ipc"):
        assert os.readlink("/proc/%d/ns/%s" % (pid, namespace)) != os.readlink("/proc/self/ns/" + namespace)
    limits = open("/proc/%d/limits" % pid).read()
    # Twice SESSION_MEMORY_MB where a cgroup holds that (a backstop), else SESSION_MEMORY_MB itself.
    assert "Max address space         %d" % (4096 * 2**20 * (2 if cgroups_here() else 1)) in limits
    assert "Max open files            1024" in limits
    assert SECRET_VARIABLE not in chimerax.cmdline() and not any("secret" in a.lower() for a in chimerax.cmdline())
    # the service's own environment stays outside
    assert "DATABASE_PATH" not in chimerax.environ() and "WORKSPACE_ROOT" not in chimerax.environ()


def test_memory_bomb_fails_within_the_limit_and_others_keep_answering(gunicorn_server):
    limit_mb = 1024
    # The address-space backstop: each allocation past it fails as a command error.
    server = gunicorn_server(workers=3, SWEEP_INTERVAL=60, SESSION_ADDRESS_SPACE_MB=limit_mb, SANDBOX_TMP_MB=16)
    admin, bob = server.token("boss", "admin"), server.token("bob")
    bomb, other = new_session(server, admin), new_session(server, bob)
    place(workspace(server, bomb), "hog.py", "x = bytearray(3 * 2**30)\n")
    place(workspace(server, bomb), "fill.py", "open('/tmp/fill', 'wb').write(b'x' * 64 * 2**20)\n")
    pid = api(server, admin, "GET", "/" + bomb).json()["pid"]
    tree = sandbox_tree(pid)
    for text in ("runscript hog.py", "save x.png width 16000 height 16000 supersample 1",
                 "windowsize 30000 30000", "runscript fill.py"):
        began = time.monotonic()
        reply = command(server, admin, bomb, text)
        peak = max(p.memory_info().vms for p in tree if alive(p.pid))
        assert peak <= limit_mb * 2**20, (text, peak)
        assert reply.status_code == 200 or api(server, admin, "GET", "/" + bomb).json()["end_reason"] == "memory_limit"
        if text != "windowsize 30000 30000":     # headless: only the recorded size changes
            assert reply.json()["ok"] is False, (text, reply.json())
        assert command(server, bob, other, "version").json()["ok"]
        assert requests.get(server.url + "/api/health", timeout=5).status_code == 200
        print("measured: %r refused in %.2fs" % (text, time.monotonic() - began))
    assert command(server, admin, bomb, "version").json()["ok"]     # the bomb's own session survives


def test_stop_ends_everything_chimerax_started(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60)
    admin = server.token("boss", "admin")
    session = new_session(server, admin)
    place(workspace(server, session), "escape.py", textwrap.dedent("""
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                          "signal.SIG_IGN); time.sleep(600)"], start_new_session=True)
    """))
    pid = api(server, admin, "GET", "/" + session).json()["pid"]
    assert command(server, admin, session, "runscript escape.py").json()["ok"]
    tree = wait_until(lambda: (lambda t: t if len(t) >= 4 else None)(sandbox_tree(pid)), 10,
                      message="the escaped child")
    assert api(server, admin, "DELETE", "/" + session).status_code == 204
    assert not [p.pid for p in tree if alive(p.pid)]


def control_socket(server, session_id):
    from app.store import Store
    store = Store(server.env["DATABASE_PATH"])
    try:
        return store.get_session(session_id).process.details
    finally:
        store.close()


RAW_EXIT = """
import os, socket, sys
sock = socket.socket(socket.AF_UNIX)
try:
    folder = os.open(os.path.dirname(sys.argv[1]), os.O_PATH)   # a short alias: sun_path is small
    sock.connect("/proc/self/fd/%d/%s" % (folder, os.path.basename(sys.argv[1])))
except OSError as err:
    print("refused:", err.__class__.__name__)
    sys.exit(0)
header = sys.argv[2] + "\\r\\n" if sys.argv[2] else ""
sock.sendall(("GET /run?command=exit HTTP/1.0\\r\\n" + header + "\\r\\n").encode())
print(sock.recv(100).decode().split("\\r\\n")[0])
"""


def test_only_the_service_with_the_secret_can_drive_a_session(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60)
    alice = server.token("alice")
    session = new_session(server, alice)
    state = control_socket(server, session)
    path = state["channel"]["path"]
    # Another local user cannot even open the socket's folder.
    other = subprocess.run(["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", RAW_EXIT, path, ""],
                           capture_output=True, text=True, timeout=30)
    assert other.stdout.startswith("refused: PermissionError"), other
    # The service account without the secret, or with a wrong one: 401, and `exit` did not run.
    for header in ("", "Authorization: Bearer wrong", "Authorization: Bearer " + state["secret"][:-1]):
        root = subprocess.run([sys.executable, "-c", RAW_EXIT, path, header], capture_output=True, text=True,
                              timeout=30)
        assert root.stdout.strip() == "HTTP/1.0 401 Unauthorized", root
    assert alive(state["pid"]) and command(server, alice, session, "version").json()["ok"]


def test_tcp_channel_without_sandbox_needs_the_secret(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, SANDBOX="none")
    alice = server.token("alice")
    session = new_session(server, alice)
    state = control_socket(server, session)
    url = "http://127.0.0.1:%d/run" % state["channel"]["port"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": state["secret"]}):
        assert requests.get(url, params={"command": "exit"}, headers=headers, timeout=10).status_code == 401
    assert alive(state["pid"]) and command(server, alice, session, "version").json()["ok"]
    assert "warning" in server.log_text().lower() and "SANDBOX=none" in server.log_text()


def test_commands_that_write_past_the_quota_lose_their_files(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, WORKSPACE_QUOTA_MB=1)
    admin = server.token("boss", "admin")
    session = new_session(server, admin)
    folder = workspace(server, session)
    place(folder, "big.py", "open('/session/one.bin', 'wb').write(b'x' * 2 * 2**20)\n")
    place(folder, "two.py", "[open('/session/%s.bin' % n, 'wb').write(b'x' * 600 * 1024) for n in 'ab']\n")
    # One file larger than the quota stops growing at it (RLIMIT_FSIZE: the write fails)
    # and is then removed as over quota.
    too_big = command(server, admin, session, "runscript big.py")
    assert too_big.status_code == 413 and "one.bin" in too_big.json()["error"]["message"], too_big.text
    assert not os.path.exists(os.path.join(folder, "one.bin"))
    # Two that cross it together: the newer goes, and the caller is told.
    crossed = command(server, admin, session, "runscript two.py")
    assert crossed.status_code == 413 and crossed.json()["error"]["code"] == "quota_exceeded"
    assert "b.bin" in crossed.json()["error"]["message"]
    used = sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))
    assert used <= 2**20 and os.path.exists(os.path.join(folder, "a.bin"))
    assert command(server, admin, session, "version").json()["ok"]


def test_a_forged_log_line_is_escaped(gunicorn_server):
    server = gunicorn_server(workers=1, SWEEP_INTERVAL=60)
    requests.get(server.url + "/api/nothing%0a2026-01-01 00:00:00,000 INFO [1] cxs.requests - forged", timeout=5)
    requests.get(server.url + "/api/health", headers={"X-Request-ID": "ok"}, timeout=5)
    text = server.log_text()
    assert "nothing\\n2026-01-01" in text
    assert not any(line.startswith("2026-01-01 00:00:00,000") for line in text.splitlines())


def test_sigterm_to_a_worker_does_not_end_sessions(gunicorn_server):
    """Sessions are not tied to the worker that started them (no --die-with-parent)."""
    server = gunicorn_server(workers=1, SWEEP_INTERVAL=60)
    alice = server.token("alice")
    session = new_session(server, alice)
    worker = server.worker_pids()[0]
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: [p for p in server.worker_pids() if p != worker], 30, message="a new worker")
    assert command(server, alice, session, "version").json()["ok"]
