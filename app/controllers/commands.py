"""HTTP in/out for a session's commands as resources, interrupts and its event stream."""
import threading

from flask import Response, current_app, g, jsonify, request, url_for

from ..context import get_session_service
from ..services.errors import StreamsBusy
from ..services.sessions.events import EventStream

_streams: dict[str, threading.BoundedSemaphore] = {}


def start_command(args, session_id):
    started = get_session_service().start_command(g.principal, str(session_id), args["command"])
    response = jsonify(started)
    response.status_code = 202
    response.headers["Location"] = url_for("commands.command", session_id=session_id, command_id=started["id"])
    return response


def command(session_id, command_id):
    return get_session_service().command(g.principal, str(session_id), str(command_id))


def commands(args, session_id):
    entries, total = get_session_service().history(g.principal, str(session_id), args["offset"], args["limit"])
    return {"commands": entries, "total": total, "offset": args["offset"], "limit": args["limit"]}


def interrupt(args, session_id):
    return get_session_service().interrupt(g.principal, str(session_id), args.get("id"))


def events(session_id):
    """Server-Sent Events; each stream on one of the worker's stream threads."""
    limit = current_app.config["EVENT_STREAMS_PER_WORKER"]
    slots = _streams.setdefault("slots", threading.BoundedSemaphore(limit))
    if not limit or not slots.acquire(blocking=False):
        raise StreamsBusy("this worker serves %d event streams already (EVENT_STREAMS_PER_WORKER); retry" % limit,
                          retry_after=5)
    try:
        stream = EventStream(get_session_service(), g.principal, str(session_id),
                             request.headers.get("Last-Event-ID")).open()
    except BaseException:
        slots.release()
        raise

    released = threading.Event()

    def done():
        # When the response closes, whether or not its body was ever read.
        if not released.is_set():
            released.set()
            stream.close()
            slots.release()
    response = Response(iter(stream), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    response.call_on_close(done)
    return response
