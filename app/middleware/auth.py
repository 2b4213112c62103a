"""Header authentication in a before_request hook.

`Authorization: Bearer <token>` or `X-API-Key: <token>`; or, only when the
peer is a configured trusted proxy (nginx), `X-Remote-User` as set by it.
Routes marked @public (health) skip it; unroutable requests skip it too so
they get their plain 404/405. Every other route declares the scope it
requires (`scope`, on its route: docs/identity.md); credentials without it
are answered 403 insufficient_scope naming it. `X-Act-As: <user>` with a
token that has act-as (and whose act_as pattern matches) makes the request
that user's, with no more than the token's own scopes.
"""
import hmac
import time

from flask import current_app, g, request

from ..context import get_store, get_token_service
from ..services.errors import TokenExpired
from ..services.identity.oidc import OidcRejected, OidcUnavailable, OidcVerifier
from ..services.identity.scopes import ROLE_SCOPES
from ..services.identity.tokens import hash_token
from ..services.recent import MISSING, Recent
from ..services.sessions.sharing import link_principal
from ..store import Principal
from .errors import ApiError

_SCOPES_KEY = "cxs_required_scopes"
LINK_HEADER = "X-Share-Link"
_OIDC_KEY = "cxs_oidc_verifier"
_oidc_seen: Recent = Recent()      # token digest -> its identity, as verified
ANY = "any"     # a route any valid credentials may call (a token's own tokens)


def scope(name):
    """The scope a route requires (one of identity.scopes.SCOPES, or ANY)."""
    def decorate(view):
        view._scope = name
        return view
    return decorate

# The API docs page and document, and the console's pages (they hold no data:
# their scripts call the API with the user's token).
_PUBLIC_BLUEPRINTS = {"swagger_ui", "api-docs", "web"}
_PUBLIC_KEY = "cxs_public_endpoints"


def public(view):
    """No credentials needed (the API document then lists no 401 for it)."""
    view._public = True
    return view


def _presented_token(headers):
    header = headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "use 'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": "Bearer"})
        return token.strip()
    return headers.get("X-API-Key", "").strip() or None


def _proxy_principal(req, config):
    proxies = config["TRUSTED_PROXIES"]
    if not proxies or req.remote_addr not in proxies:
        return None
    user = req.headers.get("X-Remote-User", "").strip()
    if not user or len(user) > 64:
        return None
    role = "admin" if user in config["ADMIN_USERS"] else "user"
    return Principal(user, role, scopes=ROLE_SCOPES[role])


def _metrics_principal(token, endpoint, config):
    # A scraper's own secret, good for /metrics only (never for sessions).
    expected = config["METRICS_TOKEN"]
    if expected and token and endpoint == "metrics.metrics" and hmac.compare_digest(
            token.encode(), expected.encode()):
        return Principal("metrics", "admin", scopes=frozenset(("admin:read",)))
    return None


def _public_endpoints(app):
    """The endpoints that need no credentials, found once per app (the routes
    are all registered before its first request)."""
    public = app.extensions.get(_PUBLIC_KEY)
    if public is None:
        public = app.extensions[_PUBLIC_KEY] = frozenset(
            endpoint for endpoint, view in app.view_functions.items()
            if getattr(view, "_public", False) or endpoint.rpartition(".")[0] in _PUBLIC_BLUEPRINTS)
    return public


def _required_scopes(app):
    """{endpoint: the scope it requires}, found once per app."""
    found = app.extensions.get(_SCOPES_KEY)
    if found is None:
        found = app.extensions[_SCOPES_KEY] = {endpoint: getattr(view, "_scope", None)
                                               for endpoint, view in app.view_functions.items()}
    return found


def _looks_like_jwt(token):
    # A service token is `cxs_…`; a JWT is three base64url parts, its header a JSON object.
    return token.startswith("eyJ") and token.count(".") == 2


def _oidc_principal(token, app):
    """The principal a portal's OIDC token stands for (services/identity/oidc.py),
    each token verified once per TOKEN_CACHE_SECONDS in this process."""
    verifier = app.extensions.get(_OIDC_KEY)
    if verifier is None:
        verifier = app.extensions[_OIDC_KEY] = OidcVerifier(app.config)
    now = time.time()
    digest = hash_token(token)
    identity = _oidc_seen.get(digest, app.config["TOKEN_CACHE_SECONDS"])
    if identity is MISSING:
        reading = _oidc_seen.reading()
        try:
            identity = _oidc_seen.put(digest, verifier.identify(token), reading)
        except OidcUnavailable as err:
            raise ApiError(503, "oidc_unavailable", err.message,
                           headers={"Retry-After": str(max(1, round(err.retry_after)))}) from None
        except OidcRejected as err:
            raise ApiError(401, err.code, err.message,
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
    if identity.expires_at is not None and now >= identity.expires_at + app.config["OIDC_LEEWAY"]:
        raise ApiError(401, "token_expired", "the token has expired",
                       headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    granted = ROLE_SCOPES[identity.role]
    return Principal(identity.user, identity.role,
                     scopes=granted if identity.scopes is None else granted & identity.scopes)


def _token_principal(token, endpoint, app):
    config = app.config
    if config["OIDC_ISSUER"] and _looks_like_jwt(token):
        return _oidc_principal(token, app)
    try:
        principal = _metrics_principal(token, endpoint, config) or get_token_service().authenticate(token)
    except TokenExpired as err:
        raise ApiError(401, "token_expired", err.message,
                       headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
    if principal is None:
        raise ApiError(401, "unauthorized", "invalid or revoked token", headers={"WWW-Authenticate": "Bearer"})
    return principal


def _acting(principal, user):
    try:
        return get_token_service().act_as(principal, user.strip())
    except PermissionError as err:
        raise ApiError(403, "act_as_refused", str(err)) from None


def authenticate():
    # Every request passes here: the request and app are looked up once
    # (each use of a context-local proxy is a lookup of its own).
    req, app = request._get_current_object(), current_app._get_current_object()
    principal = None
    endpoint = req.endpoint         # None when routing failed: its plain 404/405 follows
    if endpoint is not None and endpoint not in _public_endpoints(app):
        principal = _proxy_principal(req, app.config)
        link = req.headers.get(LINK_HEADER)
        if principal is None and link is not None and "Authorization" not in req.headers:
            # A share link's bearer: one session, to view (services/sessions/sharing.py).
            principal = link_principal(get_store(), link.strip())
            if principal is None:
                raise ApiError(401, "unauthorized", "the share link is unknown, revoked or expired")
        if principal is None:
            token = _presented_token(req.headers)
            if token is None:
                raise ApiError(401, "unauthorized", "credentials required",
                               headers={"WWW-Authenticate": "Bearer"})
            principal = _token_principal(token, endpoint, app)
        acting = req.headers.get("X-Act-As")
        if acting is not None:
            principal = _acting(principal, acting)
        # A route that declares none is refused to all but full admins (fail closed; a test keeps them declared).
        required = _required_scopes(app).get(endpoint) or "admin:write"
        if required != ANY and not principal.may(required):
            raise ApiError(403, "insufficient_scope", "this operation needs the %s scope, which these "
                           "credentials do not have" % required)
    g.principal = principal


def optional_principal():
    """On a public endpoint: the caller, if it presented valid credentials, else None."""
    try:
        token = _presented_token(request.headers)
        return get_token_service().authenticate(token) if token else None
    except (ApiError, TokenExpired):
        return None


def init_app(app):
    app.before_request(authenticate)
