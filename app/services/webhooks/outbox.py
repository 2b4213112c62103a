"""What admins see of the outbox and do with it: the events waiting and the
dead ones (GET /api/admin/webhooks), and sending one again (resend)."""
import json
import time
from typing import Any

from ...store import Principal, Store
from ...store.outbox_queries import DEAD, PENDING, OutboxEvent
from ..errors import Forbidden, NotFound

LISTED = 100        # of each state, at most


def view(event: OutboxEvent) -> dict[str, Any]:
    """An event as the admin API shows it: its state, attempts and body (JSON data, never markup)."""
    return {"id": event.event_id, "type": event.type, "session": event.session_id, "state": event.state,
            "created_at": event.created_at, "attempts": event.attempts,
            "next_attempt_at": event.next_attempt_at if event.state == PENDING else None,
            "delivered_at": event.delivered_at, "dead_at": event.dead_at, "last_error": event.last_error,
            "body": json.loads(event.body)}


def listing(principal: Principal, store: Store, limit: int = LISTED) -> dict[str, Any]:
    _require_admin(principal)
    return {"counts": store.count_events(), "pending": [view(e) for e in store.list_events(PENDING, limit)],
            "dead": [view(e) for e in store.list_events(DEAD, limit)]}


def resend(principal: Principal, store: Store, event_id: str, now: float | None = None) -> dict[str, Any]:
    """The event pending again, with all its attempts, sent at the next tick."""
    _require_admin(principal)
    if not store.resend_event(event_id, time.time() if now is None else now):
        raise NotFound("no event %s (delivered events are kept a day, dead ones 30 days)" % event_id)
    event = store.get_event(event_id)
    assert event is not None        # events are deleted only by the sender's pruning, days later
    return view(event)


def _require_admin(principal):
    if not principal.is_admin:
        raise Forbidden("webhook events are for admins")
