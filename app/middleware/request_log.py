"""Request ids and one log line per request: id, user, method, path, status, ms."""
import logging
import random
import re
import time

from flask import g, request

log = logging.getLogger("cxs.requests")
_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _begin():
    g.started = time.perf_counter()
    offered = request.headers.get("X-Request-ID", "")
    # 32 hex digits, as uuid4().hex gave. An id, not a secret: no system call
    # for randomness (each gives up the GIL to the worker's other threads).
    g.request_id = offered if _VALID_ID.match(offered) else "%032x" % random.getrandbits(128)


def _finish(response):
    request_id = g.get("request_id", "-")
    response.headers["X-Request-ID"] = request_id
    if log.isEnabledFor(logging.INFO):
        principal = g.get("principal")
        elapsed = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        log.info("%s %s %s %s %d %.1fms", request_id, principal.who if principal else "-", request.method,
                 request.path, response.status_code, elapsed)
    return response


def init_app(app):
    # Registered before auth so that even a 401 carries a request id.
    app.before_request(_begin)
    app.after_request(_finish)
