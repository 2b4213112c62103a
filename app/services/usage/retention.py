"""Retention (SESSION_RETENTION_DAYS): the sweeper deletes sessions that ended
longer ago, with their history, in bounded batches, each rolled up into the
per-day usage first in its own transaction (Store.retire_sessions)."""
import logging

from ...store import Store
from ...store.accounting import DAY

log = logging.getLogger("cxs.retention")

# Sessions per statement and transaction, and transactions per sweep: a sweep
# after a long pause (or the first one on an old store) catches up over
# several sweeps instead of holding the store for long.
BATCH = 500
BATCHES_PER_SWEEP = 4


def retire(store: Store, retention_days: int, now: float) -> int:
    """Delete what ended more than `retention_days` before `now` (0: keep all);
    how many sessions were deleted."""
    if retention_days <= 0:
        return 0
    retired = 0
    for _ in range(BATCHES_PER_SWEEP):
        done = store.retire_sessions(now - retention_days * DAY, BATCH)
        retired += done
        if done < BATCH:
            break
    if retired:
        log.info("retention: deleted %d sessions that ended over %d days ago (their usage kept per day)",
                 retired, retention_days)
    return retired
