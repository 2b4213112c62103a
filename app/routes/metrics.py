"""GET /metrics: Prometheus text format, for admins or the METRICS_TOKEN bearer."""
from flask import Blueprint, Response, g

from ..context import runtime
from ..middleware.errors import ApiError
from ..services import metrics as service_metrics

bp = Blueprint("metrics", __name__)


def metrics():
    """Prometheus metrics.
    ---
    get:
      summary: Prometheus metrics (admin token or METRICS_TOKEN)
      tags: [service]
      responses:
        200: {description: Prometheus text exposition format, content: {text/plain: {schema: {type: string}}}}
        401: ErrorResponse
        403: ErrorResponse
    """
    if not g.principal.is_admin:
        raise ApiError(403, "forbidden", "metrics are for admins or the metrics token")
    body = service_metrics.render(runtime().new_store)
    return Response(body, mimetype="text/plain; version=0.0.4")


bp.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])
