"""The Python client and the `cxs` CLI against a live gunicorn with the real runtime."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from cxs_client import Client, CommandFailed, Conflict, Forbidden, NotFound, RateLimited
from cxs_client.events import _socket_of

from .conftest import add_ended_sessions, alanin_pdb, wait_until
from .helpers import distinct_colours
from .test_sandbox import place, workspace

pytestmark = pytest.mark.slow


@pytest.fixture
def live(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, MAX_SESSIONS_PER_USER=2)
    token = server.token("alice")["Authorization"].split(" ", 1)[1]
    return server, Client(server.url, token)


def test_client_workflow_and_context_manager(live, tmp_path):
    server, client = live
    with client.session(label="ctx", file=alanin_pdb(), heartbeat_every=0.2) as session:
        assert client.get(session.id)["status"] == "active"
        first = client.get(session.id)["last_activity"]
        wait_until(lambda: client.get(session.id)["last_activity"] != first, 5, message="background heartbeat")
        assert any("66 atoms" in m for m in session.run("measure center #1")["log"]["note"])
        session.run("style stick; color red")
        png = session.snapshot(width=120, height=90, dest=str(tmp_path / "s.png"))
        assert png.startswith(b"\x89PNG") and distinct_colours(tmp_path / "s.png")[:2] == (120, 90)
        session.run("save out.cif")
        assert {f["name"] for f in session.files()} == {"alanin.pdb", "out.cif"}
        assert b"_atom_site" in session.download("out.cif")
        with pytest.raises(CommandFailed) as failed:
            session.run("open missing.pdb")
        assert failed.value.result["error"]["type"] == "UserError"
        with pytest.raises(Forbidden) as denied:
            session.run("runscript evil.py")
        assert denied.value.code == "command_denied" and denied.value.request_id
        kept = session.id
    with pytest.raises(NotFound) as gone:                       # deleted on exit
        client.get(kept)
    assert gone.value.code == "session_deleted"
    assert [s["end_reason"] for s in client.list() if s["id"] == kept] == ["deleted"]
    with pytest.raises(Conflict):
        client.run(kept, "pwd")
    with pytest.raises(NotFound):
        client.get("00000000-0000-4000-8000-000000000000")


def test_client_typed_limit_error(live):
    server, client = live
    a, b = client.create(), client.create()
    with pytest.raises(RateLimited) as limited:
        client.create()
    assert limited.value.code == "user_session_limit" and limited.value.retry_after
    client.delete(a["id"])
    client.delete(b["id"])


def test_client_list_follows_the_pages(live):
    server, client = live
    store = server.store()
    try:
        add_ended_sessions(store, ["alice", "bob"], 120)       # the service answers 50 a page
    finally:
        store.close()
    everything = client.list()
    assert [s["label"] for s in everything] == ["alice %d" % i for i in reversed(range(120))]
    assert [s["label"] for s in client.list(limit=55)] == ["alice %d" % i for i in reversed(range(65, 120))]
    assert len(client.list(status=["failed", "active"])) == 60


def test_cli_for_integration_scripts(live, tmp_path):
    server, client = live
    env = dict(os.environ, CXS_URL=server.url, CXS_TOKEN=client.http.headers["Authorization"].split(" ", 1)[1])
    cxs = [os.path.join(os.path.dirname(sys.executable), "cxs")]

    def run(*args, check=True):
        out = subprocess.run(cxs + list(args), env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        if check:
            assert out.returncode == 0, out.stderr
        return out
    sid = run("create", "--file", alanin_pdb(), "--label", "cli", "-q").stdout.strip()
    assert sid in run("ls", "-q").stdout
    assert "66 atoms" in run("run", sid, "measure center #1").stdout
    assert run("run", sid, "color red").returncode == 0
    shown = json.loads(run("get", sid).stdout)       # the real launcher's figures: ChimeraX has used CPU
    assert shown["usage"]["cpu_seconds"] > 0 and shown["limits"]["enforced_by"]
    assert run("snapshot", sid, "-o", "x.png", "--width", "64", "--height", "48").returncode == 0
    assert (tmp_path / "x.png").read_bytes().startswith(b"\x89PNG")
    bad = run("run", sid, "open missing.pdb", check=False)
    assert bad.returncode == 1 and "UserError" in bad.stderr
    denied = run("run", sid, "runscript evil.py", check=False)
    assert denied.returncode == 2 and "command_denied" in denied.stderr
    assert run("history", sid, "--cxc").stdout.splitlines()[-1] == "color red"   # runscript: denied
    history = json.loads(run("history", sid).stdout)["history"]
    assert [(e["command"], e["verdict"]) for e in history][-2:] == [("open missing.pdb", "allow"),
                                                                     ("runscript evil.py", "deny")]
    assert run("scene", sid, "-o", "x.glb", "--size", "10").returncode == 0
    assert (tmp_path / "x.glb").read_bytes()[:4] == b"glTF"
    assert json.loads(run("suspend", sid).stdout)["status"] == "suspended"
    assert json.loads(run("resume", sid).stdout)["status"] == "active"
    assert "66 atoms" in run("run", sid, "measure center #1").stdout       # the scene came back
    run("rm", sid)
    gone = subprocess.run(cxs + ["get", sid], env=env, capture_output=True, text=True)
    assert gone.returncode == 2 and "404 (session_deleted)" in gone.stderr
    missing_token = subprocess.run(cxs + ["ls"], env=dict(env, CXS_TOKEN=""), capture_output=True, text=True)
    assert missing_token.returncode == 2 and "token" in missing_token.stderr
    # The session just ended counts in today's usage.
    today = client.usage()
    assert today["user"] == "alice" and today["days"][-1]["day"] == today["until"]
    assert today["totals"]["session_hours"] > 0
    table = run("usage").stdout.splitlines()
    assert table[0] == "usage of alice, %s to %s (UTC)" % (today["since"], today["until"])
    assert table[-1].startswith("total ")
    assert json.loads(run("usage", "--json", "--since", today["until"]).stdout)["days"][0]["day"] == today["until"]
    other = run("usage", "--user", "bob", check=False)
    assert other.returncode == 2 and "403 (forbidden)" in other.stderr


# Trusted Python (an admin's `runscript`) that runs until stopped, a log line every 0.25 s.
TICKS = ("import time\nfor i in range(2400):\n    session.logger.info('tick %d' % i)\n"
         "    t = time.time()\n    while time.time() < t + 0.25:\n        pass\n")


def with_ticks(server, session_id, name="ticks.py", text=TICKS):
    """Place the ticking script in the session's workspace, as an upload would."""
    place(workspace(server, session_id), name, text)
    return name


