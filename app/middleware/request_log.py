"""Request ids and one log line per request: id, user, method, path, status, ms."""
import logging
import re
import time
import uuid

from flask import g, request

log = logging.getLogger("cxs.requests")
_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _begin():
    g.started = time.perf_counter()
    offered = request.headers.get("X-Request-ID", "")
    g.request_id = offered if _VALID_ID.match(offered) else uuid.uuid4().hex


def _finish(response):
    response.headers["X-Request-ID"] = g.get("request_id", "-")
    principal = g.get("principal")
    elapsed = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
    log.info("%s %s %s %s %d %.1fms", g.get("request_id", "-"),
             principal.user if principal else "-", request.method, request.path,
             response.status_code, elapsed)
    return response


def init_app(app):
    # Registered before auth so that even a 401 carries a request id.
    app.before_request(_begin)
    app.after_request(_finish)
