"""HTTP in/out for sessions: validate, call the service, shape the reply."""
import uuid
from flask import Response, current_app, g, request

from ..context import get_session_service
from ..middleware.errors import ApiError
from ..middleware.validation import json_body, multipart_form, query_args
from ..schemas.sessions import (AdminSessionSchema, CommandSchema, HeartbeatSchema,
                                HistoryQuerySchema, HistorySchema, SessionCreateFormSchema,
                                SessionCreateSchema, SessionListQuerySchema, SessionSchema)

# Built once: a schema instance is reusable and costs ~50 us to build.
_create_schema = SessionCreateSchema()
_create_form_schema = SessionCreateFormSchema()
_list_schema = SessionListQuerySchema()
_command_schema = CommandSchema()
_session_schema = SessionSchema()
_admin_schema = AdminSessionSchema()
_heartbeat_schema = HeartbeatSchema()
_history_query = HistoryQuerySchema()
_history = HistorySchema()


def session_id_arg(raw):
    # Anything that is not a canonical UUID cannot name a session: 404, not 400.
    try:
        parsed = uuid.UUID(raw)
    except ValueError:
        raise ApiError(404, "not_found", "no session %s" % raw[:64]) from None
    if str(parsed) != raw.lower():
        raise ApiError(404, "not_found", "no session %s" % raw[:64])
    return str(parsed)


def _dump(record, service):
    if not g.principal.is_admin:
        return _session_schema.dump(record)
    data = _admin_schema.dump(record)
    name = service.process_id(record)
    data["process"] = None if name is None else str(name)   # a pid, "job 12" on a cluster...
    data["pid"] = name if isinstance(name, int) else None
    data["port"] = record.port
    memory = service.memory_bytes(record) if record.is_live else None
    data["memory_mb"] = round(memory / 2**20, 1) if memory else None
    return data


def create_session():
    """Create a session.
    ---
    post:
      summary: Create a session (optionally with a structure file to open)
      tags: [sessions]
      requestBody:
        required: false
        content:
          application/json:
            schema: SessionCreateSchema
          multipart/form-data:
            schema: SessionCreateFormSchema
      responses:
        201: {description: Ready, content: {application/json: {schema: AdminSessionSchema}}}
        202: {description: Starting (wait false), content: {application/json: {schema: AdminSessionSchema}}}
        400: ErrorResponse
        401: ErrorResponse
        413: ErrorResponse
        415: ErrorResponse
        429: ErrorResponse
        503: ErrorResponse
    """
    initial_file = None
    if request.mimetype == "multipart/form-data":
        args, upload = multipart_form(_create_form_schema, current_app.config["MAX_UPLOAD_BYTES"])
        if upload is not None:
            initial_file = (upload.filename, upload.stream)
    else:
        args = json_body(_create_schema, required=False)
    service = get_session_service()
    record = service.create(g.principal, label=args.get("label"), idle_timeout=args.get("idle_timeout"),
                            wait=args["wait"], initial_file=initial_file)
    status = 201 if record.status == "active" else 202
    return _dump(record, service), status


def list_sessions():
    """List sessions.
    ---
    get:
      summary: The caller's sessions (admins - everyone's, filter by user)
      tags: [sessions]
      parameters:
      - in: query
        schema: SessionListQuerySchema
      responses:
        200: {description: Sessions, content: {application/json: {schema: SessionListSchema}}}
        400: ErrorResponse
        401: ErrorResponse
        403: ErrorResponse
    """
    args = query_args(_list_schema)
    service = get_session_service()
    records = service.list_for(g.principal, user=args.get("user"), status=args.get("status"))
    return {"sessions": [_dump(r, service) for r in records]}


def get_session(session_id):
    """One session.
    ---
    get:
      summary: One session (pid, port and memory for admins only)
      tags: [sessions]
      parameters: [SessionId]
      responses:
        200: {description: The session, content: {application/json: {schema: AdminSessionSchema}}}
        401: ErrorResponse
        403: ErrorResponse
        404: ErrorResponse
    """
    service = get_session_service()
    return _dump(service.get_for(g.principal, session_id_arg(session_id)), service)