def ticks_in(events):
    return [int(e["data"]["text"].split()[1]) for e in events
            if e["event"] == "log" and e["data"]["text"].startswith("tick ")]


def read_until(stream, condition, seen, timeout=30):
    """Events of `stream` appended to `seen` until `condition(event)`; the deadline
    is checked between events (a keep-alive comes at least every 15 s)."""
    deadline = time.monotonic() + timeout
    for event in stream:
        seen.append(event)
        if condition(event):
            return event
        assert time.monotonic() < deadline, "timed out; seen: %s" % seen[-5:]
    raise AssertionError("the stream ended first; seen: %s" % seen[-5:])


def test_client_runs_in_the_background_watches_events_and_interrupts(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60)
    client = Client(server.url, server.token("boss", "admin")["Authorization"].split(" ", 1)[1])
    sid = client.create()["id"]
    script = with_ticks(server, sid)
    quick = client.run(sid, "version", wait=False)
    assert quick["status"] == "running" and quick["command"] == "version" and quick["session"] == sid
    done = client.wait_for(sid, quick["id"], timeout=30)
    assert done["status"] == "done" and done["ok"] and "UCSF ChimeraX" in " ".join(done["log"]["note"])

    seen = []
    with client.events(sid) as stream:
        running = client.run(sid, "runscript " + script, wait=False)["id"]
        read_until(stream, lambda e: e["event"] == "log" and e["data"]["text"].startswith("tick 2"), seen)
        assert client.command(sid, running)["status"] == "running"         # its lines came while it ran
        assert seen[0]["event"] == "status" and seen[0]["data"]["status"] == "active"
        assert [e["data"]["command"] for e in seen if e["event"] == "command.started"
                and e["data"]["id"] == running] == ["runscript " + script]
        assert ticks_in(seen)[:3] == [0, 1, 2] and all(e["id"] for e in seen if e["event"] == "log")
        with pytest.raises(TimeoutError):
            client.wait_for(sid, running, timeout=0.5)
        with pytest.raises(Conflict) as other:
            client.interrupt(sid, quick["id"])           # not the one that runs
        assert other.value.code == "not_running"
        stopped = client.interrupt(sid, running)
        assert stopped == {"interrupted": running, "command": "runscript " + script, "session": "active"}
        ended = read_until(stream, lambda e: e["event"] == "command.ended" and e["data"]["id"] == running, seen)
        assert ended["data"]["interrupted"] is True
    assert stream.last_event_id == ended["id"]
    state = client.wait_for(sid, running, timeout=10)
    assert state["status"] == "interrupted" and state["error"]["type"] == "Interrupted"
    assert ticks_in([{"event": "log", "data": {"text": t}} for t in state["log"]["note"]])[:3] == [0, 1, 2]
    assert client.run(sid, "version")["ok"]             # the session runs the next command
    assert client.get(sid)["status"] == "active"
    with pytest.raises(Conflict) as idle:
        client.interrupt(sid)
    assert idle.value.code == "not_running"
    listed = client.commands(sid)["commands"]
    assert [(c["id"], c["status"]) for c in listed if c["id"] in (quick["id"], running)] == [
        (quick["id"], "done"), (running, "interrupted")]

    # Resuming after the last event seen: what came next, nothing twice. (A new
    # stream begins with what the buffer holds: the first run's lines too.)
    again = client.run(sid, "runscript " + script, wait=False)["id"]
    first = []
    with client.events(sid) as stream:
        read_until(stream, lambda e: e["event"] == "command.started" and e["data"]["id"] == again, first)
        read_until(stream, lambda e: ticks_in([e]) == [1], first)
    later = []
    with client.events(sid, last_event_id=stream.last_event_id) as resumed:
        read_until(resumed, lambda e: ticks_in([e]) == [3], later)
    assert later[0]["event"] == "status" and ticks_in(later) == [2, 3]
    client.interrupt(sid, again)


