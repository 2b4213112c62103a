"""Lifecycle events as signed webhooks (issue 36): events written in the
transaction of the change they tell of (SQLite and PostgreSQL), the sender's
order per session, retries with backoff on an injected clock, dead letters
and their resend over the admin API, signatures, and real gunicorn against a
real loopback receiver: down then up, and a server SIGKILLed mid-create."""
import json
import random
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from app.store import SessionRecord, Store
from app.store.models import CREATE, RESUME
from app.store.outbox_queries import (
    CREATED,
    ENDED,
    READY,
    RESUMED,
    SUSPENDED_EVENT,
    lifecycle_event,
    outbox_insert,
)
from app.store.tables import outbox


def record(user="alice", domain="elsewhere"):
    now = time.time()
    return SessionRecord(id=str(uuid.uuid4()), user=user, label=None, status="starting", created_at=now,
                         last_activity=now, idle_timeout=60, max_lifetime=600, workspace="/nowhere", host_id="h",
                         domain=domain, operation=CREATE)


@pytest.fixture
def store(database_url):
    Store(database_url).init_schema()
    handle = Store(database_url)
    yield handle
    handle.close()


def bodies(store, session_id=None):
    """The events' bodies in outbox order (of one session, or all)."""
    query = sa.select(outbox.c.body).order_by(outbox.c.id)
    if session_id is not None:
        query = query.where(outbox.c.session_id == session_id)
    return [json.loads(body) for body in store._execute(query).scalars()]


def types(store, session_id=None):
    return [body["type"] for body in bodies(store, session_id)]


# Which changes tell of an event

@pytest.mark.parametrize("old, new, operation, resuming, expected", [
    ("starting", "active", CREATE, False, READY),
    ("starting", "active", "create_more", False, READY),
    ("starting", "active", RESUME, False, RESUMED),
    ("starting", "active", None, True, RESUMED),        # an older row: its kept digest says it resumes
    ("terminating", "suspended", None, False, SUSPENDED_EVENT),
    ("terminating", "terminated", None, False, ENDED),
    ("terminating", "failed", None, False, ENDED),
    ("starting", "failed", CREATE, False, ENDED),
    ("suspended", "terminated", None, False, ENDED),
    ("starting", "starting", CREATE, False, None),      # progress of a start
    ("active", "terminating", None, False, None),       # an end or a suspend begins
    ("starting", "terminating", CREATE, False, None),
    ("terminating", "active", None, False, None),       # a suspend undone
    ("starting", "suspended", RESUME, True, None),      # a resume given up
    ("suspended", "starting", RESUME, True, None),      # a resume begins: told when it is active
])
def test_which_changes_tell_of_which_event(old, new, operation, resuming, expected):
    assert lifecycle_event(old, new, operation, resuming) == expected


def test_each_finished_change_writes_its_event_once_in_order(store):
    rec = record()
    store.insert_session(rec, 10, 10)
    sid = rec.id
    assert store.transition(sid, ["starting"], "starting", process={"pid": 1})
    assert store.transition(sid, ["starting"], "active", owner=None, operation=None)
    assert not store.transition(sid, ["starting"], "active")                   # lost the compare-and-set
    assert store.transition(sid, ["active"], "terminating", operation="suspend")
    assert store.transition(sid, ["terminating"], "suspended", suspend_digest="d", operation=None)
    resumed, _ = store.resume_session(sid, "alice", "elsewhere", "h", 10, 10)
    assert resumed
    assert store.transition(sid, ["starting"], "active", suspend_digest=None, operation=None)
    assert store.transition(sid, ["starting", "active"], "terminating", end_reason="idle_timeout")
    assert store.transition(sid, ["terminating"], "terminated", end_reason="idle_timeout")
    assert not store.transition(sid, ["terminating"], "failed", end_reason="crashed")
    assert types(store) == [CREATED, READY, SUSPENDED_EVENT, RESUMED, ENDED]
    events = bodies(store)
    assert all(e["session"] == sid and e["user"] == "alice" for e in events)
    assert len({e["id"] for e in events}) == 5 and all(uuid.UUID(e["id"]).version == 4 for e in events)
    assert events[-1]["end_reason"] == "idle_timeout" and "end_reason" not in events[0]
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    assert events[0]["time"] == round(rec.created_at, 3)
    assert set(events[1]) == {"id", "type", "time", "session", "user"}


