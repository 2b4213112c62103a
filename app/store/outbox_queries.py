"""The outbox of lifecycle events (docs/webhooks.md).

An event is written in the transaction of the change it tells of
(`outbox_insert`: a session's status by `SessionQueries.transition` and
`insert_session`, a share by the share queries), so it exists exactly when
the change does: a worker killed right after the change loses nothing, and
a change rolled back tells nothing. The one sender (services/webhooks) then
reads them here: per session in id order, each retried until delivered or
dead. Every event is written, whether or not WEBHOOK_URLS is set: what the
store records does not depend on a setting, and the sender marks what it has
nowhere to send (`skip_pending`).
"""
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
import json
import time
from typing import TYPE_CHECKING, Any
import uuid

import sqlalchemy as sa

from .base import StoreBase
from .models import ACTIVE, FAILED, RESUME, STARTING, SUSPENDED, TERMINATED, TERMINATING
from .tables import outbox, sessions

if TYPE_CHECKING:
    from .models import Row

CREATED, READY, RESUMED, SUSPENDED_EVENT, ENDED = (
    "session.created", "session.ready", "session.resumed", "session.suspended", "session.ended")
SHARE_CREATED, SHARE_REVOKED = "share.created", "share.revoked"
EVENT_TYPES = (CREATED, READY, RESUMED, SUSPENDED_EVENT, ENDED, SHARE_CREATED, SHARE_REVOKED)
# Every body has these; an event's own `data` adds others, never these.
BODY_KEYS = ("id", "type", "time", "session", "user")
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
FINAL = (TERMINATED, FAILED)


def lifecycle_event(old: str, new: str, operation: str | None, resuming: bool) -> str | None:
    """The event a session's change of status from `old` to `new` tells of, if
    any. Only finished changes count: a start when the session turns active
    (ready, or resumed for a resume: `resuming`), a suspend when it is
    suspended, an end when it is final (whatever the path: an end, a failed
    start, a suspended session deleted). Steps in between (starting,
    terminating, a suspend undone, a resume given up) tell nothing."""
    if new in FINAL and old not in FINAL:
        return ENDED
    if old == TERMINATING and new == SUSPENDED:
        return SUSPENDED_EVENT
    if old == STARTING and new == ACTIVE:
        return RESUMED if resuming or operation == RESUME else READY
    return None


def may_tell(from_statuses: Sequence[str], to_status: str) -> bool:
    """Whether a compare-and-set from `from_statuses` to `to_status` may tell of
    an event (then it reads the row's status first, in one transaction)."""
    return any(lifecycle_event(old, to_status, None, False) for old in from_statuses)


