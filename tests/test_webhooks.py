"""Lifecycle events as signed webhooks (issue 36): events written in the
transaction of the change they tell of (SQLite and PostgreSQL), the sender's
order per session, retries with backoff on an injected clock, dead letters
and their resend over the admin API, signatures, and real gunicorn against a
real loopback receiver: down then up, and a server SIGKILLed mid-create."""
import json
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
