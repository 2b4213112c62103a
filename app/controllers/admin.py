"""HTTP in/out for the caller's identity and the admins' overview."""
from flask import current_app, g

from ..context import get_session_service, get_store
from ..services.errors import Forbidden
from ..services.monitoring.overview import overview as service_overview


def me():
    return {"user": g.principal.user, "role": g.principal.role}


def overview():
    return service_overview(g.principal, get_store(), current_app.config)


def _broker():
    if not g.principal.is_admin:
        raise Forbidden("the fetch cache is for admins")
    return get_session_service().fetch_broker


def fetch_cache():
    return _broker().listing()


def purge_fetch_cache(args):
    return _broker().purge_unused(args.get("url"))