def test_a_change_refused_writes_nothing(store):
    from app.store import LimitReached
    first = record()
    store.insert_session(first, 10, 1)
    with pytest.raises(LimitReached):
        store.insert_session(record(), 10, 1)       # rolled back: no row, no event
    assert types(store) == [CREATED]
    assert not store.transition("no-such-session", ["starting"], "failed", end_reason="deleted")
    assert types(store) == [CREATED]


def test_concurrent_ends_write_one_event(database_url, store):
    rec = record()
    store.insert_session(rec, 10, 10)
    barrier, won = threading.Barrier(12), []

    def end(reason):
        handle = Store(database_url)
        try:
            barrier.wait()
            if handle.transition(rec.id, ["starting"], "failed", end_reason=reason):
                won.append(reason)
        finally:
            handle.close()
    threads = [threading.Thread(target=end, args=("r%d" % i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    ended = [e for e in bodies(store) if e["type"] == ENDED]
    assert [e["end_reason"] for e in ended] == won


def test_an_event_is_written_in_its_callers_transaction_or_not_at_all(store):
    rec = record("bob")
    store.insert_session(rec, 10, 10)
    with store._transaction() as connection:
        event_id = outbox_insert(connection, "share.created", rec.id, data={"share": "x", "grantee": "carol"})
    shared = bodies(store)[-1]
    assert shared == {"id": event_id, "type": "share.created", "time": shared["time"], "session": rec.id,
                      "user": "bob", "share": "x", "grantee": "carol"}
    with pytest.raises(RuntimeError), store._transaction() as connection:
        outbox_insert(connection, "share.revoked", rec.id)
        raise RuntimeError("the share's own change failed")
    assert types(store) == [CREATED, "share.created"]
    with pytest.raises(ValueError), store._transaction() as connection:
        outbox_insert(connection, "share.revoked", rec.id, data={"user": "mallory"})
    with pytest.raises(ValueError):
        store.add_event("session.exploded", rec.id)


# Every path of the service through a session's life tells each change once
# (the fake launcher: tests/fake_launcher.py says why it is faithful here)

def told(app, session_id):
    """(type, end_reason) of a session's events, in order, read from the app's store."""
    from app.context import EXTENSION
    store = app.extensions[EXTENSION].new_store()
    try:
        return [(e["type"], e.get("end_reason")) for e in bodies(store, session_id)]
    finally:
        store.close()


def test_each_path_of_a_sessions_life_tells_each_change_once(fake):
    from app.context import EXTENSION

    from .conftest import token_header, wait_until
    from .helpers import gone_owner, row, sweep
    app, launcher = fake
    client, alice = app.test_client(), token_header(app, "alice")
    runtime = app.extensions[EXTENSION]

    def create(expect=201, **body):
        reply = client.post("/api/sessions", headers=alice, json=body)
        assert reply.status_code == expect, reply.get_json()
        return reply.get_json().get("id")

    def active(sid):
        wait_until(lambda: row(app, sid).status == "active", 10, message="session %s active" % sid)

    # Created cold, suspended, resumed, deleted.
    sid = create()
    assert client.post("/api/sessions/%s/suspend" % sid, headers=alice).status_code == 200
    assert client.post("/api/sessions/%s/resume" % sid, headers=alice).status_code == 202
    active(sid)
    assert client.delete("/api/sessions/" + sid, headers=alice).status_code == 204
    assert told(app, sid) == [(CREATED, None), (READY, None), (SUSPENDED_EVENT, None), (RESUMED, None),
                              (ENDED, "deleted")]
    # From the warm pool; idle, suspended by the sweeper; resumed on use; a resume
    # whose worker died goes back to suspended (nothing told), then resumes.
    pool, close = runtime.make_pool()
    try:
        pool.fill()
        wait_until(lambda: pool.store.count_pool_by_status().get("ready") == 2, 10, message="the pool")
    finally:
        close()
    pooled = create()
    assert sweep(app, now=time.time() + 3600) == {"suspended": 1}
    assert client.post("/api/sessions/%s/commands" % pooled, headers=alice, json={"command": "pwd"}).status_code \
        == 409                                      # session_resuming: resumed on use
    active(pooled)
    assert sweep(app, now=time.time() + 3600) == {"suspended": 1}
    store = runtime.new_store()
    try:
        assert store.transition(pooled, ["suspended"], "starting", owner=gone_owner(), operation="resume")
    finally:
        store.close()
    sweep(app)
    assert row(app, pooled).status == "suspended"
    assert told(app, pooled) == [(CREATED, None), (READY, None), (SUSPENDED_EVENT, None), (RESUMED, None),
                                 (SUSPENDED_EVENT, None)]
    assert client.delete("/api/sessions/" + pooled, headers=alice).status_code == 204     # deleted while suspended
    assert told(app, pooled)[-1] == (ENDED, "deleted") and len(told(app, pooled)) == 6
    # A suspend that fails (its process died) tells nothing of a suspend; the crash is an end.
    crashed = create()
    launcher.kill(row(app, crashed).process)
    assert client.post("/api/sessions/%s/suspend" % crashed, headers=alice).status_code >= 400
    sweep(app)
    assert told(app, crashed) == [(CREATED, None), (READY, None), (ENDED, "crashed")]
    # A start that never gets ready.
    app.config["STARTUP_TIMEOUT"] = 0.2
    app.config["POOL_SIZE"] = 0
    launcher.ready_gate = threading.Event()
    create(expect=503)
    [failed] = [r.id for r in _all_sessions(app) if r.end_reason == "startup_failed"]
    launcher.ready_gate = None
    assert told(app, failed) == [(CREATED, None), (ENDED, "startup_failed")]


def _all_sessions(app):
    from app.context import EXTENSION
    store = app.extensions[EXTENSION].new_store()
    try:
        return store.list_sessions()
    finally:
        store.close()


# The sender, against a real receiver on loopback

class Receiver:
    """A real HTTP server on loopback that records each POST. `answer(headers,
    body)` gives the status (default 200); stopped, it refuses connections on
    its port; `hold`, while cleared, keeps each request waiting (a slow receiver)."""

    def __init__(self):
        self.received = []          # (headers, body) in arrival order
        self.answer = lambda headers, body: 200
        self.reply = None           # the reply's body (default: ok or no)
        self.hold = threading.Event()
        self.hold.set()
        self.port = 0
        self.server = None

    @property
    def url(self):
        return "http://127.0.0.1:%d/hook" % self.port

    def start(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                receiver.hold.wait(5)
                status = receiver.answer(self.headers, body)
                reply = receiver.reply or (b"ok" if status < 300 else b"no")
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass        # the sender gave up waiting (WEBHOOK_TIMEOUT): what a slow receiver meets

            def log_message(self, *args):
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def bodies(self):
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver():
    started = Receiver().start()
    yield started
    started.hold.set()
    started.stop()


SECRET = "s3cret-for-tests"


def sender_for(url, receiver_url, clock, **settings):
    from app.services.webhooks.delivery import Sender
    config = {"WEBHOOK_URLS": [receiver_url], "WEBHOOK_SECRET": SECRET, "WEBHOOK_MAX_ATTEMPTS": 10,
              "WEBHOOK_TIMEOUT": 2.0, **settings}
    return Sender(lambda: Store(url), config, clock=clock, rng=random.Random(36).random)


def lifecycle(store, count):
    """`count` sessions, their changes interleaved: created, ready, then the even ones ended."""
    records = [record("user%d" % i) for i in range(count)]
    for rec in records:
        store.insert_session(rec, 100, 100)
    for rec in records:
        store.transition(rec.id, ["starting"], "active", operation=None)
    for rec in records[::2]:
        store.transition(rec.id, ["active"], "terminating", end_reason="deleted")
        store.transition(rec.id, ["terminating"], "terminated", end_reason="deleted")
    return [rec.id for rec in records]


def check_signed(received, stored):
    """Each request is signed over its timestamp and body, carries its event's
    headers, and its body is the stored one, byte for byte."""
    from app.services.webhooks.signing import verify
    for headers, body in received:
        event = json.loads(body)
        assert verify(SECRET, headers["X-CXS-Timestamp"], body, headers["X-CXS-Signature"],
                      now=int(headers["X-CXS-Timestamp"]))
        assert headers["Content-Type"] == "application/json"
        assert (headers["X-CXS-Event"], headers["X-CXS-Event-Id"]) == (event["type"], event["id"])
        assert body.decode() == stored[event["id"]]


def stored_bodies(store):
    return {json.loads(body)["id"]: body for body in store._execute(sa.select(outbox.c.body)).scalars()}


def test_a_receiver_down_for_30_s_then_up_gets_every_event_in_order_per_session(database_url, store, receiver):
    sids = lifecycle(store, 4)
    store.add_event("share.created", sids[1], data={"share": "s1", "grantee": "carol", "access": "view"})
    expected = bodies(store)
    now = [time.time()]
    sender = sender_for(database_url, receiver.url, lambda: now[0])
    receiver.stop()                                         # refusing connections
    start = now[0]
    while now[0] < start + 30:
        if now[0] >= start + 15 and receiver.server is None:
            receiver.start()                                # then answering 500
            receiver.answer = lambda headers, body: 500
        assert sender.tick()["delivered"] == 0
        now[0] += 1
    # Retried with backoff (not once per tick), and only each session's first event.
    attempts = {e.event_id: e.attempts for e in store.list_events("pending", 100)}
    firsts = {events[0]["id"] for events in _by_session(expected).values()}
    assert all(2 <= attempts[i] <= 7 for i in firsts) and all(attempts[i] == 0 for i in attempts if i not in firsts)
    receiver.answer = lambda headers, body: 200
    while store.count_events()["pending"] and now[0] < start + 400:
        sender.tick()
        now[0] += 1
    assert store.count_events() == {"pending": 0, "delivered": len(expected), "dead": 0}
    delivered = receiver.bodies()
    assert {e["id"] for e in delivered} == {e["id"] for e in expected}
    for sid, events in _by_session(expected).items():
        firsts_seen = []
        for event in delivered:
            if event["session"] == sid and event["id"] not in firsts_seen:
                firsts_seen.append(event["id"])
        assert firsts_seen == [e["id"] for e in events], "session %s out of order" % sid
    check_signed(receiver.received, stored_bodies(store))


def _by_session(events):
    grouped = {}
    for event in events:
        grouped.setdefault(event["session"], []).append(event)
    return grouped


def test_a_slow_receiver_holds_a_tick_for_its_time_budget_at_most(database_url, store, receiver, monkeypatch):
    from app.services.webhooks import delivery
    # The first PARALLEL sends start at once; the next ones only once those
    # time out (WEBHOOK_TIMEOUT), which is past the tick's time: not sent.
    monkeypatch.setattr(delivery, "TICK_SECONDS", 1.0)
    lifecycle(store, 20)
    receiver.hold.clear()                                   # every request waits past the timeout
    sender = sender_for(database_url, receiver.url, time.time, WEBHOOK_TIMEOUT=1.5)
    began = time.monotonic()
    results = sender.tick()
    took = time.monotonic() - began
    receiver.hold.set()
    assert results == {"delivered": 0, "failed": delivery.PARALLEL, "dead": 0}, results
    assert took < 1.0 + 1.5 + 1.0, took
    attempts = sorted(e.attempts for e in store.list_events("pending", 100))
    assert attempts.count(1) == delivery.PARALLEL and set(attempts) == {0, 1}
    assert all("ReadTimeout" in e.last_error for e in store.list_events("pending", 100) if e.attempts)


def test_without_urls_events_are_marked_unsent_and_the_outbox_is_pruned(database_url, store):
    from app.services.webhooks import delivery
    lifecycle(store, 2)
    now = [time.time()]
    sender = sender_for(database_url, "http://unused.invalid/", lambda: now[0], WEBHOOK_URLS=[])
    assert sender.tick() == {"skipped": 5}
    assert store.count_events() == {"pending": 0, "delivered": 5, "dead": 0}
    assert {e for e in store._execute(sa.select(outbox.c.last_error)).scalars()} == {delivery.NO_URLS}
    dead = store.add_event("share.revoked", None, user="carol")
    store.mark_failed(store.get_event(dead).id, "HTTP 500", now[0], dead_at=now[0])
    now[0] += delivery.DELIVERED_KEPT + delivery.PRUNE_EVERY + 1
    sender.tick()
    assert store.count_events() == {"pending": 0, "delivered": 0, "dead": 1}     # the dead are kept longer
    now[0] += delivery.DEAD_KEPT
    sender.tick()
    assert store.count_events() == {"pending": 0, "delivered": 0, "dead": 0}


def test_backoff_doubles_from_a_second_to_five_minutes_with_jitter():
    from app.services.webhooks.delivery import backoff
    for failures, low, high in [(1, 0.5, 1), (2, 1, 2), (3, 2, 4), (9, 128, 256), (10, 150, 300), (50, 150, 300)]:
        assert backoff(failures, lambda: 0.0) == low and backoff(failures, lambda: 1.0) == high


def test_one_webhook_sender_of_all_processes_apart_from_the_sweepers(database_url):
    from app.store import leader_lock
    from app.store.leader import webhook_lock
    Store(database_url).init_schema()
    first, second, sweeper = webhook_lock(database_url), webhook_lock(database_url), leader_lock(database_url, "d")
    try:
        assert first.try_acquire() and first.try_acquire()
        assert not second.try_acquire()
        assert sweeper.try_acquire()                # a domain's sweeper is another role
        first.release()
        assert second.try_acquire()
    finally:
        for lock in (first, second, sweeper):
            lock.release()


def test_webhook_settings_are_checked_at_start(tmp_path):
    from app import create_app
    from config import ConfigError

    from .conftest import make_config
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET"):
        create_app(make_config(tmp_path, CHIMERAX_PATH="", WEBHOOK_URLS=["https://portal.example/hook"]),
                   config_name="testing")
    with pytest.raises(ConfigError, match="WEBHOOK_URLS"):
        create_app(make_config(tmp_path, CHIMERAX_PATH="", WEBHOOK_URLS=["portal.example/hook"],
                               WEBHOOK_SECRET="x"), config_name="testing")


def test_the_documented_five_lines_verify_what_the_service_sends(database_url, store, receiver):
    import re

    from app.services.processes.locate import PROJECT_ROOT
    text = open(PROJECT_ROOT + "/docs/webhooks.md").read()
    block = re.search(r"## Verifying a request.*?```python\n(.*?)```", text, re.S).group(1)
    assert len(block.strip().splitlines()) <= 6         # five lines and the blank one
    namespace = {}
    exec(block, namespace)
    verify = namespace["verify"]
    lifecycle(store, 1)
    sender_for(database_url, receiver.url, time.time).tick()
    assert len(receiver.received) == 3      # created, ready, ended
    for headers, body in receiver.received:
        assert verify(SECRET.encode(), headers, body)
        assert not verify(b"another secret", headers, body)
        assert not verify(SECRET.encode(), headers, body.replace(b"alice", b"mallory").replace(b"user0", b"root"))
        replayed = dict(headers, **{"X-CXS-Timestamp": str(int(headers["X-CXS-Timestamp"]) - 301)})
        assert not verify(SECRET.encode(), replayed, body)
        old = int(time.time()) - 301        # signed long ago: refused however correct its signature
        from app.services.webhooks.signing import signature
        assert not verify(SECRET.encode(), dict(headers, **{"X-CXS-Timestamp": str(old), "X-CXS-Signature":
                                                            signature(SECRET, old, body)}), body)


# Dead letters and the admin API

def test_a_dead_event_does_not_hold_its_session_and_is_resent_from_the_admin_api(tmp_path, receiver):
    from app import create_app
    from app.context import EXTENSION
    from app.services.identity.tokens import TokenService

    from .conftest import make_config, token_header
    app = create_app(make_config(tmp_path, CHIMERAX_PATH="", WEBHOOK_URLS=[receiver.url], WEBHOOK_SECRET=SECRET,
                                 WEBHOOK_MAX_ATTEMPTS=3), config_name="testing")
    url = app.extensions[EXTENSION].url
    store = Store(url)
    try:
        rec = record()
        store.insert_session(rec, 10, 10)
        store.transition(rec.id, ["starting"], "failed", end_reason="startup_failed")
        created, ended = [e["id"] for e in bodies(store)]
        receiver.answer = lambda headers, body: 500 if headers["X-CXS-Event"] == CREATED else 204
        now = [time.time()]
        sender = sender_for(url, receiver.url, lambda: now[0], WEBHOOK_MAX_ATTEMPTS=3)
        for _ in range(4):
            sender.tick()
            now[0] += 600
        # Three sends of the created event, dead; only then the session's next one, delivered.
        assert [e["id"] for e in receiver.bodies()] == [created] * 3 + [ended]
        assert store.count_events() == {"pending": 0, "delivered": 1, "dead": 1}

        client = app.test_client()
        admin, alice = token_header(app, "root", "admin"), token_header(app, "alice")
        reply = client.get("/api/admin/webhooks", headers=admin)
        assert reply.status_code == 200
        listing = reply.get_json()
        assert listing["counts"] == {"pending": 0, "delivered": 1, "dead": 1} and listing["pending"] == []
        [dead] = listing["dead"]
        assert (dead["id"], dead["type"], dead["state"], dead["attempts"]) == (created, CREATED, "dead", 3)
        assert dead["last_error"] == "%s: HTTP 500 no" % receiver.url
        assert dead["body"] == bodies(store)[0] and dead["session"] == rec.id and dead["dead_at"]

        assert client.get("/api/admin/webhooks", headers=alice).status_code == 403
        _, reader = TokenService(store).create("root", "admin", scopes=["admin:read"])
        refused = client.post("/api/admin/webhooks/%s/resend" % created,
                              headers={"Authorization": "Bearer " + reader})
        assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "insufficient_scope"
        assert client.post("/api/admin/webhooks/%s/resend" % uuid.uuid4(), headers=admin).status_code == 404

        resent = client.post("/api/admin/webhooks/%s/resend" % created, headers=admin)
        assert resent.status_code == 200
        assert (resent.get_json()["state"], resent.get_json()["attempts"]) == ("pending", 0)
        receiver.answer = lambda headers, body: 200
        assert sender.tick()["delivered"] == 1
        assert [e["id"] for e in receiver.bodies()][-1] == created
        assert client.get("/api/admin/webhooks", headers=admin).get_json()["counts"] == {
            "pending": 0, "delivered": 2, "dead": 0}
    finally:
        store.close()


# Real gunicorn (several workers, the sweeper's scheduler) and the real ChimeraX runtime

def received_by_session(receiver, session_id):
    return [e for e in receiver.bodies() if e["session"] == session_id]


def first_arrivals(events):
    seen = []
    for event in events:
        if event["id"] not in seen:
            seen.append(event["id"])
    return seen


@pytest.mark.slow
def test_gunicorn_sends_every_event_once_its_receiver_is_back(gunicorn_server, receiver):
    import requests

    from .conftest import wait_until
    receiver.stop()                                         # refusing connections from the start
    # Three workers, each with the scheduler: one sender among them. No pool:
    # its processes would only slow this machine's two cores.
    server = gunicorn_server(workers=3, POOL_SIZE=0, WEBHOOK_URLS=receiver.url, WEBHOOK_SECRET=SECRET)
    alice = server.token("alice")
    sids = []
    for _ in range(2):
        reply = requests.post(server.url + "/api/sessions", json={}, headers=alice, timeout=60)
        assert reply.status_code == 201, reply.text
        sids.append(reply.json()["id"])
    assert requests.delete(server.url + "/api/sessions/" + sids[0], headers=alice, timeout=60).status_code == 204
    store = server.store()
    try:
        expected = bodies(store)
        assert [(e["session"], e["type"]) for e in expected if e["session"] == sids[0]] == [
            (sids[0], CREATED), (sids[0], READY), (sids[0], ENDED)]
        # Sent, refused, and sent again later: each session's first event only.
        wait_until(lambda: all(e.attempts >= 3 for e in store.list_events("pending", 100)
                               if e.event_id in {received[0]["id"] for received in _by_session(expected).values()}),
                   60, message="each session's first event to be tried three times")
        assert all(e.attempts == 0 for e in store.list_events("pending", 100) if e.type != CREATED)
        receiver.start()
        wait_until(lambda: store.count_events()["pending"] == 0, 60, message="every event to be delivered")
        assert store.count_events()["dead"] == 0
        stored = stored_bodies(store)
    finally:
        store.close()
    delivered = receiver.bodies()
    # One sender of all the workers: once the receiver is up each event comes once.
    assert sorted(e["id"] for e in delivered) == sorted(stored)
    for sid, events in _by_session(expected).items():
        assert first_arrivals(received_by_session(receiver, sid)) == [e["id"] for e in events]
    check_signed(receiver.received, stored)
    for headers, _ in receiver.received:
        assert abs(time.time() - int(headers["X-CXS-Timestamp"])) < 120     # the sender's real clock


@pytest.mark.slow
@pytest.mark.parametrize("when", ["inserted", "spawned"])
def test_a_server_killed_mid_create_still_tells_of_the_session(gunicorn_server, receiver, when):
    """SIGKILL of gunicorn's master and workers while a session starts (its
    created event not yet sent): just inserted, or with its ChimeraX spawned.
    The restarted server's recovery adopts it (ChimeraX got ready) or ends it,
    and both events arrive."""
    import requests

    from .conftest import wait_until
    receiver.stop()             # nothing is sent before the kill: the events wait in the outbox
    # No pool: a cold start, so that there is a start under way to kill.
    server = gunicorn_server(workers=2, POOL_SIZE=0, WEBHOOK_URLS=receiver.url, WEBHOOK_SECRET=SECRET)
    alice = server.token("alice")

    def create():
        try:
            requests.post(server.url + "/api/sessions", json={}, headers=alice, timeout=60)
        except requests.RequestException:
            pass                # its worker was killed
    creating = threading.Thread(target=create)
    creating.start()
    store = server.store()
    try:
        starting = wait_until(lambda: next((r for r in store.live_sessions() if r.status == "starting"
                                            and (when == "inserted" or r.process is not None)), None),
                              30, interval=0.005, message="a session starting (%s)" % when)
        server.kill_hard()
        creating.join(60)
        assert types(store, starting.id) == [CREATED]
        receiver.start()
        server.start()
        wait_until(lambda: len(first_arrivals(received_by_session(receiver, starting.id))) == 2, 60,
                   message="the session's two events to arrive")
        after = store.get_session(starting.id)
        stored = stored_bodies(store)
    finally:
        store.close()
    told = received_by_session(receiver, starting.id)
    kinds = [next(e["type"] for e in told if e["id"] == i) for i in first_arrivals(told)]
    print("killed mid-create: the restarted server %s it; events %s" % (
        "adopted" if after.status == "active" else "ended", kinds))
    if after.status == "active":                # its ChimeraX was ready: adopted
        assert kinds == [CREATED, READY]
    else:
        assert kinds == [CREATED, ENDED] and after.end_reason == "server_restart"
        assert [e for e in told if e["type"] == ENDED][0]["end_reason"] == "server_restart"
    check_signed([(h, b) for h, b in receiver.received if json.loads(b)["session"] == starting.id], stored)


@pytest.mark.slow
@pytest.mark.browser
def test_the_admin_page_shows_a_dead_event_as_text_and_resends_it(gunicorn_server, receiver, tmp_path):
    """Chromium on /admin: the dead event's row (its receiver's hostile reply as
    text, never markup), Resend, and the event delivered."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from . import browser as chromium
    from .conftest import wait_until
    receiver.answer = lambda headers, body: 500
    receiver.reply = b'<img src=x data-testid="injected"><b>down</b>'
    # No pool (no session is needed), two sends before an event is dead (it is, within a few seconds).
    server = gunicorn_server(workers=2, POOL_SIZE=0, WEBHOOK_URLS=receiver.url, WEBHOOK_SECRET=SECRET,
                             WEBHOOK_MAX_ATTEMPTS=2)
    boss = server.token("boss", "admin")["Authorization"].removeprefix("Bearer ")
    store = server.store()
    import shutil
    import tempfile
    scratch = tempfile.mkdtemp(prefix="chr")      # short: chromium's socket path must fit in 108 bytes
    try:
        driver = chromium.start(tmp_path, scratch)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    try:
        event_id = store.add_event("share.created", None, user="alice", data={"grantee": "<i>bob</i>"})
        wait_until(lambda: store.count_events()["dead"] == 1, 30, message="the event to be dead")

        def until(condition, message):
            return WebDriverWait(driver, 60, poll_frequency=0.2).until(lambda d: condition(), message)

        def row():
            return driver.find_elements(By.CSS_SELECTOR, '[data-event-id="%s"]' % event_id)
        driver.get(server.url + "/admin")
        driver.find_element(By.CSS_SELECTOR, '[data-testid="token-input"]').send_keys(boss)
        driver.find_element(By.CSS_SELECTOR, '[data-testid="sign-in"]').click()
        [dead] = until(row, "the dead event's row")
        assert "share.created" in dead.text and "HTTP 500 <img src=x" in dead.text and "<b>down</b>" in dead.text
        assert driver.find_elements(By.CSS_SELECTOR, '[data-testid="injected"]') == []
        assert "0 pending, 1 dead" in driver.find_element(By.CSS_SELECTOR, '[data-testid="webhook-counts"]').text
        chromium.screenshot(driver, "admin-webhooks")
        receiver.answer = lambda headers, body: 200
        dead.find_element(By.CSS_SELECTOR, '[data-testid="webhook-resend"]').click()
        until(lambda: not row(), "the row gone after Resend")
        wait_until(lambda: store.count_events() == {"pending": 0, "delivered": 1, "dead": 0}, 30,
                   message="the resent event delivered")
        assert [e["id"] for e in receiver.bodies()] == [event_id] * 3
    finally:
        driver.quit()
        shutil.rmtree(scratch, ignore_errors=True)
        store.close()
