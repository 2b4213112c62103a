"""/api/admin/webhooks: the lifecycle events waiting to be sent and the dead
ones, and sending one again (docs/webhooks.md)."""
from ..controllers import webhooks as c
from ..middleware.auth import scope
from ..schemas.webhooks import WebhookEventSchema, WebhooksSchema
from .api import Blueprint

bp = Blueprint("webhooks", __name__, url_prefix="/api/admin", description="Lifecycle webhooks (admins)")


@bp.route("/webhooks", methods=["GET"])
@bp.response(200, WebhooksSchema)
@scope("admin:read")
def listing():
    """Lifecycle events by state, those waiting to be sent and the dead ones (admins only)

    An event is dead after {WEBHOOK_MAX_ATTEMPTS} failed sends; it stays listed until re-sent (or 30 days).
    """
    return c.listing()


@bp.route("/webhooks/<event_id>/resend", methods=["POST"])
@bp.errors(404)
@bp.response(200, WebhookEventSchema)
@scope("admin:write")
def resend(event_id):
    """Send an event again (admins only): pending from now, with all its attempts

    Meant for dead events; a delivered one (kept a day) is sent once more, a pending one at once. Events of its
    session that are still pending wait for it, as they would have. 404 not_found for an unknown event.
    """
    return c.resend(event_id)
