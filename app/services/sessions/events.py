"""A session's live event stream (GET /events, Server-Sent Events): what its
ChimeraX logs as it writes it, its commands starting and ending (with their
ids), and its status changes.

The events come from the agent's buffer (chimerax_agent/cxs_events.py), read
by long polls; an event's id is `<process>.<n>` so that a reconnect with
Last-Event-ID resumes in the same process's buffer (or, after a resume into
a new process, from that one's start). Status changes are read from the
store between polls. Each open stream holds a lease in the store
(EVENT_STREAMS_PER_USER across workers and hosts) and a thread of the
worker's own for streams (gunicorn.conf.py: EVENT_STREAMS_PER_WORKER), so
streams never take the threads other requests need.
"""
from collections.abc import Iterator
import json
import logging
import time
from typing import TYPE_CHECKING

from ...store import ACTIVE, Principal
from ..errors import TooManyStreams
from ..processes import chimerax_client

if TYPE_CHECKING:
    from .service import SessionService

log = logging.getLogger("cxs.events")

KEEPALIVE = 15.0        # s between comments on a quiet stream (proxies drop silent connections)
POLL = 10.0             # s an agent long poll waits for an event
LEASE = 45.0            # s a stream's lease lasts unless renewed (three keep-alives)


def parse_last_event_id(text: str | None) -> tuple[str | None, int]:
    """(process key, event number) of a Last-Event-ID this stream gave, else (None, 0)."""
    key, _, number = (text or "").rpartition(".")
    try:
        return (key or None), max(0, int(number))
    except ValueError:
        return None, 0


def _process_key(record) -> str:
    details = record.process.details if record.process else {}
    return str(details.get("token") or details.get("job") or record.id)[:12]


def _frame(kind: str, data: dict, event_id: str | None = None) -> str:
    head = "id: %s\n" % event_id if event_id else ""
    return "%sevent: %s\ndata: %s\n\n" % (head, kind, json.dumps(data, separators=(",", ":")))


class EventStream:
    """One client's stream: `open()` takes its lease (or raises), iterating
    yields SSE text until the session ends or the client goes."""

    def __init__(self, service: "SessionService", principal: Principal, session_id: str,
                 last_event_id: str | None = None) -> None:
        self.service, self.principal, self.session_id = service, principal, session_id
        self.resume_key, self.after = parse_last_event_id(last_event_id)
        self.lease: int | None = None

    def open(self) -> "EventStream":
        service = self.service
        service.readable(self.principal, self.session_id)
        lease = service._store_call(service.store.open_stream, self.principal.user, self.session_id, time.time(),
                                    LEASE, service.settings["EVENT_STREAMS_PER_USER"])
        if lease is None:
            raise TooManyStreams("%d event streams are open for %s already (EVENT_STREAMS_PER_USER): close one"
                                 % (service.settings["EVENT_STREAMS_PER_USER"], self.principal.user),
                                 retry_after=KEEPALIVE)
        self.lease = lease
        return self

    def __iter__(self) -> Iterator[str]:
        assert self.service.store_factory is not None, "the app's service has a store factory"
        store = self.service.store_factory()        # this thread's own: the request's is gone once streaming
        try:
            yield "retry: 2000\n\n"
            yield from self._relay(store)
        finally:
            store.close()
            self.close()

    def close(self) -> None:
        """Give the lease back (once; also for a stream never read: its response's close)."""
        lease, self.lease = self.lease, None
        if lease is None or self.service.store_factory is None:
            return
        store = self.service.store_factory()
        try:
            store.close_stream(lease)
        except Exception:
            log.warning("event stream of %s: lease %s not released (it lapses)", self.session_id, lease)
        finally:
            store.close()

    def _relay(self, store):
        status, key, after = None, None, self.after
        renewed = quiet_since = time.monotonic()
        while True:
            record = store.get_session(self.session_id)
            if record is None:
                return
            if record.status != status:
                status = record.status
                yield _frame("status", {"status": status, "end_reason": record.end_reason})
            if not record.is_live and status != "suspended":
                return
            if time.monotonic() - renewed > KEEPALIVE:
                store.renew_stream(self.lease, time.time(), LEASE)
                renewed = time.monotonic()
            got = None
            if status == ACTIVE and record.process is not None and self.service.launcher.reaches(record.domain):
                if key != _process_key(record):
                    key = _process_key(record)
                    # Resume in the buffer the client read from; a new process is read from its start.
                    after = after if self.resume_key in (None, key) else 0
                    self.resume_key = key
                got = chimerax_client.events(self.service.launcher.channel(record.process), after, POLL)
            if got is None:
                # No process to wait on (starting, suspended, ending) or no answer: read the store again soon.
                time.sleep(1.0)
            if got:
                if got.get("missed"):
                    yield _frame("missed", {"events": got["missed"]})
                for event in got.get("events") or []:
                    yield _frame(event["type"], dict(event.get("data") or {}, time=event.get("time")),
                                 "%s.%d" % (key, event["id"]))
                    after = event["id"]
                if got.get("events"):
                    quiet_since = time.monotonic()
            if time.monotonic() - quiet_since >= KEEPALIVE:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
