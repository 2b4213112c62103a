"""/api/me and /api/admin: what the web console asks beside the sessions."""
from ..controllers import admin as c
from ..middleware.auth import ANY, scope
from ..schemas.admin import FetchCacheSchema, MeSchema, OverviewSchema, PurgeArgsSchema, PurgedSchema
from .api import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/api", description="The caller, and the service for admins")


@bp.route("/me", methods=["GET"])
@bp.response(200, MeSchema)
@scope(ANY)
def me():
    """Who the credentials are (user and role)"""
    return c.me()


@bp.route("/admin/overview", methods=["GET"])
@bp.response(200, OverviewSchema)
@scope("admin:read")
def overview():
    """Warm pool and recently denied commands (admins only)"""
    return c.overview()


@bp.route("/admin/fetch-cache", methods=["GET"])
@bp.response(200, FetchCacheSchema)
@scope("admin:read")
def fetch_cache():
    """The fetch cache's entries, sizes and which are in use (admins only)"""
    return c.fetch_cache()


@bp.route("/admin/fetch-cache", methods=["DELETE"])
@bp.arguments(PurgeArgsSchema, location="query")
@bp.response(200, PurgedSchema)
@scope("admin:write")
def purge_fetch_cache(args):
    """Remove cache entries no live session uses: one (`url`) or all (admins only)"""
    return c.purge_fetch_cache(args)
