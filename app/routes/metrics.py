"""GET /metrics: Prometheus text format, for admins or the METRICS_TOKEN bearer."""
from flask import Response, g

from ..context import runtime
from ..middleware.auth import scope
from ..middleware.errors import ApiError
from ..services.monitoring import metrics as service_metrics
from .api import Blueprint

bp = Blueprint("metrics", __name__, description="For Prometheus")


@bp.route("/metrics", methods=["GET"])
@bp.response(200, {"type": "string"}, content_type="text/plain",
             description="Prometheus text exposition format")
@scope("admin:read")
def metrics():
    """Prometheus metrics (an admin's token or METRICS_TOKEN)"""
    if not g.principal.is_admin:
        raise ApiError(403, "forbidden", "metrics are for admins or the metrics token")
    body = service_metrics.render(runtime().new_store)
    return Response(body, mimetype="text/plain; version=0.0.4")
