"""What an operator's page shows of the whole service."""
from collections import Counter

from .errors import Forbidden

RECENT_DENIED = 50


def overview(principal, store, settings):
    if not principal.is_admin:
        raise Forbidden("the service overview is for admins")
    pool = Counter(entry["state"] for entry in store.pool_entries())
    return {"pool": dict(pool), "pool_size": settings["POOL_SIZE"],
            "denied": store.recent_denied(RECENT_DENIED)}
