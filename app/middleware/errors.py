"""One error shape everywhere: {"error": {"code", "message", "fields"?, "request_id"}}.

Domain errors declare their code and status (services/errors.py); the
HTTP layer's own are declared here; `catalogue` is both, for the API
document and the docs.
Unexpected exceptions are logged with their traceback and answered with a
bare 500 and the request id, nothing of the internals.
"""
import logging

from flask import g, jsonify
from werkzeug.exceptions import HTTPException

from ..services import errors as service_errors
from ..store import StoreUnavailable

log = logging.getLogger("cxs.errors")

# The HTTP layer's own answers (request reading, auth, routing, our bugs),
# declared like the domain errors: (status, code, when).
HTTP_ERRORS = (
    (400, "validation_error", "missing, extra, wrong-typed or out-of-bound fields or query values (per-field "
                              "`fields`)"),
    (400, "invalid_json", "a body that is not JSON"),
    (400, "bad_request", "HTTP gunicorn cannot read"),
    (401, "unauthorized", "no, malformed, unknown or revoked credentials"),
    (403, "insufficient_scope", "the credentials lack the scope the operation requires (naming it)"),
    (403, "act_as_refused", "X-Act-As without the act-as scope, or for a user outside the token's act_as pattern"),
    (404, "not_found", "unknown route"),
    (405, "method_not_allowed", "wrong method (with `Allow`)"),
    (413, "payload_too_large", "a body over MAX_CONTENT_LENGTH or an upload over MAX_UPLOAD_BYTES"),
    (414, "uri_too_long", "a request line over gunicorn's limit_request_line"),
    (415, "unsupported_media_type", "a body of a type the operation does not take"),
    (431, "headers_too_large", "headers over gunicorn's limit_request_fields / limit_request_field_size"),
    (503, "oidc_unavailable", "the OIDC issuer's keys cannot be fetched and the token's key is not cached "
                              "(`Retry-After`)"),
    (500, "internal_error", "a bug of ours (any SQL error other than the database being down is one): the reply "
                            "has only the request id; the traceback is in the server log"),
)
HTTP_CODES = {status: code for status, code, _ in HTTP_ERRORS if code not in ("validation_error", "invalid_json")}
HTTP_CODES.update({403: "forbidden", 409: "conflict", 429: "too_many_requests", 501: "not_implemented"})


def catalogue():
    """Every error the API answers: {status: [(code, when), ...]}, one source
    for the handler, the API document and the docs' table."""
    table = {}
    for status, code, when in HTTP_ERRORS:
        table.setdefault(status, []).append((code, when))
    for cls in service_errors.domain_errors():
        if (cls.code, cls.when) not in table.setdefault(cls.status, []):
            table[cls.status].append((cls.code, cls.when))
    return dict(sorted(table.items()))


def markdown():
    """The docs' error table (generated: never edit the copy by hand)."""
    lines = ["| status | code | when |", "|---|---|---|"]
    for status, entries in catalogue().items():
        lines += ["| %d | `%s` | %s |" % (status, code, when) for code, when in entries]
    return "\n".join(lines)


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
        status = err.status
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


if __name__ == "__main__":
    print(markdown())
