"""What an operator's page shows of the whole service."""
from ..errors import Forbidden

RECENT_DENIED = 50


def overview(principal, store, settings):
    if not principal.is_admin:
        raise Forbidden("the service overview is for admins")
    return {"pool": store.count_pool_by_status(), "pool_size": settings["POOL_SIZE"],
            "denied": store.recent_denied(RECENT_DENIED)}