def test_client_event_stream_reconnects_closes_and_ends_with_its_session(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60)
    client = Client(server.url, server.token("boss", "admin")["Authorization"].split(" ", 1)[1])
    sid = client.create()["id"]
    running = client.run(sid, "runscript " + with_ticks(server, sid), wait=False)["id"]

    # A dropped connection: with reconnect, the stream opens again after the last id seen.
    seen = []
    stream = client.events(sid, reconnect=True)
    read_until(stream, lambda e: ticks_in([e]) == [2], seen)
    _socket_of(stream._response).shutdown(socket.SHUT_RDWR)      # the network drops it
    read_until(stream, lambda e: ticks_in([e]) == [8], seen)
    ticks = ticks_in(seen)
    assert ticks[:9] == list(range(9)), ticks            # none missed, none twice
    assert [e["event"] for e in seen].count("status") == 2      # each connection says the status first
    stream.close()
    assert list(stream) == []

    # Without reconnect, a dropped connection is the caller's to see.
    with client.events(sid) as plain:
        read_until(plain, lambda e: e["event"] == "log", [])
        _socket_of(plain._response).shutdown(socket.SHUT_RDWR)
        with pytest.raises(requests.RequestException):
            for _ in plain:
                pass

    # close() from another thread ends a read that is waiting.
    client.interrupt(sid, running)
    quiet = client.events(sid)
    read_until(quiet, lambda e: e["event"] == "command.ended" and e["data"]["id"] == running, [])
    closer = threading.Timer(0.5, quiet.close)
    began = time.monotonic()
    closer.start()
    assert list(quiet) == []          # nothing happens in the session: only close() ends this
    assert 0.4 < time.monotonic() - began < 10, "close() did not end the waiting read before a keep-alive"

    # The session's end ends the stream (and a reconnecting one does not come back).
    with client.events(sid, reconnect=True) as last:
        read_until(last, lambda e: e["event"] == "status", [])
        threading.Thread(target=client.delete, args=(sid,)).start()
        rest = list(last)
    assert rest[-1]["event"] == "status" and rest[-1]["data"] == {"status": "terminated", "end_reason": "deleted"}
    assert last.status == "terminated"


