"""Header authentication in a before_request hook.

`Authorization: Bearer <token>` or `X-API-Key: <token>`; or, only when the
peer is a configured trusted proxy (nginx), `X-Remote-User` as set by it.
Routes marked @public (health) skip it; unroutable requests skip it too so
they get their plain 404/405.
"""
import hmac

from flask import current_app, g, request

from ..context import get_token_service
from ..store import Principal
from .errors import ApiError

# The API docs page and document, and the console's pages (they hold no data:
# their scripts call the API with the user's token).
_PUBLIC_BLUEPRINTS = {"swagger_ui", "api-docs", "web"}


def public(view):
    """No credentials needed (the API document then lists no 401 for it)."""
    view._public = True
    return view


def _presented_token():
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "use 'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": "Bearer"})
        return token.strip()
    return request.headers.get("X-API-Key", "").strip() or None


def _proxy_principal():
    proxies = current_app.config["TRUSTED_PROXIES"]
    if not proxies or request.remote_addr not in proxies:
        return None
    user = request.headers.get("X-Remote-User", "").strip()
    if not user or len(user) > 64:
        return None
    role = "admin" if user in current_app.config["ADMIN_USERS"] else "user"
    return Principal(user, role)


def _metrics_principal(token):
    # A scraper's own secret, good for /metrics only (never for sessions).
    expected = current_app.config["METRICS_TOKEN"]
    if expected and token and request.endpoint == "metrics.metrics" and hmac.compare_digest(
            token.encode(), expected.encode()):
        return Principal("metrics", "admin")
    return None


def authenticate():
    g.principal = None
    if request.routing_exception is not None or request.endpoint is None:
        return
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, "_public", False):
        return
    if request.blueprint in _PUBLIC_BLUEPRINTS:
        return
    principal = _proxy_principal()
    if principal is None:
        token = _presented_token()
        if token is None:
            raise ApiError(401, "unauthorized", "credentials required",
                           headers={"WWW-Authenticate": "Bearer"})
        principal = _metrics_principal(token) or get_token_service().authenticate(token)
        if principal is None:
            raise ApiError(401, "unauthorized", "invalid or revoked token",
                           headers={"WWW-Authenticate": "Bearer"})
    g.principal = principal


def init_app(app):
    app.before_request(authenticate)