def outbox_insert(connection: sa.Connection, event_type: str, session_id: str | None, user: str | None = None,
                  data: Mapping[str, Any] | None = None, now: float | None = None) -> str:
    """Write one event on `connection`, inside the caller's transaction; returns its id.

    `user`: the session's owner (None: read from its row). `data`: the event's
    own fields, added to the body. The session's row is locked first (FOR
    UPDATE; SQLite has a single writer anyway), so the events of one session
    commit in the order of their ids, the order the sender keeps.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError("not an event type: %r" % event_type)
    clash = set(data or ()) & set(BODY_KEYS)
    if clash:
        raise ValueError("event data may not set %s" % ", ".join(sorted(clash)))
    if session_id is not None:
        owner = connection.execute(sa.select(sessions.c.user).where(sessions.c.id == session_id)
                                   .with_for_update()).scalar()
        user = user if user is not None else owner
    if user is None:
        raise ValueError("event %s: no user (session %s has no row)" % (event_type, session_id))
    event_id = str(uuid.uuid4())
    now = time.time() if now is None else now
    body = {"id": event_id, "type": event_type, "time": round(now, 3), "session": session_id, "user": user,
            **(data or {})}
    connection.execute(outbox.insert().values(
        event_id=event_id, session_id=session_id, type=event_type,
        body=json.dumps(body, separators=(",", ":")), created_at=now, attempts=0, next_attempt_at=now))
    return event_id


@dataclass(frozen=True)
class OutboxEvent:
    id: int                 # its place: the order of the session's events
    event_id: str
    session_id: str | None
    type: str
    body: str               # the JSON sent, exactly (what the signature covers)
    created_at: float
    attempts: int
    next_attempt_at: float
    delivered_at: float | None
    dead_at: float | None
    last_error: str | None

    @classmethod
    def from_row(cls, row: "Row") -> "OutboxEvent":
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    @property
    def state(self) -> str:
        return DELIVERED if self.delivered_at is not None else DEAD if self.dead_at is not None else PENDING


def _pending(table: Any) -> sa.ColumnElement[bool]:
    return sa.and_(table.c.delivered_at.is_(None), table.c.dead_at.is_(None))


_earlier = outbox.alias("earlier")
# The first pending event of each session (and each event of none), due or not:
# a later one waits for it, so that a session's events arrive in order.
HEADS = sa.and_(_pending(outbox), ~sa.exists().where(
    _earlier.c.session_id == outbox.c.session_id, _earlier.c.id < outbox.c.id, _pending(_earlier)))


class OutboxQueries(StoreBase):
    def add_event(self, event_type: str, session_id: str | None, user: str | None = None,
                  data: Mapping[str, Any] | None = None) -> str:
        """An event in a transaction of its own (outbox_insert inside another's)."""
        with self._transaction() as connection:
            return outbox_insert(connection, event_type, session_id, user, data)

    def due_events(self, now: float, limit: int) -> list[OutboxEvent]:
        """Events to send now, oldest first: due, and the first pending one of their session."""
        query = outbox.select().where(HEADS, outbox.c.next_attempt_at <= now).order_by(outbox.c.id).limit(limit)
        return [OutboxEvent.from_row(r) for r in self._execute(query).mappings()]

    def mark_delivered(self, ids: Sequence[int], now: float) -> None:
        if ids:
            self._execute(outbox.update().where(outbox.c.id.in_(list(ids)), _pending(outbox))
                          .values(delivered_at=now, attempts=outbox.c.attempts + 1, last_error=None))

    def mark_failed(self, event_id: int, error: str, next_attempt_at: float, dead_at: float | None) -> None:
        """One more failed send: retried at `next_attempt_at`, or dead (`dead_at`)."""
        self._execute(outbox.update().where(outbox.c.id == event_id, _pending(outbox)).values(
            attempts=outbox.c.attempts + 1, next_attempt_at=next_attempt_at, dead_at=dead_at,
            last_error=error[:1000]))

    def skip_pending(self, now: float, reason: str) -> int:
        """Pending events marked done unsent (with `reason`): there is nowhere to send them."""
        # Read first: called every second, and an UPDATE takes SQLite's write lock even when it changes nothing.
        if self._execute(sa.select(outbox.c.id).where(_pending(outbox)).limit(1)).first() is None:
            return 0
        return self._execute(outbox.update().where(_pending(outbox))
                             .values(delivered_at=now, last_error=reason)).rowcount

    def prune_events(self, delivered_before: float, dead_before: float) -> int:
        """Delete events delivered (or skipped) before `delivered_before`, dead before `dead_before`."""
        return self._execute(outbox.delete().where(sa.or_(outbox.c.delivered_at < delivered_before,
                                                          outbox.c.dead_at < dead_before))).rowcount

    def count_events(self) -> dict[str, int]:
        """{pending, delivered, dead}: how many events are in each state."""
        states = {PENDING: _pending(outbox), DELIVERED: outbox.c.delivered_at.is_not(None),
                  DEAD: sa.and_(outbox.c.delivered_at.is_(None), outbox.c.dead_at.is_not(None))}
        row = self._execute(sa.select(*(sa.func.count(sa.case((condition, 1))).label(state)
                                        for state, condition in states.items()))).mappings().one()
        return {state: row[state] or 0 for state in states}

    def list_events(self, state: str, limit: int) -> list[OutboxEvent]:
        """Pending events oldest first (the sending order); dead ones most recently dead first."""
        if state == PENDING:
            query = outbox.select().where(_pending(outbox)).order_by(outbox.c.id)
        elif state == DEAD:
            query = outbox.select().where(outbox.c.delivered_at.is_(None), outbox.c.dead_at.is_not(None)) \
                .order_by(outbox.c.dead_at.desc(), outbox.c.id.desc())
        else:
            raise ValueError("not a listed state: %r" % state)
        return [OutboxEvent.from_row(r) for r in self._execute(query.limit(limit)).mappings()]

    def get_event(self, event_id: str) -> OutboxEvent | None:
        row = self._execute(outbox.select().where(outbox.c.event_id == event_id)).mappings().first()
        return OutboxEvent.from_row(row) if row else None

    def resend_event(self, event_id: str, now: float) -> bool:
        """Pending again from now, with every attempt (a dead or a delivered event;
        a pending one is tried at once). The last error is kept until the next send."""
        return self._execute(outbox.update().where(outbox.c.event_id == event_id).values(
            delivered_at=None, dead_at=None, attempts=0, next_attempt_at=now)).rowcount == 1
