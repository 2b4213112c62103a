"""Sending the outbox's events to WEBHOOK_URLS (docs/webhooks.md).

One process sends, whichever host it is on: the scheduler of every worker
runs `Sender.tick` about every second (`WEBHOOK_INTERVAL`), but only the
holder of the webhook lock (store.leader.webhook_lock) does anything. A
second is what a portal waiting for `session.ready` can bear; the sweep's 30
s is not. A tick that finds nothing due costs one indexed query.

Each tick sends what is due, oldest first: only the first pending event of
each session (a later one waits until it is delivered or dead), so a
session's events arrive in order. Events of different sessions are sent in
parallel (`PARALLEL`), every URL in turn; an event is delivered when every
URL answered 2xx, otherwise it is sent again (to every URL: receivers
deduplicate by event id) after a backoff doubling from 1 s to 5 min, with
jitter, and dead after WEBHOOK_MAX_ATTEMPTS sends. A tick stops starting
sends after `BATCH` events or `TICK_SECONDS`, so a slow receiver (each send
waits at most WEBHOOK_TIMEOUT) delays only the events, never the sweeps,
which are jobs of their own.

At least once: a sender killed between a receiver's 2xx and the store's
`delivered` sends that event again from the next leader.
"""
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
import logging
import random
import time
from typing import Any

import requests

from ...store import Store
from ...store.outbox_queries import OutboxEvent
from ..errors import log_fault
from ..monitoring import metrics
from . import signing

log = logging.getLogger("cxs.webhooks")

WEBHOOK_INTERVAL = 1.0      # s between the end of a tick and the next
BATCH = 100                 # events at most per tick
TICK_SECONDS = 10.0         # no send starts later in a tick than this
PARALLEL = 8                # sends at once, each of another session
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 300.0
# The table stays bounded: delivered (or skipped) events are kept a day, dead ones 30 days.
DELIVERED_KEPT, DEAD_KEPT, PRUNE_EVERY = 86400.0, 30 * 86400.0, 60.0
NO_URLS = "not sent: WEBHOOK_URLS is empty"
ERROR_CHARS = 200

# (url, body, headers, timeout) -> None when the receiver took it, else why not.
Post = Callable[[str, bytes, Mapping[str, str], float], str | None]


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> str | None:
    """POST one event; None on a 2xx. A redirect is a failure: an event is
    never re-sent somewhere WEBHOOK_URLS does not name."""
    try:
        reply = requests.post(url, data=body, headers=dict(headers), timeout=timeout, allow_redirects=False)
    except requests.RequestException as err:
        return ("%s: %s" % (err.__class__.__name__, err))[:ERROR_CHARS]
    if 200 <= reply.status_code < 300:
        return None
    return ("HTTP %d %s" % (reply.status_code, reply.text.strip()))[:ERROR_CHARS]


def backoff(failures: int, rng: Callable[[], float] = random.random, first: float = BACKOFF_FIRST,
            most: float = BACKOFF_MAX) -> float:
    """Seconds to wait after the `failures`-th failed send: doubling from `first`,
    at most `most`; the later half random, so that events that failed together
    (a receiver down) are not all sent again in the same instant."""
    ceiling = min(most, first * 2 ** max(0, failures - 1))
    return ceiling / 2 + rng() * ceiling / 2


class Sender:
    """The outbox's sender in one process; `tick` sends what is due now."""

    def __init__(self, new_store: Callable[[], Store], settings: Mapping[str, Any], send: Post = post,
                 clock: Callable[[], float] = time.time, rng: Callable[[], float] = random.random,
                 backoff_first: float = BACKOFF_FIRST, backoff_max: float = BACKOFF_MAX) -> None:
        self.new_store = new_store
        self.settings = settings
        self.send = send
        self.clock = clock          # the store's times and the signed timestamp (tests inject one)
        self.rng = rng
        self.backoff_first, self.backoff_max = backoff_first, backoff_max
        self.pruned_at: float | None = None

    def tick(self) -> dict[str, int]:
        """Send what is due; returns {result: events} (delivered, failed, dead, skipped)."""
        store = self.new_store()
        try:
            if self.settings["WEBHOOK_URLS"]:
                results = self._send_due(store)
            else:
                results = {"skipped": store.skip_pending(self.clock(), NO_URLS)}
            for result, count in results.items():
                if count:
                    metrics.WEBHOOK_DELIVERIES.labels(result).inc(count)
            self._prune(store)
            return results
        finally:
            store.close()

    def _send_due(self, store):
        results = {"delivered": 0, "failed": 0, "dead": 0}
        deadline, budget = time.monotonic() + TICK_SECONDS, BATCH
        executor = None
        try:
            # Rounds: each takes the sessions' first pending events; a session's
            # next event is the next round's, once this one is delivered.
            while budget > 0 and time.monotonic() < deadline:
                due = store.due_events(self.clock(), budget)
                if not due:
                    break
                budget -= len(due)
                executor = executor or ThreadPoolExecutor(PARALLEL, thread_name_prefix="webhook")
                sends = {executor.submit(self._deliver, event, deadline): event for event in due}
                for done in as_completed(sends):
                    outcome = done.result()
                    if outcome is not False:
                        results[self._record(store, sends[done], outcome)] += 1
        finally:
            if executor is not None:
                executor.shutdown(wait=True)
        return results

    def _deliver(self, event: OutboxEvent, deadline: float) -> str | None | bool:
        """None: every URL took it; else the errors. False: not sent (the tick's time is up)."""
        if time.monotonic() >= deadline:
            return False
        body = event.body.encode()
        errors = []
        for url in self.settings["WEBHOOK_URLS"]:
            headers = signing.headers(event.type, event.event_id, body, self.settings["WEBHOOK_SECRET"],
                                      int(self.clock()))
            try:
                error = self.send(url, body, headers, self.settings["WEBHOOK_TIMEOUT"])
            except Exception as err:        # a bug of a sender must not lose the event's retries
                log.exception("webhook %s to %s", event.event_id, url)
                error = "%s: %s" % (err.__class__.__name__, err)
            if error is not None:
                errors.append("%s: %s" % (url, error))
        return "; ".join(errors) if errors else None

    def _record(self, store, event, error):
        now = self.clock()
        if error is None:
            store.mark_delivered([event.id], now)
            return "delivered"
        failures = event.attempts + 1
        if failures >= self.settings["WEBHOOK_MAX_ATTEMPTS"]:
            store.mark_failed(event.id, error, now, dead_at=now)
            log.warning("webhook %s (%s, session %s) dead after %d attempts: %s", event.event_id, event.type,
                        event.session_id, failures, error)
            return "dead"
        retry = now + backoff(failures, self.rng, self.backoff_first, self.backoff_max)
        store.mark_failed(event.id, error, retry, dead_at=None)
        log.info("webhook %s (%s) failed (attempt %d), again in %.1f s: %s", event.event_id, event.type,
                 failures, retry - now, error)
        return "failed"

    def _prune(self, store):
        now = self.clock()
        if self.pruned_at is not None and now - self.pruned_at < PRUNE_EVERY:
            return
        self.pruned_at = now
        try:
            store.prune_events(now - DELIVERED_KEPT, now - DEAD_KEPT)
        except Exception:
            log_fault(log, "webhooks: pruning the outbox failed")       # the next minute tries again
