"""HTTP in/out for sessions: call the service with validated arguments, shape the reply.

The route (routes/sessions.py) validated the request and dumps the reply
through its declared schema.
"""
from flask import Response, g, jsonify, request

from ..context import get_session_service
from ..schemas.sessions import AdminSessionSchema, LimitsSchema, SessionSchema, UsageSchema
from ..services.sessions.sharing import access_of

# Built once: a schema instance is reusable and costs ~50 us to build.
_session_schema = SessionSchema()
_admin_schema = AdminSessionSchema()
_usage_schema = UsageSchema()
_limits_schema = LimitsSchema()


def _view(record, service, shared=None):
    """What the caller may see of a record, dumped: its owner and the caller's
    access (owner, view or control: a session shared with it); admins also
    where its process is and its size. (Dumped here, through the schema the
    user's role calls for; the route's declaration documents the admin's superset.)"""
    principal = g.principal
    if not principal.is_admin:
        view = _session_schema.dump(record)
        if record.user != principal.user:
            shared = shared if shared is not None else service.shared_with(principal)
        view.update(owner=record.user, access=access_of(principal, record.user, shared or {}, record.id))
        return view
    view = _admin_schema.dump(record)
    view.update(owner=record.user, access="owner")
    name = service.process_id(record)
    memory = service.memory_bytes(record) if record.is_live else None
    view.update(process=None if name is None else str(name),    # a pid, "job 12" on a cluster...
                pid=name if isinstance(name, int) else None,
                memory_mb=round(memory / 2**20, 1) if memory else None)
    return view


def _reply(record, service, status=200):
    # A Response passes flask-smorest's decorator as it is (the view is already dumped).
    response = jsonify(_view(record, service))
    response.status_code = status
    return response


def create_session(json_args, form_args):
    args, initial_file = json_args, None
    if request.mimetype == "multipart/form-data":       # both were validated; one was sent
        args = form_args
        upload = args.get("file")
        if upload is not None:
            initial_file = (upload.filename, upload.stream)
    service = get_session_service()
    record = service.create(g.principal, label=args.get("label"), idle_timeout=args.get("idle_timeout"),
                            wait=args.get("wait", True), initial_file=initial_file)
    return _reply(record, service, 201 if record.status == "active" else 202)


def list_sessions(args):
    service = get_session_service()
    records, more = service.list_for(g.principal, args["limit"], user=args.get("user"), statuses=args.get("status"),
                                     starting_after=args.get("starting_after"))
    shared = service.shared_with(g.principal) if any(r.user != g.principal.user for r in records) else {}
    return jsonify(sessions=[_view(r, service, shared) for r in records], has_more=more)


def get_session(session_id):
    """The view, with what the session uses and its limits: only here, not in
    lists or other replies, because each asks its launcher (a scheduler may
    have to ask its node)."""
    service = get_session_service()
    record = service.readable(g.principal, str(session_id), view=True)
    view = _view(record, service)
    limits = service.limits(record)
    view.update(usage=_usage_schema.dump(service.usage(record)),
                limits=None if limits is None else _limits_schema.dump(limits))
    return jsonify(view)


def delete_session(session_id):
    get_session_service().terminate(g.principal, str(session_id))


def suspend_session(session_id):
    service = get_session_service()
    return _reply(service.suspend(g.principal, str(session_id)), service)


def resume_session(session_id):
    service = get_session_service()
    record = service.resume(g.principal, str(session_id))
    return _reply(record, service, 202 if record.status == "starting" else 200)


def heartbeat(session_id):
    return get_session_service().heartbeat(g.principal, str(session_id))


def run_command(args, session_id):
    if not args.get("wait", True):
        from .commands import start_command
        return start_command(args, session_id)
    result = get_session_service().run_command(g.principal, str(session_id), args["command"])
    # Already JSON types: a Response skips the schema's dump (and asdict's
    # deep copy), which only cost time; the schema still documents it.
    return jsonify(id=result.id, ok=result.ok, command=result.command, log=result.log,
                   json_values=result.json_values, error=result.error, duration_ms=result.duration_ms)


def history(args, session_id):
    service, sid = get_session_service(), str(session_id)
    if args["format"] == "cxc":
        return Response(service.history_script(g.principal, sid), mimetype="text/plain",
                        headers={"Content-Disposition": 'attachment; filename="%s.cxc"' % sid})
    entries, total = service.history(g.principal, sid, args["offset"], args["limit"])
    return {"history": entries, "total": total, "offset": args["offset"], "limit": args["limit"]}
