"""One error shape everywhere: {"error": {"code", "message", "fields"?, "request_id"}}.

Domain errors carry a code; this module alone decides their HTTP status.
Unexpected exceptions are logged with their traceback and answered with a
bare 500 and the request id, nothing of the internals.
"""
import logging

from flask import g, jsonify
from werkzeug.exceptions import HTTPException

from ..services import errors as service_errors
from ..services import workspace
from ..store import StoreUnavailable

log = logging.getLogger("cxs.errors")

STATUS_BY_CODE = {
    service_errors.NotFound.code: 404,
    service_errors.Deleted.code: 404,
    service_errors.Forbidden.code: 403,
    service_errors.CommandDenied.code: 403,
    service_errors.NotActive.code: 409,
    service_errors.SessionBusy.code: 409,
    service_errors.UserLimit.code: 429,
    service_errors.Capacity.code: 503,
    service_errors.ChimeraXUnavailable.code: 503,
    service_errors.StartupFailed.code: 503,
    service_errors.StoreDown.code: 503,
    service_errors.Unreachable.code: 503,
    service_errors.ChimeraXDied.code: 502,
    service_errors.CommandTimeout.code: 504,
    service_errors.UnreadableStructure.code: 422,     # well-formed, but not a structure
    service_errors.RenderingUnavailable.code: 503,
    service_errors.SnapshotFailed.code: 502,
    workspace.BadFile.code: 400,
    workspace.FileNotFound.code: 404,
    workspace.QuotaExceeded.code: 413,
    service_errors.SceneTooLarge.code: 413,
    service_errors.SuspendFailed.code: 502,
    service_errors.SessionFileRejected.code: 409,
    service_errors.Resuming.code: 409,
}

HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 414: "uri_too_long",
    415: "unsupported_media_type", 429: "too_many_requests", 431: "headers_too_large",
    500: "internal_error", 501: "not_implemented",
}
# What a client waits before retrying when the cause did not say (the API
# document promises Retry-After on every 429 and 503).
DEFAULT_RETRY_AFTER = {429: "30", 503: "5"}


class ApiError(Exception):
    """An error raised by the HTTP layer itself (validation, auth, media type)."""

    def __init__(self, status, code, message, fields=None, headers=None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields, self.headers = fields, headers or {}


def error_response(status, code, message, fields=None, headers=None):
    body = {"code": code, "message": message, "request_id": getattr(g, "request_id", None)}
    if fields is not None:
        body["fields"] = fields
    response = jsonify(error=body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    if status in DEFAULT_RETRY_AFTER and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = DEFAULT_RETRY_AFTER[status]
    return response


def init_app(app):
    @app.errorhandler(ApiError)
    def _api_error(err):
        return error_response(err.status, err.code, err.message, err.fields, err.headers)

    @app.errorhandler(service_errors.ServiceError)
    def _service_error(err):
        status = STATUS_BY_CODE.get(err.code, 500)
        headers = {"Retry-After": str(int(err.retry_after))} if err.retry_after else None
        if status >= 500:
            log.warning("request %s: %s: %s", getattr(g, "request_id", "-"), err.code, err.message)
        return error_response(status, err.code, err.message, headers=headers)

    @app.errorhandler(StoreUnavailable)
    def _store_down(err):
        # Locked, read-only or missing database: temporary from the client's
        # side; the next request opens a fresh connection and recovers.
        log.warning("request %s: store unavailable: %s", getattr(g, "request_id", "-"), err)
        return error_response(503, "store_unavailable", "the session store is temporarily unavailable",
                              headers={"Retry-After": "5"})

    @app.errorhandler(HTTPException)
    def _http_error(err):
        code = HTTP_CODES.get(err.code, "http_%d" % err.code)
        headers = {}
        if err.code == 405 and getattr(err, "valid_methods", None):
            headers["Allow"] = ", ".join(sorted(err.valid_methods))
        message = {404: "no such resource", 405: "method not allowed for this resource",
                   413: "request body too large"}.get(err.code, err.description)
        return error_response(err.code, code, message, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(err):
        log.exception("request %s failed", getattr(g, "request_id", "-"))
        return error_response(500, "internal_error", "internal server error")
