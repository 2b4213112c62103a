"""Liveness for load balancers and operators: no auth, no secrets."""
from ..context import get_store, runtime
from ..middleware.auth import optional_principal
from ..store import StoreUnavailable


def health():
    """Service up, store reachable, ChimeraX found."""
    checks = {}
    try:
        get_store().ping()
        checks["store"] = "schema_mismatch" if runtime().schema_problem else "ok"
    except StoreUnavailable:
        checks["store"] = "unavailable"
    caller = optional_principal()     # admins also see the path, version and support of ChimeraX
    checks["chimerax"] = runtime().launcher.runtime_info(detail=caller is not None and caller.is_admin)
    healthy = checks["store"] == "ok" and checks["chimerax"]["found"]
    return {"status": "ok" if healthy else "degraded", "checks": checks}, 200 if healthy else 503
