"""A session's commands as resources (the history, one list), interrupting
the running one, and the session's live event stream."""
from ..controllers import commands as c
from ..middleware.auth import scope
from ..schemas import commands as s
from .api import Blueprint

bp = Blueprint("commands", __name__, url_prefix="/api/sessions", description="Commands and events")


@bp.route("/<uuid:session_id>/commands", methods=["GET"])
@bp.errors(404)
@bp.arguments(s.CommandListQuerySchema, location="query")
@bp.response(200, s.CommandListSchema)
@scope("sessions:read")
def commands(args, session_id):
    """The session's commands, oldest first: its history (paged)"""
    return c.commands(args, session_id)


@bp.route("/<uuid:session_id>/commands/<uuid:command_id>", methods=["GET"])
@bp.errors(404)
@bp.response(200, s.CommandStateSchema)
@scope("sessions:read")
def command(session_id, command_id):
    """One command: running, done, failed or interrupted (with its reply once ended, if run with wait false)"""
    return c.command(session_id, command_id)


@bp.route("/<uuid:session_id>/interrupt", methods=["POST"])
@bp.errors(404, 409, 502)
@bp.arguments(s.InterruptSchema)
@bp.response(200, s.InterruptedSchema)
@scope("sessions:command")
def interrupt(args, session_id):
    """Interrupt the running command as Ctrl-C would; the session keeps its models

    The command ends interrupted. One that does not stop within {INTERRUPT_GRACE} s (INTERRUPT_GRACE) ends
    the session's process (end_reason unresponsive; the reply says session ended). 409 not_running when no
    command (or not the one named) runs.
    """
    return c.interrupt(args, session_id)


@bp.route("/<uuid:session_id>/events", methods=["GET"])
@bp.errors(404, 429, 503)
@bp.response(200, {"type": "object", "properties": {
    "event": {"type": "string", "enum": ["status", "log", "command.started", "command.ended", "missed"]},
    "data": {"type": "string", "description": "a JSON object (see the description)"},
    "id": {"type": "string"}, "retry": {"type": "integer"}}},
    content_type="text/event-stream",
    description="Server-Sent Events (each described here): log, command.started, command.ended, status, missed")
@scope("sessions:read")
def events(session_id):
    """The session's live events (Server-Sent Events)

    `log` (level, text) as ChimeraX writes it, `command.started` / `command.ended` (id, status, interrupted),
    `status` (status, end_reason) as it changes, `missed` (how many fell out of the buffer). Events carry ids:
    reconnecting with Last-Event-ID resumes after the last one seen (within the last 2000). A comment every
    15 s keeps a quiet stream open. At most {EVENT_STREAMS_PER_USER} open per user (429 beyond); each worker
    serves {EVENT_STREAMS_PER_WORKER} on threads of their own (503 beyond).
    """
    return c.events(session_id)