def delete_session(session_id):
    """End a session.
    ---
    delete:
      summary: End a session (idempotent)
      tags: [sessions]
      parameters: [SessionId]
      responses:
        204: {description: Ended}
        401: ErrorResponse
        403: ErrorResponse
        404: ErrorResponse
    """
    get_session_service().terminate(g.principal, session_id_arg(session_id))
    return "", 204


def suspend_session(session_id):
    """Suspend a session.
    ---
    post:
      summary: Save the whole scene, end the process, keep the workspace (status suspended)
      tags: [sessions]
      parameters: [SessionId]
      responses:
        200: {description: Suspended, content: {application/json: {schema: AdminSessionSchema}}}
        401: ErrorResponse
        403: ErrorResponse
        404: ErrorResponse
        409: ErrorResponse
        429: ErrorResponse
        502: ErrorResponse
        503: ErrorResponse
    """
    service = get_session_service()
    return _dump(service.suspend(g.principal, session_id_arg(session_id)), service)


def resume_session(session_id):
    """Resume a suspended session.
    ---
    post:
      summary: Restore a suspended session into a new process (same id, files, models, view)
      tags: [sessions]
      parameters: [SessionId]
      responses:
        200: {description: Already live, content: {application/json: {schema: AdminSessionSchema}}}
        202: {description: Resuming (status starting), content: {application/json: {schema: AdminSessionSchema}}}
        401: ErrorResponse
        403: ErrorResponse
        404: ErrorResponse
        409: ErrorResponse
        429: ErrorResponse
        503: ErrorResponse
    """
    service = get_session_service()
    record = service.resume(g.principal, session_id_arg(session_id))
    return _dump(record, service), 202 if record.status == "starting" else 200


def heartbeat(session_id):
    """Heartbeat.
    ---
    put:
      summary: Record activity
      tags: [sessions]
      parameters: [SessionId]
      responses:
        200: {description: Activity recorded, content: {application/json: {schema: HeartbeatSchema}}}
        401: ErrorResponse
        403: ErrorResponse
        404: ErrorResponse
        409: ErrorResponse
    """
    record = get_session_service().heartbeat(g.principal, session_id_arg(session_id))
    return _heartbeat_schema.dump(record)


def run_command(session_id):
    """Run a command.
    ---
    post:
      summary: Run a ChimeraX command line (checked by the command policy first)
      tags: [commands]
      parameters: [SessionId]
      requestBody:
        required: true
        content: {application/json: {schema: CommandSchema}}
      responses:
        200: {description: ChimeraX's result (ok false for a ChimeraX error), content: {application/json: {schema: CommandResultSchema}}}
        400: ErrorResponse
        401: ErrorResponse
        403: ErrorResponse
        404: ErrorResponse
        409: ErrorResponse
        413: ErrorResponse
        415: ErrorResponse
        502: ErrorResponse
        504: ErrorResponse
    """
    session_id = session_id_arg(session_id)
    args = json_body(_command_schema)
    result = get_session_service().run_command(g.principal, session_id, args["command"])
    # The result's fields are already JSON types: CommandResultSchema documents
    # them; dumping through it (and asdict's deep copy) only cost time.
    return {"ok": result.ok, "command": result.command, "log": result.log,
            "json_values": result.json_values, "error": result.error, "duration_ms": result.duration_ms}


def history(session_id):
    """Command history.
    ---
    get:
      summary: The session's commands, oldest first (format=cxc - a ChimeraX script of the allowed, successful ones)
      tags: [sessions]
      parameters:
      - SessionId
      - in: query
        schema: HistoryQuerySchema
      responses:
        200:
          description: The history, or the script
          content:
            application/json: {schema: HistorySchema}
            text/plain: {schema: {type: string}}
        400: ErrorResponse
        401: ErrorResponse
        403: ErrorResponse
        404: ErrorResponse
        503: ErrorResponse
    """
    args = query_args(_history_query)
    service, sid = get_session_service(), session_id_arg(session_id)
    if args["format"] == "cxc":
        return Response(service.history_script(g.principal, sid), mimetype="text/plain",
                        headers={"Content-Disposition": 'attachment; filename="%s.cxc"' % sid})
    entries, total = service.history(g.principal, sid, args["offset"], args["limit"])
    return _history.dump({"history": entries, "total": total, "offset": args["offset"], "limit": args["limit"]})
