"""HTTP in/out for the caller's identity and the admins' overview."""
from flask import current_app, g

from ..context import get_store
from ..services.monitoring.overview import overview as service_overview


def me():
    return {"user": g.principal.user, "role": g.principal.role}


def overview():
    return service_overview(g.principal, get_store(), current_app.config)
