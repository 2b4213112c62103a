"""HTTP in/out for sessions: validate, call the service, shape the reply."""
import uuid
from dataclasses import asdict

from flask import current_app, g, request

from ..context import get_session_service
from ..middleware.errors import ApiError
from ..middleware.validation import json_body, multipart_form, query_args
from ..schemas.sessions import (AdminSessionSchema, CommandResultSchema, CommandSchema,
                                HeartbeatSchema, SessionCreateFormSchema, SessionCreateSchema,
                                SessionListQuerySchema, SessionSchema)

_session_schema = SessionSchema()
_admin_schema = AdminSessionSchema()
_heartbeat_schema = HeartbeatSchema()
_result_schema = CommandResultSchema()


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
    data["pid"] = record.process.get("pid")
    data["port"] = record.port
    memory = service.memory_bytes(record) if record.is_live else None
    data["memory_mb"] = round(memory / 2**20, 1) if memory else None
    return data


def create_session():
    initial_file = None
    if request.mimetype == "multipart/form-data":
        args, upload = multipart_form(SessionCreateFormSchema(), current_app.config["MAX_UPLOAD_BYTES"])
        if upload is not None:
            initial_file = (upload.filename, upload.stream)
    else:
        args = json_body(SessionCreateSchema(), required=False)
    service = get_session_service()
    record = service.create(g.principal, label=args.get("label"), idle_timeout=args.get("idle_timeout"),
                            wait=args["wait"], initial_file=initial_file)
    status = 201 if record.status == "active" else 202
    return _dump(record, service), status


def list_sessions():
    args = query_args(SessionListQuerySchema())
    service = get_session_service()
    records = service.list_for(g.principal, user=args.get("user"), status=args.get("status"))
    return {"sessions": [_dump(r, service) for r in records]}


def get_session(session_id):
    service = get_session_service()
    return _dump(service.get_for(g.principal, session_id_arg(session_id)), service)


def delete_session(session_id):
    get_session_service().terminate(g.principal, session_id_arg(session_id))
    return "", 204


def heartbeat(session_id):
    record = get_session_service().heartbeat(g.principal, session_id_arg(session_id))
    return _heartbeat_schema.dump(record)


def run_command(session_id):
    session_id = session_id_arg(session_id)
    args = json_body(CommandSchema())
    result = get_session_service().run_command(g.principal, session_id, args["command"])
    return _result_schema.dump(asdict(result))
