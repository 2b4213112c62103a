"""/api/me and /api/admin: what the web console asks beside the sessions."""
from ..controllers import admin as c
from ..schemas.admin import MeSchema, OverviewSchema
from .api import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/api", description="The caller, and the service for admins")


@bp.route("/me", methods=["GET"])
@bp.response(200, MeSchema)
def me():
    """Who the credentials are (user and role)"""
    return c.me()


@bp.route("/admin/overview", methods=["GET"])
@bp.response(200, OverviewSchema)
def overview():
    """Warm pool and recently denied commands (admins only)"""
    return c.overview()
