"""Long commands a user can watch and stop (issue 34), on the real runtime in
the sandbox, through real gunicorn at its defaults: commands in the
background, interrupts that keep the session, the live event stream."""
import concurrent.futures
import json
import os
import statistics
import threading
import time

import pytest
import requests

from .conftest import alanin_pdb, wait_until
from .test_sandbox import api, command, new_session, place, workspace

pytestmark = pytest.mark.slow

# Trusted Python that runs until stopped, saying where it is (a log line a second).
LOOP = ("import time\nfor i in range(600):\n    session.logger.info('tick %d' % i)\n"
        "    t = time.time()\n    while time.time() < t + 0.5:\n        pass\n")
STUBBORN = ("import time\nend = time.time() + 600\nwhile time.time() < end:\n    try:\n"
            "        time.sleep(600)\n    except KeyboardInterrupt:\n        pass\n")


def started(server, headers, session_id, text):
    reply = requests.post(server.url + "/api/sessions/%s/commands" % session_id, headers=headers,
                          json={"command": text, "wait": False}, timeout=30)
    assert reply.status_code == 202, reply.text
    assert reply.headers["Location"].endswith("/commands/" + reply.json()["id"])
    return reply.json()["id"]


def state(server, headers, session_id, command_id):
    reply = requests.get(server.url + "/api/sessions/%s/commands/%s" % (session_id, command_id), headers=headers,
                         timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()


def interrupt(server, headers, session_id, command_id=None):
    return requests.post(server.url + "/api/sessions/%s/interrupt" % session_id, headers=headers,
                         json={"id": command_id} if command_id else {}, timeout=60)


def test_a_background_command_is_watched_interrupted_and_the_session_keeps_its_models(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60)
    admin = server.token("boss", "admin")
    session = new_session(server, admin)
    place(workspace(server, session), "loop.py", LOOP)
    with open(alanin_pdb()) as source:
        place(workspace(server, session), "alanin.pdb", source.read())
    assert command(server, admin, session, "open alanin.pdb").json()["ok"]
    quick = started(server, admin, session, "version")
    done = wait_until(lambda: (lambda s: s if s["status"] != "running" else None)(state(server, admin, session, quick)),
                      30, message="a quick background command to end")
    assert done["status"] == "done" and done["ok"] and "UCSF ChimeraX" in " ".join(done["log"]["note"])
    running = started(server, admin, session, "runscript loop.py")
    assert state(server, admin, session, running)["status"] == "running"
    busy = command(server, admin, session, "version")
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "session_busy"
    assert interrupt(server, admin, session, "00000000-0000-4000-8000-000000000000").status_code == 409
    began = time.monotonic()
    reply = interrupt(server, admin, session, running)
    assert reply.status_code == 200 and reply.json()["session"] == "active", reply.text
    assert time.monotonic() - began < 5          # INTERRUPT_GRACE
    ended = wait_until(lambda: (lambda s: s if s["status"] != "running" else None)(
        state(server, admin, session, running)), 10, message="the interrupted command's state")
    assert ended["status"] == "interrupted" and ended["error"]["type"] == "Interrupted"
    after = command(server, admin, session, "info models")
    assert after.status_code == 200 and after.json()["ok"]
    assert "#1" in " ".join(after.json()["log"]["note"]), after.json()         # the model is still there
    assert api(server, admin, "GET", "/" + session).json()["status"] == "active"
    listed = requests.get(server.url + "/api/sessions/%s/commands" % session, headers=admin, timeout=30).json()
    assert [c["status"] for c in listed["commands"] if c["id"] in (quick, running)] == ["done", "interrupted"]
    assert interrupt(server, admin, session).status_code == 409        # nothing runs now


def large_structure(copies=60):
    """A PDB of 62 chains x `copies` translated copies of the test structure
    (about 250 000 atoms): what makes `hbonds` (Python, mostly) take seconds."""
    import string
    atoms = [line for line in open(alanin_pdb()).read().splitlines() if line.startswith(("ATOM", "HETATM"))]
    out, serial = [], 0
    for index, chain in enumerate(string.ascii_uppercase + string.ascii_lowercase + string.digits):
        for copy in range(copies):
            shift = ((index % 8) * 30.0, (index // 8) * 30.0, copy * 30.0)
            for line in atoms:
                serial += 1
                xyz = [float(line[30 + 8 * k:38 + 8 * k]) + shift[k] for k in range(3)]
                out.append("%s%5d%s%s%s%8.3f%8.3f%8.3f%s" % (line[:6], serial % 100000, line[11:21], chain,
                                                             line[22:30], *xyz, line[54:]))
        out.append("TER")
    return "\n".join(out) + "\nEND\n"


def test_a_slow_viewer_command_on_a_large_structure_is_interrupted_within_the_grace(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60)
    viewer = server.token("viewer")
    session = new_session(server, viewer)
    uploaded = requests.post(server.url + "/api/sessions/%s/files" % session, headers=viewer, timeout=120,
                             files={"file": ("large.pdb", large_structure())})
    assert uploaded.status_code == 201, uploaded.text
    assert command(server, viewer, session, "open large.pdb", timeout=120).json()["ok"]
    running = started(server, viewer, session, "hbonds")
    wait_until(lambda: state(server, viewer, session, running)["status"] == "running", 5)
    began = time.monotonic()
    reply = interrupt(server, viewer, session, running)
    took = time.monotonic() - began
    print("measured: hbonds on ~250k atoms interrupted in %.2f s" % took)
    assert reply.status_code == 200 and reply.json()["session"] == "active", reply.text
    assert took < 5
    wait_until(lambda: state(server, viewer, session, running)["status"] == "interrupted", 10,
               message="the command's state to say interrupted")
    models = command(server, viewer, session, "info models").json()
    assert "large.pdb" in " ".join(models["log"]["note"])


def test_a_command_that_ignores_the_interrupt_ends_its_process_as_unresponsive(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, INTERRUPT_GRACE=2)
    admin = server.token("boss", "admin")
    session, other = new_session(server, admin), new_session(server, admin)
    place(workspace(server, session), "stubborn.py", STUBBORN)
    running = started(server, admin, session, "runscript stubborn.py")
    wait_until(lambda: requests.get(server.url + "/api/sessions/%s/commands/%s" % (session, running),
                                    headers=admin, timeout=10).json()["status"] == "running", 5)
    began = time.monotonic()
    reply = interrupt(server, admin, session, running)
    assert reply.status_code == 200 and reply.json()["session"] == "ended", reply.text
    assert 2 <= time.monotonic() - began < 15
    view = api(server, admin, "GET", "/" + session).json()
    assert view["end_reason"] == "unresponsive" and view["status"] == "failed"
    assert command(server, admin, other, "version").json()["ok"]


def read_events(response, until, deadline):
    """SSE events of `response` ({"id", "event", "data"}) until `until(event)` or the deadline."""
    seen, current = [], {}
    for raw in response.iter_lines(decode_unicode=True):
        if time.monotonic() > deadline:
            break
        if raw == "":
            if "event" in current:
                current["data"] = json.loads(current.get("data", "null"))
                seen.append(current)
                if until(current):
                    break
            current = {}
            continue
        if raw.startswith(":"):
            continue
        field, _, value = raw.partition(": ")
        current[field] = value
    return seen


def test_the_event_stream_shows_log_lines_while_a_command_runs_and_resumes_without_a_gap(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60)
    admin = server.token("boss", "admin")
    session = new_session(server, admin)
    place(workspace(server, session), "loop.py", LOOP)
    url = server.url + "/api/sessions/%s/events" % session
    first = requests.get(url, headers=admin, stream=True, timeout=30)
    assert first.status_code == 200 and first.headers["Content-Type"].startswith("text/event-stream")
    running = started(server, admin, session, "runscript loop.py")
    events = read_events(first, lambda e: e["event"] == "log" and "tick 2" in e["data"]["text"],
                         time.monotonic() + 20)
    first.close()
    kinds = [e["event"] for e in events]
    assert "status" in kinds and "command.started" in kinds
    assert any(e["data"].get("id") == running for e in events if e["event"] == "command.started")
    ticks = [e for e in events if e["event"] == "log" and e["data"]["text"].startswith("tick")]
    assert [t["data"]["text"].strip() for t in ticks][:3] == ["tick 0", "tick 1", "tick 2"]
    assert state(server, admin, session, running)["status"] == "running"     # seen before it ended
    # Reconnect after the last event seen: the next ticks, none missed, none twice.
    time.sleep(1.2)         # ticks are written meanwhile (the gap to be filled), not a wait for a condition
    again = requests.get(url, headers=dict(admin, **{"Last-Event-ID": ticks[-1]["id"]}), stream=True, timeout=30)
    more = read_events(again, lambda e: e["event"] == "log" and "tick 5" in e["data"]["text"],
                       time.monotonic() + 20)
    again.close()
    texts = [e["data"]["text"].strip() for e in more if e["event"] == "log" and e["data"]["text"].startswith("tick")]
    assert texts[:3] == ["tick 3", "tick 4", "tick 5"], texts
    assert interrupt(server, admin, session, running).status_code == 200


def test_event_streams_per_user_are_bounded(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, EVENT_STREAMS_PER_USER=2)
    alice = server.token("alice")
    session = new_session(server, alice)
    url = server.url + "/api/sessions/%s/events" % session
    streams = [requests.get(url, headers=alice, stream=True, timeout=30) for _ in range(2)]
    assert [s.status_code for s in streams] == [200, 200]
    third = requests.get(url, headers=alice, timeout=30)
    assert third.status_code == 429 and third.json()["error"]["code"] == "too_many_streams"
    assert "Retry-After" in third.headers
    streams[0].close()
    # The closed one's lease goes when its stream notices (its next write): then a new one opens.
    wait_until(lambda: (lambda r: r.close() or r.status_code == 200)(
        requests.get(url, headers=alice, stream=True, timeout=30)), 40, interval=1,
        message="a stream after one was closed")
    for s in streams[1:]:
        s.close()


def test_fifty_open_streams_leave_health_and_commands_answering(gunicorn_server):
    # The default 4 workers, each serving EVENT_STREAMS_PER_WORKER (32) streams. With 2 this failed
    # now and then beside other test runs: fifty streams of which gunicorn gave one worker more than
    # 32 are answered 503 there (as documented), the likely cause.
    server = gunicorn_server(workers=4, SWEEP_INTERVAL=60, EVENT_STREAMS_PER_USER=100)
    users = [server.token("u%d" % i) for i in range(5)]
    sessions = [new_session(server, headers) for headers in users]
    streams = []
    for i in range(50):
        headers, session = users[i % 5], sessions[i % 5]
        stream = requests.get(server.url + "/api/sessions/%s/events" % session, headers=headers, stream=True,
                              timeout=30)
        assert stream.status_code == 200, stream.text
        streams.append(stream)
    try:
        def timed(_):
            began = time.perf_counter()
            assert requests.get(server.url + "/api/health", timeout=10).status_code == 200
            return time.perf_counter() - began
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            latencies = sorted(pool.map(timed, range(200)))
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        print("measured: /api/health with 50 open streams: p50 %.1f ms, p99 %.1f ms"
              % (statistics.median(latencies) * 1e3, p99 * 1e3))
        assert p99 < 1.0
        for headers, session in zip(users, sessions):
            assert command(server, headers, session, "version").json()["ok"]
    finally:
        for stream in streams:
            stream.close()


def test_a_background_command_outlives_a_graceful_restart_of_its_worker(gunicorn_server):
    import signal
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60)
    admin = server.token("boss", "admin")
    session = new_session(server, admin)
    place(workspace(server, session), "three.py", "import time\ntime.sleep(3)\nsession.logger.info('slept')\n")
    running = started(server, admin, session, "runscript three.py")
    old = set(server.worker_pids())
    server.proc.send_signal(signal.SIGHUP)      # new workers; the old ones stop gracefully
    wait_until(lambda: not old & set(server.worker_pids()), 30, message="the old workers to exit")
    ended = state(server, admin, session, running)
    assert ended["status"] == "done", ended
    assert "slept" in " ".join(ended["log"]["note"])


def test_a_started_command_is_the_agents_before_its_202_so_the_next_request_finds_it(app_factory, monkeypatch):
    """The background thread is held back 0.3 s before it reaches the agent (a
    loaded worker's scheduling, made certain): the 202 still comes only once the
    agent has the command, so a second command is refused (409) and an
    interrupt by its id reaches it; of two started at once, one is refused."""
    from app.services.sessions.running import SessionRunning
    from .conftest import token_header
    original = SessionRunning._run_in_background

    def held_back(self, *args):
        time.sleep(0.3)
        return original(self, *args)
    monkeypatch.setattr(SessionRunning, "_run_in_background", held_back)
    app = app_factory(POOL_SIZE=0)
    client, admin = app.test_client(), token_header(app, "boss", "admin")
    created = client.post("/api/sessions", json={}, headers=admin)
    assert created.status_code == 201, created.get_json()
    url = "/api/sessions/" + created.get_json()["id"]
    place(app.config["WORKSPACE_ROOT"] + "/" + created.get_json()["id"], "loop.py", LOOP)

    def start():
        return client.post(url + "/commands", json={"command": "runscript loop.py", "wait": False}, headers=admin)
    first = start()
    assert first.status_code == 202, first.get_json()
    busy = client.post(url + "/commands", json={"command": "version"}, headers=admin)
    assert busy.status_code == 409 and busy.get_json()["error"]["code"] == "session_busy", busy.get_json()
    stopped = client.post(url + "/interrupt", json={"id": first.get_json()["id"]}, headers=admin)
    assert stopped.status_code == 200 and stopped.get_json()["session"] == "active", stopped.get_json()
    wait_until(lambda: client.get(url + "/commands/" + first.get_json()["id"], headers=admin).get_json()["status"]
               == "interrupted", 10, message="the first command interrupted")

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda _: start(), range(2)))
    assert sorted(r.status_code for r in replies) == [202, 409], [r.get_json() for r in replies]
    running = next(r for r in replies if r.status_code == 202).get_json()["id"]
    assert client.post(url + "/interrupt", json={"id": running}, headers=admin).status_code == 200


