"""/api/usage: what a user's sessions used, per UTC day."""
from ..controllers import usage as c
from ..middleware.auth import scope
from ..schemas.usage import UsageQuerySchema, UsageReportSchema
from .api import Blueprint

bp = Blueprint("usage", __name__, url_prefix="/api", description="Usage accounting")


@bp.route("/usage", methods=["GET"])
@bp.arguments(UsageQuerySchema, location="query")
@bp.response(200, UsageReportSchema)
@scope("sessions:read")
def usage(args):
    """Session-hours, CPU-seconds and peak memory per UTC day (your own; admins: any user's)

    Sessions count from creation to their end (now, while not ended: live or suspended), split exactly at
    UTC midnight; CPU in proportion to each day's time; a day's peak is the largest of its sessions'.
    Sessions deleted by retention (SESSION_RETENTION_DAYS) still count, rolled up per day.
    """
    return c.usage(args)
