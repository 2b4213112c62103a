"""Liveness for load balancers and operators: no auth, no secrets."""
from ..context import get_store, runtime
from ..store import StoreUnavailable


def health():
    """Service up, store reachable, ChimeraX found."""
    checks = {}
    try:
        get_store().ping()
        checks["store"] = "schema_mismatch" if runtime().schema_problem else "ok"
    except StoreUnavailable:
        checks["store"] = "unavailable"
    checks["chimerax"] = runtime().launcher.runtime_info()
    healthy = checks["store"] == "ok" and checks["chimerax"]["found"]
    return {"status": "ok" if healthy else "degraded", "checks": checks}, 200 if healthy else 503
