"""What an operator's page shows of the whole service."""
from collections.abc import Mapping
from typing import Any

from ...store import Principal, Store
from ..errors import Forbidden

RECENT_DENIED = 50
TOP_SESSIONS = 5


def overview(principal: Principal, store: Store, settings: Mapping[str, Any]) -> dict[str, Any]:
    if not principal.is_admin:
        raise Forbidden("the service overview is for admins")
    return {"pool": store.count_pool_by_status(), "pool_size": settings["POOL_SIZE"],
            "denied": store.recent_denied(RECENT_DENIED),
            "fetch_cache": {"entries": len(store.fetch_entries()), "bytes": store.fetch_cache_bytes(),
                            "max_bytes": settings["FETCH_CACHE_MB"] * 2**20},
            # The sweepers' last samples, not the launcher: they cover every machine's sessions.
            "top_memory": store.top_sessions("memory", TOP_SESSIONS),
            "top_cpu": store.top_sessions("cpu", TOP_SESSIONS)}
