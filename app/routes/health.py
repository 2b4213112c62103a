from ..controllers.health import health as check_health
from ..middleware.auth import public
from ..schemas.sessions import HealthSchema
from .api import Blueprint

bp = Blueprint("health", __name__, url_prefix="/api", description="Liveness for load balancers")


@bp.route("/health", methods=["GET"])
@public
@bp.response(200, HealthSchema, description="Healthy")
@bp.alt_response(503, schema=HealthSchema, description="Degraded: the checks say what")
@bp.doc(security=[])
def health():
    """Service up, store reachable, ChimeraX found (no credentials)"""
    return check_health()