def test_a_session_whose_command_runs_past_its_idle_timeout_is_not_culled(app_factory):
    """Activity is written when a command ends: a long one is use all along,
    whatever the clock says of the last one (the sweep's clock is injected)."""
    from .conftest import token_header
    from .helpers import sweep
    app = app_factory(POOL_SIZE=0, IDLE_ACTION="suspend")
    client, admin = app.test_client(), token_header(app, "boss", "admin")
    created = client.post("/api/sessions", json={"idle_timeout": 60}, headers=admin).get_json()
    url = "/api/sessions/" + created["id"]
    place(app.config["WORKSPACE_ROOT"] + "/" + created["id"], "loop.py", LOOP)
    running = client.post(url + "/commands", json={"command": "runscript loop.py", "wait": False}, headers=admin)
    assert running.status_code == 202, running.get_json()
    assert sweep(app, now=time.time() + 120) == {}
    assert client.get(url, headers=admin).get_json()["status"] == "active"
    assert client.get(url + "/commands/" + running.get_json()["id"], headers=admin).get_json()["status"] == "running"
    assert client.post(url + "/interrupt", json={}, headers=admin).status_code == 200
    assert sweep(app, now=time.time() + 120) == {"suspended": 1}        # idle now: as before


def test_a_background_command_whose_run_fails_by_our_fault_is_a_500_and_recorded_failed(app_factory, monkeypatch):
    """Our bug in the background thread (here: the run raises) is the start's 500
    with a request id, and the command's resource says failed, not running."""
    from app.services.sessions.running import SessionRunning
    from .conftest import token_header

    def broken(self, *args, **kwargs):
        raise ValueError("a bug of ours")
    monkeypatch.setattr(SessionRunning, "execute", broken)
    app = app_factory(POOL_SIZE=0)
    client, alice = app.test_client(), token_header(app, "alice")
    url = "/api/sessions/" + client.post("/api/sessions", json={}, headers=alice).get_json()["id"]
    reply = client.post(url + "/commands", json={"command": "version", "wait": False}, headers=alice)
    assert reply.status_code == 500 and reply.get_json()["error"]["request_id"], reply.get_json()
    listed = client.get(url + "/commands", headers=alice).get_json()["commands"]
    assert [c["status"] for c in listed] == ["failed"], listed
    one = client.get(url + "/commands/" + listed[0]["id"], headers=alice).get_json()
    assert one["error"]["type"] == "internal_error", one