class Lines(threading.Thread):
    """The lines a process prints, gathered as they come (a pipe read never blocks the test)."""

    def __init__(self, pipe):
        super().__init__(daemon=True)
        self.pipe, self.lines = pipe, []

    def run(self):
        for line in self.pipe:
            self.lines.append(line.rstrip("\n"))

    def has(self, text):
        return any(text in line for line in self.lines)


def test_cli_runs_in_the_background_follows_logs_and_interrupts(gunicorn_server, tmp_path):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60)
    token = server.token("boss", "admin")["Authorization"].split(" ", 1)[1]
    env = dict(os.environ, CXS_URL=server.url, CXS_TOKEN=token)
    cxs = [os.path.join(os.path.dirname(sys.executable), "cxs")]

    def run(*args, code=0):
        out = subprocess.run(cxs + list(args), env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert out.returncode == code, (out.stdout, out.stderr)
        return out
    sid = run("create", "-q").stdout.strip()
    script = with_ticks(server, sid)
    follow = subprocess.Popen(cxs + ["logs", "-f", sid], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    # Ctrl-C as a terminal delivers it: a shell's background job (as CI may run the
    # tests) starts with SIGINT ignored, and Python then keeps it ignored.
    follow_json = subprocess.Popen(cxs + ["logs", "-f", sid, "--json"], env=env, stdout=subprocess.PIPE, text=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        printed, printed_json = Lines(follow.stdout), Lines(follow_json.stdout)
        printed.start()
        printed_json.start()
        cid = run("run", "--no-wait", sid, "runscript " + script).stdout.strip()
        assert len(cid) == 36
        wait_until(lambda: printed.has("tick 1"), 30, message="a log line of the running command")
        assert json.loads(run("command", sid, cid).stdout)["status"] == "running"       # printed while it ran
        assert printed.lines[0] == "[session active]" and "[started %s] runscript %s" % (cid, script) in printed.lines
        assert printed.lines.index("tick 0") < printed.lines.index("tick 1")
        still = run("command", sid, cid, "--wait", "0.3", code=3)
        assert "still runs" in still.stderr
        stopped = json.loads(run("interrupt", sid, "--id", cid).stdout)
        assert stopped["interrupted"] == cid and stopped["session"] == "active"
        wait_until(lambda: printed.has("[interrupted %s]" % cid), 30, message="the command's end, followed")
        ended = run("command", sid, cid, "--wait", "30", code=1)
        assert json.loads(ended.stdout)["status"] == "interrupted" and "Interrupted" in ended.stderr
        nothing = run("interrupt", sid, code=2)
        assert "409 (not_running)" in nothing.stderr

        started = json.loads(run("run", "--no-wait", "--json", sid, "version").stdout)
        assert started["status"] == "running" and started["command"] == "version"
        done = json.loads(run("command", sid, started["id"], "--wait", "30").stdout)
        assert done["status"] == "done" and "UCSF ChimeraX" in " ".join(done["log"]["note"])
        wait_until(lambda: printed.has("[ended %s]" % started["id"]), 30, message="the quick command followed")
        run("snapshot", sid, "-o", "x.png", "--width", "64", "--height", "48")      # the service's own command
        wait_until(lambda: [line for line in printed_json.lines if ".snapshot-" in line], 30,
                   message="the snapshot's save in the JSON events")
        events = [json.loads(line) for line in list(printed_json.lines)]
        assert {"status", "log", "command.started", "command.ended"} <= {e["event"] for e in events}
        assert all(set(e) == {"id", "event", "data"} for e in events)

        follow_json.send_signal(signal.SIGINT)        # Ctrl-C ends one follower ...
        assert follow_json.wait(30) == 130
        run("rm", sid)                                # ... the session's end the other
        assert follow.wait(30) == 0, follow.stderr.read()
        printed.join(10)
        assert printed.lines[-1] == "[session terminated: deleted]"
        assert not [line for line in printed.lines if ".snapshot-" in line or "None" in line]
    finally:
        for proc in (follow, follow_json):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert "Traceback" not in follow.stderr.read()
    assert run("logs", sid, code=2).stderr.count("-f") >= 1         # only following is offered
